package comet

import (
	"fmt"
	"strings"
	"testing"

	"github.com/goim/goim/api/protocol"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// TestFanOutMerge: room batches taken together are merged per room in
// their order, up to maxRoomMergeBytes; other rooms' batches in between
// keep theirs; every member of each room receives every batch once, in
// order, over TCP and WebSocket.
func TestFanOutMerge(t *testing.T) {
	e := startComet(t, nil)
	var members [4]*client
	for i := range members {
		c := dial(t, e, []string{"tcp", "ws"}[i%2])
		room := []string{"live://a", "live://b"}[i/2]
		c.auth(fmt.Sprintf(`{"mid":%d,"key":"m-%d","room_id":%q,"accepts":[1000]}`, i+1, i, room))
		members[i] = c
	}
	job := func(room, body string) roomJob {
		return roomJob{room: room, f: newFrame(&protocol.Proto{Ver: 1, Op: 1000, Body: []byte(body)})}
	}
	big := strings.Repeat("x", maxRoomMergeBytes/2)
	jobs := []roomJob{
		job("live://a", "a1"), job("live://b", "b1"), job("live://a", "a2"),
		job("live://a", big+"a3"), job("live://a", big+"a4"), // a4 no longer fits: a later fan-out
		job("live://b", "b2"), job("live://a", "a5"), job("live://gone", "g1"),
	}
	e.srv.fanOut(jobs)
	for i, j := range jobs {
		if j.f != nil {
			t.Errorf("job %d (%s) not sent", i, j.room)
		}
	}
	want := map[string][]string{"live://a": {"a1", "a2", big + "a3", big + "a4", "a5"}, "live://b": {"b1", "b2"}}
	for i, c := range members {
		room := []string{"live://a", "live://b"}[i/2]
		for _, body := range want[room] {
			if p := c.expect(1000, 0); string(p.Body) != body {
				t.Fatalf("%s in %s: got %.10q, want %.10q", c.tr, room, p.Body, body)
			}
		}
	}
	// a1..a3 merged, then a4+a5; b1+b2 merged; g1 alone (no members).
	var m dto.Metric
	if err := e.srv.metrics.roomMerged.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetHistogram().GetSampleCount(); got != 4 {
		t.Errorf("%d fan-outs, want 4", got)
	}
	if got := m.GetHistogram().GetSampleSum(); got != 8 {
		t.Errorf("%v batches in fan-outs, want 8", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.delivered.WithLabelValues("room")); got != 2*5+2*2 {
		t.Errorf("room deliveries %v, want %d", got, 2*5+2*2)
	}
}
