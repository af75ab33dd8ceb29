package comet

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/testkit"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// roomSeqEnv is a comet with members in a recoverable room whose stream
// holds offsets 1 and 2: reliable members of every client transport
// (their room stream at offset 2) and one plain TCP member.
type roomSeqEnv struct {
	*testEnv
	room  string
	rel   []*client
	plain *client
}

func startRoomSeq(t *testing.T, wait time.Duration, reliable int) *roomSeqEnv {
	t.Helper()
	e := startComet(t, func(c *Config) {
		unlimited(c)
		c.Bucket.RoomGapWait = conf.Duration(wait)
	})
	env := &roomSeqEnv{testEnv: e, room: "live://seq"}
	name := streamName(protocol.StreamRoom, 0, "", env.room)
	e.logic.appendMsg(name, "m1")
	e.logic.appendMsg(name, "m2")
	trs := []string{"tcp", "ws", "tls", "wss"}
	for i := range reliable {
		c := dial(t, e, trs[i%len(trs)])
		sb := c.reliableAuth(fmt.Sprintf(`{"key":"rel-%d","room_id":%q,"accepts":[1000],"reliable":true}`, i, env.room))
		if n := len(sb.Streams); n != 2 || sb.Streams[1].Stream != "room" || sb.Streams[1].Offset != 2 {
			t.Fatalf("op 20 %+v", sb)
		}
		env.rel = append(env.rel, c)
	}
	env.plain = dial(t, e, "tcp")
	env.plain.auth(fmt.Sprintf(`{"key":"plain","room_id":%q,"accepts":[1000]}`, env.room))
	return env
}

// expectBodies reads op-1000 frames with bodies "m<offset>", in order.
func (c *client) expectBodies(offsets ...uint64) {
	c.t.Helper()
	for _, o := range offsets {
		if p := c.expect(1000, 0); string(p.Body) != fmt.Sprintf("m%d", o) {
			c.t.Fatalf("%s: got body %q, want m%d", c.tr, p.Body, o)
		}
	}
}

func (e *roomSeqEnv) gaps(outcome string) float64 {
	return testutil.ToFloat64(e.srv.metrics.roomGaps.WithLabelValues(outcome))
}

// TestRoomSeqReorders: room pushes whose offsets arrive out of order (as
// several logic instances can publish them), in separate calls and within
// one call, reach every reliable member in offset order without a single
// stream read, while the plain member gets each push as it arrives.
func TestRoomSeqReorders(t *testing.T) {
	e := startRoomSeq(t, 10*time.Second, 8) // no gap waits that long here
	reads := e.logic.readCount()
	e.pushRoomAt(t, e.room, 3)
	e.pushRoomAt(t, e.room, 5) // held: 4 is missing
	e.plain.expectBodies(3, 5) // the plain member does not wait
	e.pushRoomAt(t, e.room, 4)
	e.pushRoomAt(t, e.room, 7, 6)
	e.pushRoomAt(t, e.room, 8)
	e.pushRoomAt(t, e.room, 6, 8) // duplicates
	for _, c := range e.rel {
		c.expectOffsets(protocol.StreamRoom, 3, 4, 5, 6, 7, 8)
	}
	e.plain.expectBodies(4, 7, 6, 8, 6, 8)
	e.pushRoomAt(t, e.room, 9) // in sequence again: the view is shared
	for _, c := range e.rel {
		c.expectOffsets(protocol.StreamRoom, 9)
	}
	e.plain.expectBodies(9)
	if n := e.logic.readCount() - reads; n != 0 {
		t.Fatalf("%d stream reads, want 0", n)
	}
	if f, r, p := e.gaps("filled"), e.gaps("read"), e.gaps("passed"); f != 2 || r != 0 || p != 0 {
		t.Fatalf("gaps filled %v read %v passed %v, want 2 0 0", f, r, p)
	}
	if n := testutil.ToFloat64(e.srv.metrics.streamDups); n != 0 {
		t.Fatalf("members dropped %v duplicates; the room sequencer should have", n)
	}
}

// TestRoomSeqReadsOnce: a gap room_gap_wait does not fill is read once
// for the room, whatever its reliable members, and every member gets the
// missing message, then the held one.
func TestRoomSeqReadsOnce(t *testing.T) {
	e := startRoomSeq(t, 20*time.Millisecond, 12)
	reads := e.logic.readCount()
	name := streamName(protocol.StreamRoom, 0, "", e.room)
	e.pushRoomAt(t, e.room, 3)
	e.logic.appendMsg(name, "m4") // appended, never pushed live
	e.pushRoomAt(t, e.room, 5)
	for _, c := range e.rel {
		c.expectOffsets(protocol.StreamRoom, 3, 4, 5)
	}
	e.plain.expectBodies(3, 5)
	if n := e.logic.readCount() - reads; n != 1 {
		t.Fatalf("%d stream reads, want 1 for the room", n)
	}
	e.logic.mu.Lock()
	last := e.logic.rs.reads[len(e.logic.rs.reads)-1]
	e.logic.mu.Unlock()
	if last.GetStream() != protocol.StreamRoom || last.GetRoom() != e.room || last.GetAfter() != 3 {
		t.Fatalf("read %+v, want the room's stream after 3", last)
	}
	if f, r, p := e.gaps("filled"), e.gaps("read"), e.gaps("passed"); f != 0 || r != 1 || p != 0 {
		t.Fatalf("gaps filled %v read %v passed %v, want 0 1 0", f, r, p)
	}
}

// TestRoomSeqPasses: a gap the room's stream no longer holds goes on to
// the members, whose own sequencers report it (op 20 recovered=false)
// and deliver what the stream still has.
func TestRoomSeqPasses(t *testing.T) {
	e := startRoomSeq(t, 20*time.Millisecond, 2)
	name := streamName(protocol.StreamRoom, 0, "", e.room)
	e.pushRoomAt(t, e.room, 3)
	for _, c := range e.rel {
		c.expectOffsets(protocol.StreamRoom, 3)
	}
	e.logic.appendMsg(name, "m4")
	e.logic.appendMsg(name, "m5")
	e.logic.trim(name, 5) // 4 is gone
	e.pushRoomAt(t, e.room, 6)
	epoch := e.logic.stream(name).epoch
	for _, c := range e.rel {
		if sb := c.expectStreams(); len(sb.Streams) != 1 || sb.Streams[0] != streamReport(protocol.StreamRoom, epoch, 6, false) {
			t.Fatalf("%s: op 20 %+v", c.tr, sb)
		}
		c.expectOffsets(protocol.StreamRoom, 5, 6)
	}
	if p := e.gaps("passed"); p != 1 {
		t.Fatalf("gaps passed %v, want 1", p)
	}
}

// TestRoomSeqHeldBound: a room holds at most roomSeqMaxHeld messages
// beyond a missing offset; one more passes the gap to the members, whose
// own sequencers fill it.
func TestRoomSeqHeldBound(t *testing.T) {
	e := startRoomSeq(t, 10*time.Second, 1)
	e.pushRoomAt(t, e.room, 3)
	e.rel[0].expectOffsets(protocol.StreamRoom, 3)
	reads := e.logic.readCount()
	first, last := uint64(5), uint64(5+roomSeqMaxHeld) // 4 is missing
	for o := first; o <= last; o += 64 {
		offsets := make([]uint64, 0, 64)
		for k := o; k < o+64 && k <= last; k++ {
			offsets = append(offsets, k)
		}
		e.pushRoomAt(t, e.room, offsets...)
	}
	want := make([]uint64, 0, last-3)
	for o := uint64(4); o <= last; o++ {
		want = append(want, o)
	}
	e.rel[0].expectOffsets(protocol.StreamRoom, want...)
	if p, r := e.gaps("passed"), e.gaps("read"); p != 1 || r != 0 {
		t.Fatalf("gaps passed %v read %v, want 1 0", p, r)
	}
	if n := e.logic.readCount() - reads; n == 0 {
		t.Fatal("the member did not read its stream")
	}
}

// TestRoomSeqPlainRoom: a recoverable room without reliable members on
// this comet is not sequenced: its pushes go out as they arrive, and its
// stream is never read.
func TestRoomSeqPlainRoom(t *testing.T) {
	e := startRoomSeq(t, 20*time.Millisecond, 0)
	reads := e.logic.readCount()
	e.pushRoomAt(t, e.room, 3)
	e.pushRoomAt(t, e.room, 5)
	e.pushRoomAt(t, e.room, 4)
	e.plain.expectBodies(3, 5, 4)
	time.Sleep(100 * time.Millisecond) // a read would start here
	if n := e.logic.readCount() - reads; n != 0 {
		t.Fatalf("%d stream reads, want 0", n)
	}
	if f, r, p := e.gaps("filled"), e.gaps("read"), e.gaps("passed"); f+r+p != 0 {
		t.Fatalf("gaps filled %v read %v passed %v in a room without reliable members", f, r, p)
	}
}

// TestRoomSeqRoomMadeAnew: a room that empties and fills again starts a
// new sequence: pushes its new members' streams continue go straight
// out, however far the old sequence was behind.
func TestRoomSeqRoomMadeAnew(t *testing.T) {
	e := startRoomSeq(t, 20*time.Millisecond, 1)
	name := streamName(protocol.StreamRoom, 0, "", e.room)
	e.pushRoomAt(t, e.room, 3)
	e.rel[0].expectOffsets(protocol.StreamRoom, 3)
	e.plain.expectBodies(3)
	for _, c := range []*client{e.rel[0], e.plain} {
		seq := c.send(protocol.OpChangeRoom, nil)
		c.expect(protocol.OpChangeRoomReply, seq)
	}
	waitFor(t, 5*time.Second, func() error {
		if r, _, _ := e.srv.rooms.lookup(e.room); r != nil {
			return fmt.Errorf("room still has members")
		}
		return nil
	})
	for range 6 {
		e.logic.appendMsg(name, fmt.Sprintf("m%d", e.logic.stream(name).top+1)) // 4..9, never pushed here
	}
	c := dial(t, e.testEnv, "tcp")
	if sb := c.reliableAuth(fmt.Sprintf(`{"key":"anew","room_id":%q,"accepts":[1000],"reliable":true}`, e.room)); sb.Streams[1].Offset != 9 {
		t.Fatalf("op 20 %+v", sb)
	}
	reads := e.logic.readCount()
	e.pushRoomAt(t, e.room, 10)
	c.expectOffsets(protocol.StreamRoom, 10)
	time.Sleep(100 * time.Millisecond) // a read would start here
	if n := e.logic.readCount() - reads; n != 0 {
		t.Fatalf("%d stream reads, want 0", n)
	}
}

// TestFanOutAudiences: a fan-out for the plain members and one for the
// reliable members are merged each with its own kind across the other
// (they reach different members), never across a fan-out for every
// member, so each member gets its pushes in order.
func TestFanOutAudiences(t *testing.T) {
	e := startRoomSeq(t, time.Second, 1)
	epoch := e.logic.stream(streamName(protocol.StreamRoom, 0, "", e.room)).epoch
	job := func(to audience, body string, off uint64) roomJob {
		f := newFrame(&protocol.Proto{Ver: 1, Op: 1000, Body: []byte(body)})
		if off > 0 {
			f.ids = []string{testkit.RandomHex(16)}
			f.pos = []*protocol.Position{{Stream: protocol.StreamRoom, Epoch: epoch, Offset: off}}
		}
		return roomJob{room: e.room, f: f, to: to}
	}
	jobs := []roomJob{job(toPlain, "p1", 0), job(toReliable, "m3", 3), job(toPlain, "p2", 0), job(toReliable, "m4", 4),
		job(toAll, "a1", 0), job(toPlain, "p3", 0)}
	e.srv.fanOut(jobs, nil, nil)
	for _, body := range []string{"p1", "p2", "a1", "p3"} {
		if p := e.plain.expect(1000, 0); string(p.Body) != body {
			t.Fatalf("plain member: got %q, want %q", p.Body, body)
		}
	}
	r := e.rel[0]
	r.expectOffsets(protocol.StreamRoom, 3, 4)
	if env := r.expectEnvelope(); env.Stream != protocol.StreamNone || string(env.Body) != "a1" {
		t.Fatalf("reliable member: got stream %d body %q, want a1 in no stream", env.Stream, env.Body)
	}
	var m dto.Metric
	if err := e.srv.metrics.roomMerged.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n, sum := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(); n != 4 || sum != 6 {
		t.Fatalf("%d fan-outs of %v batches, want 4 of 6 (p1+p2, m3+m4, a1, p3)", n, sum)
	}
}

// TestRoomSeqNoPlainMembers: in a room of reliable members only, what the
// sequencer orders goes out for every member (a plain member joining
// before the fan-out gets it too), with the WebSocket bytes job would
// have sent, so it merges with the room's other fan-outs.
func TestRoomSeqNoPlainMembers(t *testing.T) {
	e := startRoomSeq(t, time.Second, 2)
	_ = e.plain.conn.Close()
	waitFor(t, 5*time.Second, func() error {
		if _, _, plain := e.srv.rooms.lookup(e.room); plain {
			return fmt.Errorf("the plain member is still in the room")
		}
		return nil
	})
	q := newRoomSeq(e.srv)
	defer q.stop()
	job := func(offsets ...uint64) roomJob {
		req := e.roomPush(e.room, offsets...)
		f := newFrame(req.GetProto())
		f.ids, f.pos = req.GetMsgIds(), req.GetPositions()
		return roomJob{room: e.room, f: f}
	}
	now := time.Now()
	in := job(3)
	out := q.order([]roomJob{in}, now)
	if len(out) != 1 || out[0].f != in.f || out[0].to != toAll {
		t.Fatalf("in sequence: %+v, want the push as it came", out)
	}
	out = q.order([]roomJob{job(5), job(4)}, now)
	if len(out) != 1 || !out[0].seq || out[0].to != toAll {
		t.Fatalf("out of sequence: %d jobs, want one ordered for every member", len(out))
	}
	if want := newFrame(carrier("m4", "m5")); !bytes.Equal(out[0].f.tcp, want.tcp) || !bytes.Equal(out[0].f.ws, want.ws) {
		t.Fatalf("ordered frame:\n tcp %x\n ws  %x\nwant\n tcp %x\n ws  %x", out[0].f.tcp, out[0].f.ws, want.tcp, want.ws)
	}
	out = q.order([]roomJob{job(7), job(6)}, now)
	if want := newFrame(carrier("m6", "m7")); len(out) != 1 || !bytes.Equal(out[0].f.ws, want.ws) {
		t.Fatalf("ordered frame: %+v, want ws %x", out, want.ws)
	}
	out = q.order([]roomJob{job(7, 8)}, now) // 7 again: dropped
	if want := newFrame(&protocol.Proto{Ver: protocol.Version, Op: 1000, Body: []byte("m8")}); len(out) != 1 || !bytes.Equal(out[0].f.ws, want.ws) {
		t.Fatalf("ordered frame of one message: %+v, want ws %x", out, want.ws)
	}
	if r := q.rooms[e.room]; len(r.held) != 0 || r.next != 9 {
		t.Fatalf("room sequence: next %d, held %d, want 9 and none", r.next, len(r.held))
	}
}
