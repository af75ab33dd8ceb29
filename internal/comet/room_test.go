package comet

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"

	cometpb "github.com/goim/goim/api/comet"
	"github.com/goim/goim/api/protocol"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestParallelFanOut: a room big enough to split its fan-out over
// goroutines delivers every push to every member once and in order, and
// follows members that leave and join between pushes.
func TestParallelFanOut(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one P: fan-outs are not split")
	}
	old := parallelFanOut
	parallelFanOut = 2
	t.Cleanup(func() { parallelFanOut = old })
	e := startComet(t, nil)
	const members = 9
	clients := make([]*client, members)
	for i := range clients {
		clients[i] = dial(t, e, []string{"tcp", "ws"}[i%2])
		clients[i].auth(fmt.Sprintf(`{"mid":%d,"key":"par-%d","room_id":"live://par","accepts":[]}`, i+1, i))
	}
	push := func(n int) {
		t.Helper()
		if _, err := e.push.BroadcastRoom(context.Background(), &cometpb.BroadcastRoomReq{
			RoomID: "live://par", Proto: &protocol.Proto{Ver: 1, Op: 1000, Body: []byte(strconv.Itoa(n))},
		}); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(c *client, from, to int) {
		t.Helper()
		for n := from; n < to; n++ {
			if p := c.expect(1000, 0); string(p.Body) != strconv.Itoa(n) {
				t.Fatalf("%s: got push %q, want %d", c.tr, p.Body, n)
			}
		}
	}
	for n := range 50 {
		push(n)
	}
	for _, c := range clients {
		expect(c, 0, 50)
	}
	// The last client leaves the room (op 12 with an empty room); the
	// others keep receiving, it does not.
	last := clients[members-1]
	seq := last.send(protocol.OpChangeRoom, nil)
	last.expect(protocol.OpChangeRoomReply, seq)
	for n := 50; n < 60; n++ {
		push(n)
	}
	for _, c := range clients[:members-1] {
		expect(c, 50, 60)
	}
	// It joins again and gets the pushes after that.
	seq = last.send(protocol.OpChangeRoom, []byte("live://par"))
	last.expect(protocol.OpChangeRoomReply, seq)
	push(60)
	for _, c := range clients {
		expect(c, 60, 61)
	}
	want := float64(50*members + 10*(members-1) + members)
	if got := testutil.ToFloat64(e.srv.metrics.delivered.WithLabelValues("room")); got != want {
		t.Fatalf("room deliveries %v, want %v", got, want)
	}
}
