package bench

import (
	"slices"
	"strings"
	"testing"
)

// sentAt returns send times 100, 200, ... for n pushes.
func sentAt(n int) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = int64(i+1) * 100
	}
	return s
}

// ackedAt returns accept times 150 after each of sentAt(n): push s is
// still in flight when s+1 is sent, and accepted before s+2 is.
func ackedAt(n int) []int64 {
	a := sentAt(n)
	for i := range a {
		a[i] += 150
	}
	return a
}

// recv builds a StreamRecv from inclusive ranges.
func recv(stream string, ranges ...[2]uint64) StreamRecv {
	return StreamRecv{Stream: stream, Ranges: ranges}
}

func TestEvaluate(t *testing.T) {
	room := PushStream{Stream: "room:live://1", Kind: KindRoom, Target: "live://1", Sent: sentAt(10), Acked: ackedAt(10)}
	cases := []struct {
		name    string
		push    PushRecord
		conns   ConnsRecord
		want    DeliverySummary // the counters compared
		wantOK  bool            // judged as passing
		wantMsg string          // in a failure, when not OK
	}{
		{
			name: "every member got everything",
			push: PushRecord{Op: 1000, Streams: []PushStream{room}},
			conns: ConnsRecord{Accepts: []int32{1000}, Conns: []ConnRecord{
				{Index: 0, Room: "live://1", Up: 50, Streams: []StreamRecv{recv("room:live://1", [2]uint64{1, 10})}},
				{Index: 1, Room: "live://1", Up: 50, Streams: []StreamRecv{recv("room:live://1", [2]uint64{1, 10})}},
				{Index: 2, Room: "live://2", Up: 50},
			}},
			want:   DeliverySummary{Expected: 20, Delivered: 20, Received: 20},
			wantOK: true,
		},
		{
			name: "a member missed two",
			push: PushRecord{Op: 1000, Streams: []PushStream{room}},
			conns: ConnsRecord{Conns: []ConnRecord{
				{Index: 0, Room: "live://1", Up: 50, Streams: []StreamRecv{recv("room:live://1", [2]uint64{1, 4}, [2]uint64{7, 10})}},
			}},
			want:    DeliverySummary{Expected: 10, Delivered: 8, Lost: 2, Received: 8},
			wantMsg: "lost 2 of 10",
		},
		{
			name: "a member got nothing",
			push: PushRecord{Op: 1000, Streams: []PushStream{room}},
			conns: ConnsRecord{Conns: []ConnRecord{
				{Index: 0, Room: "live://1", Up: 50},
			}},
			want:    DeliverySummary{Expected: 10, Lost: 10},
			wantMsg: "lost 10 of 10",
		},
		{
			name: "duplicates and late arrivals are counted, not lost",
			push: PushRecord{Op: 1000, Streams: []PushStream{room}},
			conns: ConnsRecord{
				Conns: []ConnRecord{
					{Index: 0, Room: "live://1", Up: 50, Streams: []StreamRecv{{Stream: "room:live://1", Ranges: [][2]uint64{{1, 10}}, Dup: 3, Late: 2}}},
					{Index: 1, Room: "live://1", Up: 50, Streams: []StreamRecv{{Stream: "room:live://1", Ranges: [][2]uint64{{1, 10}}, Late: 1}}},
				},
				LateArrivals: []LateArrival{
					{Stream: "room:live://1", Seq: 4, After: 5, Count: 2}, // 4 was in flight when 5 was sent
					{Stream: "room:live://1", Seq: 2, After: 6, Count: 1}, // 2 was accepted before 6 was sent
				},
			},
			want:   DeliverySummary{Expected: 20, Delivered: 20, Duplicated: 3, OutOfOrder: 1, Reordered: 2, Received: 20},
			wantOK: true,
		},
		{
			name: "joined mid-run: earlier pushes are not expected, and extra if received",
			push: PushRecord{Op: 1000, Streams: []PushStream{room}},
			conns: ConnsRecord{Conns: []ConnRecord{
				{Index: 0, Room: "live://1", Up: 550, Streams: []StreamRecv{recv("room:live://1", [2]uint64{5, 10})}},
			}},
			want:   DeliverySummary{Expected: 5, Delivered: 5, Extra: 1, Received: 6},
			wantOK: true,
		},
		{
			name: "dropped mid-run: the rest is lost after the drop",
			push: PushRecord{Op: 1000, Streams: []PushStream{room}},
			conns: ConnsRecord{Conns: []ConnRecord{
				{Index: 0, Room: "live://1", Up: 50, Down: 450, Streams: []StreamRecv{recv("room:live://1", [2]uint64{1, 4})}},
			}},
			want:    DeliverySummary{Expected: 10, Delivered: 4, Lost: 6, LostAfterDrop: 6, Received: 4},
			wantMsg: "6 of them after their connection was dropped",
		},
		{
			name: "closed by the tool: later pushes are not expected",
			push: PushRecord{Op: 1000, Streams: []PushStream{room}},
			conns: ConnsRecord{End: 650, Conns: []ConnRecord{
				{Index: 0, Room: "live://1", Up: 50, Streams: []StreamRecv{recv("room:live://1", [2]uint64{1, 6})}},
			}},
			want:   DeliverySummary{Expected: 6, Delivered: 6, Received: 6},
			wantOK: true,
		},
		{
			name: "a push logic refused is not expected; received anyway it is unacked",
			push: PushRecord{Op: 1000, Streams: []PushStream{{Stream: room.Stream, Kind: KindRoom, Target: "live://1", Sent: sentAt(10), Failed: []uint64{3, 8}}}},
			conns: ConnsRecord{Conns: []ConnRecord{
				{Index: 0, Room: "live://1", Up: 50, Streams: []StreamRecv{recv("room:live://1", [2]uint64{1, 7}, [2]uint64{9, 10})}},
			}},
			want:   DeliverySummary{Expected: 8, Delivered: 8, Extra: 1, Unacked: 1, Received: 9},
			wantOK: true,
		},
		{
			name: "mids: only the user's connections that accept the op",
			push: PushRecord{Op: 1000, Streams: []PushStream{{Stream: "mid:7", Kind: KindMids, Target: "7", Sent: sentAt(3)}}},
			conns: ConnsRecord{Accepts: []int32{1000, 1001}, Conns: []ConnRecord{
				{Index: 0, Mid: 7, Up: 50, Streams: []StreamRecv{recv("mid:7", [2]uint64{1, 3})}},
				{Index: 1, Mid: 7, Up: 50, Streams: []StreamRecv{recv("mid:7", [2]uint64{1, 2})}},
				{Index: 2, Mid: 8, Up: 50},
			}},
			want:    DeliverySummary{Expected: 6, Delivered: 5, Lost: 1, Received: 5},
			wantMsg: "lost 1 of 6",
		},
		{
			name: "mids to connections that do not accept the op: nothing expected",
			push: PushRecord{Op: 1000, Accepted: 3, Streams: []PushStream{{Stream: "mid:7", Kind: KindMids, Target: "7", Sent: sentAt(3)}}},
			conns: ConnsRecord{Accepts: []int32{2000}, Conns: []ConnRecord{
				{Index: 0, Mid: 7, Up: 50},
			}},
			want:    DeliverySummary{},
			wantMsg: "no delivery was expected",
		},
		{
			name: "a push delivered to the wrong user is misrouted",
			push: PushRecord{Op: 1000, Streams: []PushStream{{Stream: "mid:7", Kind: KindMids, Target: "7", Sent: sentAt(2)}}},
			conns: ConnsRecord{Accepts: []int32{1000}, Conns: []ConnRecord{
				{Index: 0, Mid: 7, Up: 50, Streams: []StreamRecv{recv("mid:7", [2]uint64{1, 2})}},
				{Index: 1, Mid: 8, Up: 50, Streams: []StreamRecv{recv("mid:7", [2]uint64{2, 2})}},
			}},
			want:    DeliverySummary{Expected: 2, Delivered: 2, Misrouted: 1, Received: 3},
			wantMsg: "not their targets",
		},
		{
			name: "keys and all",
			push: PushRecord{Op: 5, Streams: []PushStream{
				{Stream: "key:k1", Kind: KindKeys, Target: "k1", Sent: sentAt(2)},
				{Stream: "all:5", Kind: KindAll, Sent: sentAt(2)},
			}},
			conns: ConnsRecord{Accepts: []int32{5}, Conns: []ConnRecord{
				{Index: 0, Key: "k1", Up: 50, Streams: []StreamRecv{recv("key:k1", [2]uint64{1, 2}), recv("all:5", [2]uint64{1, 2})}},
				{Index: 1, Key: "k2", Up: 50, Streams: []StreamRecv{recv("all:5", [2]uint64{1, 1})}},
			}},
			want:    DeliverySummary{Expected: 6, Delivered: 5, Lost: 1, Received: 5},
			wantMsg: "lost 1 of 6",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := evaluate([]*PushRecord{&tc.push}, []*ConnsRecord{&tc.conns})
			if err != nil {
				t.Fatal(err)
			}
			got := DeliverySummary{Expected: d.Expected, Delivered: d.Delivered, Lost: d.Lost, LostAfterDrop: d.LostAfterDrop,
				Duplicated: d.Duplicated, OutOfOrder: d.OutOfOrder, Reordered: d.Reordered, Received: d.Received, Extra: d.Extra, Unacked: d.Unacked, Misrouted: d.Misrouted}
			w := tc.want
			if got.Expected != w.Expected || got.Delivered != w.Delivered || got.Lost != w.Lost || got.LostAfterDrop != w.LostAfterDrop ||
				got.Duplicated != w.Duplicated || got.OutOfOrder != w.OutOfOrder || got.Reordered != w.Reordered || got.Received != w.Received ||
				got.Extra != w.Extra || got.Unacked != w.Unacked || got.Misrouted != w.Misrouted {
				t.Fatalf("got  %+v\nwant %+v", got, w)
			}
			var streamLost uint64
			for _, st := range d.Streams {
				streamLost += st.Lost
			}
			if streamLost != d.Lost {
				t.Fatalf("streams lose %d, total %d", streamLost, d.Lost)
			}
			if d.Lost > 0 && (len(d.LostSamples) == 0 || len(d.LostSamples[0].Seqs) == 0) {
				t.Fatalf("loss without a sample: %+v", d.LostSamples)
			}
			s := &Summary{Push: &PushSummary{Accepted: tc.push.Accepted, Sent: 1}, Delivery: d}
			if s.Push.Accepted == 0 {
				s.Push.Accepted = 1
			}
			s.judge()
			if s.OK != tc.wantOK {
				t.Fatalf("OK %v, failures %q", s.OK, s.Failures)
			}
			if !tc.wantOK && !strings.Contains(strings.Join(s.Failures, "; "), tc.wantMsg) {
				t.Fatalf("failures %q, want one with %q", s.Failures, tc.wantMsg)
			}
		})
	}
}

func TestEvaluateRejectsOverlappingPushRecords(t *testing.T) {
	p := &PushRecord{Streams: []PushStream{{Stream: "all:1", Kind: KindAll, Sent: sentAt(1)}}}
	if _, err := evaluate([]*PushRecord{p, p}, nil); err == nil {
		t.Fatal("two records of one stream accepted")
	}
}

func TestMissing(t *testing.T) {
	var s seqSet
	for _, q := range []uint64{1, 2, 5, 9} {
		s.add(q)
	}
	got := missing(&s, []uint64{7}, 1, 12, 10)
	if want := []string{"3-4", "6", "8", "10-12"}; !slices.Equal(got, want) {
		t.Fatalf("missing %q, want %q", got, want)
	}
	if got := missing(&s, nil, 1, 12, 2); len(got) != 2 {
		t.Fatalf("limit not applied: %q", got)
	}
	if got := missing(&s, nil, 3, 4, 5); !slices.Equal(got, []string{"3-4"}) {
		t.Fatalf("window inside a hole: %q", got)
	}
}

func TestWindow(t *testing.T) {
	sent := []int64{100, 200, 200, 300}
	cases := []struct {
		name     string
		up, end  int64
		wantA, b uint64
	}{
		{name: "up before everything", up: 0, wantA: 1, b: 4},
		{name: "up between", up: 150, wantA: 2, b: 4},
		{name: "up at a send time: not expected", up: 200, wantA: 4, b: 4},
		{name: "up after everything", up: 999, wantA: 5, b: 4},
		{name: "closed before the last", up: 0, end: 300, wantA: 1, b: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := window(sent, tc.up, tc.end)
			if a != tc.wantA || b != tc.b {
				t.Fatalf("window [%d, %d], want [%d, %d]", a, b, tc.wantA, tc.b)
			}
		})
	}
}

func TestMergeAndJudge(t *testing.T) {
	push := &Summary{Version: SummaryVersion, Mode: "push", PushRecord: &PushRecord{Run: "r", Kind: KindRoom, Op: 1, Start: 10, End: 1e9 + 10,
		Sent: 10, Accepted: 10, Streams: []PushStream{{Stream: "room:live://1", Kind: KindRoom, Target: "live://1", Sent: sentAt(10)}}}}
	c1 := &Summary{Version: SummaryVersion, Mode: "conns", ConnsRecord: &ConnsRecord{Run: "r", Transport: "tcp", Requested: 1, Start: 1, Opened: 2,
		Conns: []ConnRecord{{Index: 0, Room: "live://1", Up: 5, Streams: []StreamRecv{recv("room:live://1", [2]uint64{1, 10})}}}}}
	c2 := &Summary{Version: SummaryVersion, Mode: "conns", ConnsRecord: &ConnsRecord{Run: "r", Transport: "ws", Requested: 2, Failed: 1,
		Errors: map[string]uint64{"dial/refused": 1},
		Conns:  []ConnRecord{{Index: 1, Room: "live://1", Up: 5, Streams: []StreamRecv{recv("room:live://1", [2]uint64{1, 9})}}}}}

	s, err := Merge([]*Summary{c1, c2, push})
	if err != nil {
		t.Fatal(err)
	}
	if s.Conns.Processes != 2 || s.Conns.Established != 2 || s.Conns.Failed != 1 || s.Conns.Transport != "mixed" {
		t.Fatalf("conns %+v", s.Conns)
	}
	if s.Delivery.Expected != 20 || s.Delivery.Lost != 1 || s.OK || len(s.Failures) != 2 {
		t.Fatalf("delivery %+v, failures %q", s.Delivery, s.Failures)
	}

	only, err := Merge([]*Summary{c1, c2})
	if err != nil {
		t.Fatal(err)
	}
	if only.Delivery.ExpectationKnown || only.Delivery.Received != 19 {
		t.Fatalf("conns only: %+v", only.Delivery)
	}

	other := *c1
	other.ConnsRecord = &ConnsRecord{Run: "other"}
	if _, err := Merge([]*Summary{&other, push}); err == nil {
		t.Fatal("records of two runs merged")
	}
	if _, err := Merge([]*Summary{{Version: SummaryVersion, Mode: "run"}}); err == nil {
		t.Fatal("a summary without a record merged")
	}
}
