package comet

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

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
	e.srv.fanOut(jobs, nil, nil)
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

// TestRoomPacer: after a fan-out that took d, a room's pushes are held
// until factor × d (at most the max) after it ended, then released
// together in order; a room whose wait would be under a millisecond, and
// a room whose wait has passed, are not held.
func TestRoomPacer(t *testing.T) {
	pc := newRoomPacer(4, 250*time.Millisecond)
	defer pc.stop()
	job := func(room, body string) roomJob {
		return roomJob{room: room, f: newFrame(&protocol.Proto{Ver: 1, Op: 1000, Body: []byte(body)})}
	}
	bodies := func(jobs []roomJob) (out []string) {
		for _, j := range jobs {
			var p protocol.Proto
			if _, err := p.Decode(j.f.tcp, protocol.MaxBodySize); err != nil {
				t.Fatal(err)
			}
			out = append(out, j.room+"/"+string(p.Body))
		}
		return out
	}
	t0 := time.Now()
	pc.took("big", t0, t0.Add(10*time.Millisecond)) // waits until t0+50ms
	// A short fan-out of the same room to its other members (the room
	// sequencer's audiences) does not end that wait.
	pc.took("big", t0.Add(10*time.Millisecond), t0.Add(10*time.Millisecond+100*time.Microsecond))
	pc.took("small", t0, t0.Add(200*time.Microsecond)) // 800µs: not held
	pc.took("huge", t0, t0.Add(time.Second))           // capped: t0+1.25s
	at := t0.Add(20 * time.Millisecond)
	out := pc.admit([]roomJob{job("big", "1"), job("small", "1"), job("other", "1"), job("big", "2"), job("huge", "1")}, at)
	if got, want := bodies(out), []string{"small/1", "other/1"}; !slices.Equal(got, want) {
		t.Fatalf("admitted %q, want %q", got, want)
	}
	// A push to a room already holding some is held behind them, even
	// once its wait is over.
	out = pc.admit([]roomJob{job("big", "3")}, t0.Add(60*time.Millisecond))
	if len(out) != 0 {
		t.Fatalf("admitted %q behind held pushes", bodies(out))
	}
	if got := pc.due(nil, t0.Add(49*time.Millisecond)); len(got) != 0 {
		t.Fatalf("released %q before the wait ended", bodies(got))
	}
	if got, want := bodies(pc.due(nil, t0.Add(50*time.Millisecond))), []string{"big/1", "big/2", "big/3"}; !slices.Equal(got, want) {
		t.Fatalf("released %q, want %q", got, want)
	}
	if got := pc.due(nil, t0.Add(time.Second+249*time.Millisecond)); len(got) != 0 {
		t.Fatalf("released %q before the capped wait ended", bodies(got))
	}
	if got, want := bodies(pc.due(nil, t0.Add(time.Second+250*time.Millisecond))), []string{"huge/1"}; !slices.Equal(got, want) {
		t.Fatalf("released %q, want %q", got, want)
	}
	// Its wait over and nothing held, a room's next push goes at once.
	if got, want := bodies(pc.admit([]roomJob{job("big", "4")}, t0.Add(2*time.Second))), []string{"big/4"}; !slices.Equal(got, want) {
		t.Fatalf("admitted %q, want %q", got, want)
	}
	// Factor 0: nothing is ever held.
	off := newRoomPacer(0, time.Second)
	defer off.stop()
	off.took("big", t0, t0.Add(time.Second))
	if got := off.admit([]roomJob{job("big", "1")}, t0.Add(time.Second)); len(got) != 1 {
		t.Fatalf("factor 0 held a push")
	}
}
