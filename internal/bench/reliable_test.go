package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
	"github.com/goim/goim/internal/testkit"
)

// msgID is a push id whose first bytes are n (never zero for n > 0).
func msgID(n uint64) string {
	var b [protocol.MsgIDSize]byte
	binary.BigEndian.PutUint64(b[:8], n)
	b[15] = 1
	return fmt.Sprintf("%x", b)
}

// envelope is an op-18 frame of an op-1000 push with body, at position
// (stream, epoch, offset), id msgID(n) (none for n 0).
func envelope(n uint64, stream int32, epoch, offset uint64, body []byte) []byte {
	id := ""
	if n > 0 {
		id = msgID(n)
	}
	env := protocol.AppendEnvelope(nil, id, &protocol.Position{Stream: stream, Epoch: epoch, Offset: offset}, 1000, body)
	return protocol.AppendFrame(nil, protocol.Version, protocol.OpMessage, 0, env)
}

// report is an op-20 frame of states.
func report(t *testing.T, states ...protocol.StreamState) []byte {
	t.Helper()
	b, err := json.Marshal(protocol.StreamsBody{Streams: states})
	if err != nil {
		t.Fatal(err)
	}
	return protocol.AppendFrame(nil, protocol.Version, protocol.OpStreams, 0, b)
}

// TestRelCheck: positions within a stream and epoch; duplicates at or
// below the last, gaps beyond the next; a report resets a stream.
func TestRelCheck(t *testing.T) {
	type step struct {
		stream        int32
		epoch, offset uint64
		want          int
	}
	cases := []struct {
		name  string
		first *protocol.StreamsBody // reported before the steps
		steps []step
	}{
		{name: "in order from the reported top", first: &protocol.StreamsBody{Streams: []protocol.StreamState{{Stream: "user", Epoch: protocol.FormatEpoch(7), Offset: 5}}},
			steps: []step{{1, 7, 6, posOK}, {1, 7, 7, posOK}, {1, 7, 8, posOK}}},
		{name: "duplicate at and below the last", first: &protocol.StreamsBody{Streams: []protocol.StreamState{{Stream: "key", Epoch: protocol.FormatEpoch(7), Offset: 5}}},
			steps: []step{{2, 7, 6, posOK}, {2, 7, 6, posDup}, {2, 7, 3, posDup}, {2, 7, 7, posOK}}},
		{name: "gap, then in order after it", first: &protocol.StreamsBody{Streams: []protocol.StreamState{{Stream: "room", Epoch: protocol.FormatEpoch(9), Offset: 0}}},
			steps: []step{{3, 9, 1, posOK}, {3, 9, 3, posGap}, {3, 9, 4, posOK}, {3, 9, 2, posDup}}},
		{name: "first message after the report is a gap", first: &protocol.StreamsBody{Streams: []protocol.StreamState{{Stream: "user", Epoch: protocol.FormatEpoch(7), Offset: 5}}},
			steps: []step{{1, 7, 7, posGap}}},
		{name: "epoch changed without a report", first: &protocol.StreamsBody{Streams: []protocol.StreamState{{Stream: "user", Epoch: protocol.FormatEpoch(7), Offset: 5}}},
			steps: []step{{1, 7, 6, posOK}, {1, 8, 1, posGap}, {1, 8, 2, posOK}}},
		{name: "messages appended since the stream was opened come first", first: &protocol.StreamsBody{Streams: []protocol.StreamState{{Stream: "room", Epoch: protocol.FormatEpoch(9), Offset: 3}}},
			steps: []step{{3, 9, 2, posOK}, {3, 9, 3, posOK}, {3, 9, 4, posOK}, {3, 9, 3, posDup}}},
		{name: "first message beyond the reported offset + 1", first: &protocol.StreamsBody{Streams: []protocol.StreamState{{Stream: "room", Epoch: protocol.FormatEpoch(9), Offset: 3}}},
			steps: []step{{3, 9, 5, posGap}, {3, 9, 6, posOK}}},
		{name: "stream not reported: the first message sets it", steps: []step{{3, 4, 10, posOK}, {3, 4, 11, posOK}, {3, 4, 13, posGap}}},
		{name: "streams are apart", first: &protocol.StreamsBody{Streams: []protocol.StreamState{
			{Stream: "user", Epoch: protocol.FormatEpoch(1), Offset: 0}, {Stream: "key", Epoch: protocol.FormatEpoch(2), Offset: 10}}},
			steps: []step{{1, 1, 1, posOK}, {2, 2, 11, posOK}, {1, 1, 2, posOK}, {2, 2, 11, posDup}}},
		{name: "reported as no stream: the first message sets it", first: &protocol.StreamsBody{Streams: []protocol.StreamState{{Stream: "room", Epoch: protocol.FormatEpoch(0)}}},
			steps: []step{{3, 4, 10, posOK}, {3, 4, 12, posGap}}},
		{name: "no stream: never judged", steps: []step{{0, 0, 0, posOK}, {0, 0, 0, posOK}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rl relLink
			var tl relTally
			if tc.first != nil {
				b, _ := json.Marshal(tc.first)
				rl.report(b, &tl)
			}
			for i, s := range tc.steps {
				if got := rl.check(s.stream, s.epoch, s.offset); got != s.want {
					t.Fatalf("step %d %+v: %d, want %d", i, s, got, s.want)
				}
			}
			if tl.bad != 0 || tl.unrecovered != 0 {
				t.Fatalf("tally %+v", tl)
			}
		})
	}
}

// TestRelReport: the first report of a connection sets the positions;
// later ones count the streams not recovered and reset them; a recovered
// stream in the same epoch keeps its position; bad bodies are counted.
func TestRelReport(t *testing.T) {
	var rl relLink
	var tl relTally
	body := func(states ...protocol.StreamState) []byte {
		b, _ := json.Marshal(protocol.StreamsBody{Streams: states})
		return b
	}
	e := protocol.FormatEpoch
	rl.report(body(protocol.StreamState{Stream: "user", Epoch: e(3), Offset: 10}, protocol.StreamState{Stream: "room", Epoch: e(4), Offset: 2}), &tl)
	if tl.reports != 1 || tl.unrecovered != 0 || rl.pos[0] != (relPos{3, 0, 11}) || rl.pos[2] != (relPos{4, 0, 3}) {
		t.Fatalf("after the first report: tally %+v, positions %+v", tl, rl.pos)
	}
	rl.check(protocol.StreamUser, 3, 11)
	rl.check(protocol.StreamKey, 6, 1)
	// A recovered stream keeps its position (the recovered messages
	// follow); one not recovered may go on up to the reported offset + 1,
	// in a new epoch from anywhere up to it.
	rl.report(body(protocol.StreamState{Stream: "user", Epoch: e(3), Offset: 20, Recovered: true},
		protocol.StreamState{Stream: "key", Epoch: e(6), Offset: 4}, protocol.StreamState{Stream: "room", Epoch: e(5), Offset: 7}), &tl)
	if tl.reports != 2 || tl.unrecovered != 2 || rl.pos != [3]relPos{{3, 11, 0}, {6, 1, 5}, {5, 0, 8}} {
		t.Fatalf("after the second report: tally %+v, positions %+v", tl, rl.pos)
	}
	for _, b := range [][]byte{[]byte("{"), body(protocol.StreamState{Stream: "nope", Epoch: e(1)}), body(protocol.StreamState{Stream: "user", Epoch: "xyz"})} {
		rl.report(b, &tl)
	}
	if tl.reports != 5 || tl.bad != 3 || rl.pos[0] != (relPos{3, 11, 0}) {
		t.Fatalf("after bad reports: tally %+v, positions %+v", tl, rl.pos)
	}
}

// ackCollector keeps the op-19 bodies a fake comet receives.
type ackCollector struct {
	mu     sync.Mutex
	frames [][]string
	others []int32
}

func (a *ackCollector) got(op int32, body []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if op != protocol.OpAck {
		a.others = append(a.others, op)
		return
	}
	ids, err := protocol.ParseAck(body)
	if err != nil {
		ids = []string{"bad: " + err.Error()}
	}
	a.frames = append(a.frames, ids)
}

func (a *ackCollector) snapshot() (frames [][]string, others []int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.frames), slices.Clone(a.others)
}

// TestRelAckBatching: 64 waiting ids go at once from the reader, in one
// frame; the rest wait for the ticker. Messages without an id are not
// acked.
func TestRelAckBatching(t *testing.T) {
	acks := &ackCollector{}
	comet := startFake(t, &fakeComet{raw: func(protocol.AuthBody) [][]byte { return nil }, got: acks.got})
	c, err := NewConns(ConnsConfig{Run: "ab", N: 1, Transport: TransportTCP, Addrs: []string{comet.ln.Addr().String()},
		DialConcurrency: 1, HandshakeTimeout: 5 * time.Second, Heartbeat: time.Second, Reliable: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc, err := client.DialBody(context.Background(), comet.ln.Addr().String(), []byte(`{"mid":1,"reliable":true}`), client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rl := &relLink{Conn: cc}
	var tl relTally
	now := time.Now().UnixNano()
	var want []string
	for n := uint64(1); n <= 130; n++ {
		id := n
		if n == 100 {
			id = 0 // no id: not acked
		} else {
			want = append(want, msgID(n))
		}
		frame := envelope(id, protocol.StreamUser, 1, n, AppendBody(nil, "ab", "mid:1", n, now, 0))
		op, body, ok := c.unwrap(rl, protocol.OpMessage, frame[protocol.HeaderSize:], &tl)
		if !ok || op != 1000 {
			t.Fatalf("message %d: op %d, ok %v", n, op, ok)
		}
		if b, err := ParseBody(body); err != nil || b.Seq != n {
			t.Fatalf("message %d: inner body %q: %v", n, body, err)
		}
	}
	// 129 ids: two full frames went from the reader, one id waits.
	testkit.WaitFor(t, 5*time.Second, func() error {
		if f, _ := acks.snapshot(); len(f) != 2 {
			return fmt.Errorf("%d ack frames, want 2", len(f))
		}
		return nil
	})
	c.sendAcks(rl) // what the ticker does
	testkit.WaitFor(t, 5*time.Second, func() error {
		if f, _ := acks.snapshot(); len(f) != 3 {
			return fmt.Errorf("%d ack frames, want 3", len(f))
		}
		return nil
	})
	frames, others := acks.snapshot()
	if len(frames[0]) != 64 || len(frames[1]) != 64 || len(frames[2]) != 1 || len(others) != 0 {
		t.Fatalf("ack frames of %d, %d, %d ids; other frames %v", len(frames[0]), len(frames[1]), len(frames[2]), others)
	}
	if got := slices.Concat(frames...); !slices.Equal(got, want) {
		t.Fatalf("acked %v, want %v", got, want)
	}
	if tl.msgs[protocol.StreamUser] != 130 || tl.noID != 1 || tl.dups != [4]uint64{} || tl.gaps != [4]uint64{} {
		t.Fatalf("tally %+v", tl)
	}
	if f, n := c.rel.ackFrames.Load(), c.rel.ackedIDs.Load(); f != 3 || n != 129 {
		t.Fatalf("counted %d ack frames, %d ids", f, n)
	}
	c.sendAcks(rl) // nothing waits: nothing sent
	if f := c.rel.ackFrames.Load(); f != 3 {
		t.Fatalf("%d ack frames after an empty flush", f)
	}
}

// TestConnsReliable: reliable connections opt in, unwrap envelopes into
// the usual accounting, count per stream, duplicates and gaps, op 20,
// pushes without an envelope and bad bodies, ack every id once; the
// summary fails on duplicates and gaps.
func TestConnsReliable(t *testing.T) {
	const run = "rel1"
	now := time.Now().UnixNano()
	body := func(stream string, seq uint64) []byte { return AppendBody(nil, run, stream, seq, now, 0) }
	e := protocol.FormatEpoch
	var optedIn sync.Map
	acks := &ackCollector{}
	comet := startFake(t, &fakeComet{got: acks.got, raw: func(a protocol.AuthBody) [][]byte {
		optedIn.Store(a.Mid, a.Reliable)
		switch a.Mid {
		case 1: // clean: user and room streams in order, one in no stream
			return [][]byte{
				report(t, protocol.StreamState{Stream: "user", Epoch: e(11), Offset: 4}, protocol.StreamState{Stream: "room", Epoch: e(12), Offset: 0}),
				envelope(1, protocol.StreamUser, 11, 5, body("mid:1", 1)),
				envelope(2, protocol.StreamRoom, 12, 1, body("room:live://r", 1)),
				envelope(3, protocol.StreamUser, 11, 6, body("mid:1", 2)),
				envelope(4, protocol.StreamRoom, 12, 2, body("room:live://r", 2)),
				envelope(5, protocol.StreamNone, 0, 0, body("mid:1", 3)),
			}
		default: // a duplicate, a gap, a later report not recovered, a plain push, a bad envelope
			return [][]byte{
				report(t, protocol.StreamState{Stream: "key", Epoch: e(21), Offset: 0}),
				envelope(6, protocol.StreamKey, 21, 1, body("key:k1", 1)),
				envelope(7, protocol.StreamKey, 21, 1, body("key:k1", 1)),
				envelope(8, protocol.StreamKey, 21, 3, body("key:k1", 3)),
				report(t, protocol.StreamState{Stream: "key", Epoch: e(22), Offset: 9}),
				envelope(9, protocol.StreamKey, 22, 10, body("key:k1", 4)),
				protocol.AppendFrame(nil, protocol.Version, 1000, 0, body("key:k1", 5)),
				protocol.AppendFrame(nil, protocol.Version, protocol.OpMessage, 0, []byte("short")),
			}
		}
	}})
	c, err := NewConns(ConnsConfig{Run: run, N: 2, Transport: TransportTCP, Addrs: []string{comet.ln.Addr().String()},
		DialConcurrency: 1, HandshakeTimeout: 5 * time.Second, Heartbeat: time.Second,
		MidStart: 1, KeyPrefix: "k", Accepts: []int32{1000}, Reliable: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Open(context.Background())
	var wantIDs []string
	for _, n := range []uint64{1, 3, 6, 7, 8, 9} { // pushes by user or key: not those of the room or of no stream
		wantIDs = append(wantIDs, msgID(n))
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		frames, _ := acks.snapshot()
		if got := slices.Concat(frames...); len(got) < len(wantIDs) {
			return fmt.Errorf("%d ids acked, want %d", len(got), len(wantIDs))
		}
		return nil
	})
	c.Close()
	for mid := int64(1); mid <= 2; mid++ {
		if v, _ := optedIn.Load(mid); v != true {
			t.Fatalf("mid %d: auth body reliable %v", mid, v)
		}
	}
	frames, others := acks.snapshot()
	got := slices.Concat(frames...)
	slices.Sort(got)
	if !slices.Equal(got, wantIDs) || len(others) != 0 {
		t.Fatalf("acked %v, want %v; other frames %v", got, wantIDs, others)
	}
	r := c.Record()
	rel := r.Reliable
	want := &ReliableCounts{Streams: map[string]*StreamCounts{
		"none": {Messages: 1}, "user": {Messages: 2}, "room": {Messages: 2}, "key": {Messages: 4, Duplicates: 1, Gaps: 1}},
		Reports: 3, Unrecovered: 1, Plain: 1, Bad: 1, AckFrames: rel.AckFrames, AckedIDs: 6}
	if gotJSON, wantJSON := mustJSON(t, rel), mustJSON(t, want); gotJSON != wantJSON {
		t.Fatalf("reliable counts\n%s, want\n%s", gotJSON, wantJSON)
	}
	// The inner frames went through the usual accounting: 5 + 5 pushes
	// (one of them a duplicate), the bad envelope not among them.
	if r.Frames != 10 || r.Foreign != 0 || r.Latency.N != 9 {
		t.Fatalf("frames %d, foreign %d, latency samples %d", r.Frames, r.Foreign, r.Latency.N)
	}
	s := &Summary{Conns: summarizeConns([]*ConnsRecord{r, r})}
	s.judge()
	if s.Conns.Reliable.Streams["key"].Duplicates != 2 || s.Conns.Reliable.AckedIDs != 12 {
		t.Fatalf("merged %s", mustJSON(t, s.Conns.Reliable))
	}
	all := strings.Join(s.Failures, "\n")
	for _, w := range []string{"2 duplicate stream positions", "2 gaps in streams", "2 stream reports", "2 pushes reached reliable connections without an envelope", "2 op-18 or op-20 bodies"} {
		if !strings.Contains(all, w) {
			t.Errorf("failures %q lack %q", s.Failures, w)
		}
	}
	// merge judges the conns summaries' records the same way.
	m, err := Merge([]*Summary{{Version: SummaryVersion, Mode: "conns", ConnsRecord: r}})
	if err != nil || m.OK || !strings.Contains(strings.Join(m.Failures, "\n"), "1 duplicate stream positions") ||
		!strings.Contains(strings.Join(m.Failures, "\n"), "1 gaps in streams") {
		t.Fatalf("merge: %v, failures %q", err, m.Failures)
	}
	var text strings.Builder
	if err := WriteText(&text, s); err != nil || !strings.Contains(text.String(), "reliable: 18 messages (none 2 (dup 0, gaps 0), user 4") {
		t.Fatalf("text: %v\n%s", err, text.String())
	}
}

// TestConnsNotReliable: without the flag connections do not opt in, keep
// the plain link (no reliable state) and take op 18 as any business op.
func TestConnsNotReliable(t *testing.T) {
	const run = "rel0"
	now := time.Now().UnixNano()
	var optedIn sync.Map
	comet := startFake(t, &fakeComet{raw: func(a protocol.AuthBody) [][]byte {
		optedIn.Store(a.Mid, a.Reliable)
		return [][]byte{
			envelope(1, protocol.StreamUser, 1, 1, AppendBody(nil, run, "mid:1", 1, now, 0)),
			protocol.AppendFrame(nil, protocol.Version, 1000, 0, AppendBody(nil, run, "mid:1", 2, now, 0)),
		}
	}})
	c, err := NewConns(ConnsConfig{Run: run, N: 1, Transport: TransportTCP, Addrs: []string{comet.ln.Addr().String()},
		DialConcurrency: 1, HandshakeTimeout: 5 * time.Second, Heartbeat: time.Second, MidStart: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Open(context.Background())
	testkit.WaitFor(t, 5*time.Second, func() error {
		if n := c.frames.Load(); n != 2 {
			return fmt.Errorf("%d frames", n)
		}
		return nil
	})
	c.mu.Lock()
	l := c.conns[0].link()
	c.mu.Unlock()
	c.Close()
	if _, ok := l.(*client.Conn); !ok {
		t.Fatalf("link %T, want *client.Conn", l)
	}
	if v, _ := optedIn.Load(int64(1)); v != false {
		t.Fatalf("auth body reliable %v", v)
	}
	r := c.Record()
	if r.Reliable != nil || r.Frames != 2 || r.Foreign != 1 || r.Latency.N != 1 {
		t.Fatalf("record: reliable %+v, frames %d, foreign %d", r.Reliable, r.Frames, r.Foreign)
	}
	if err := (ConnsConfig{Transport: TransportSSE, Reliable: true}).Validate(); err == nil || !strings.Contains(err.Error(), "-reliable") {
		t.Fatalf("-reliable with sse: %v", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
