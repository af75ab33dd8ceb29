package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestSeqSet(t *testing.T) {
	cases := []struct {
		name       string
		seqs       []uint64
		wantRanges []seqRange
		wantDup    int
		wantLate   int
		wantGaps   uint64
	}{
		{name: "in order", seqs: []uint64{1, 2, 3, 4}, wantRanges: []seqRange{{1, 4}}},
		{name: "starts late (joined mid-run)", seqs: []uint64{7, 8, 9}, wantRanges: []seqRange{{7, 9}}},
		{name: "a hole", seqs: []uint64{1, 2, 4, 5}, wantRanges: []seqRange{{1, 2}, {4, 5}}, wantGaps: 1},
		{name: "hole filled late joins both sides", seqs: []uint64{1, 2, 4, 3}, wantRanges: []seqRange{{1, 4}}, wantLate: 1},
		{name: "late joins the range before", seqs: []uint64{1, 5, 2}, wantRanges: []seqRange{{1, 2}, {5, 5}}, wantLate: 1, wantGaps: 2},
		{name: "late joins the range after", seqs: []uint64{1, 5, 4}, wantRanges: []seqRange{{1, 1}, {4, 5}}, wantLate: 1, wantGaps: 2},
		{name: "late alone", seqs: []uint64{1, 9, 5}, wantRanges: []seqRange{{1, 1}, {5, 5}, {9, 9}}, wantLate: 1, wantGaps: 6},
		{name: "late before everything", seqs: []uint64{5, 6, 2}, wantRanges: []seqRange{{2, 2}, {5, 6}}, wantLate: 1, wantGaps: 2},
		{name: "duplicate of the last", seqs: []uint64{1, 2, 2}, wantRanges: []seqRange{{1, 2}}, wantDup: 1},
		{name: "duplicate inside", seqs: []uint64{1, 2, 3, 1, 2}, wantRanges: []seqRange{{1, 3}}, wantDup: 2},
		{name: "duplicate of a late one", seqs: []uint64{1, 3, 2, 2}, wantRanges: []seqRange{{1, 3}}, wantDup: 1, wantLate: 1},
		{name: "reversed", seqs: []uint64{5, 4, 3, 2, 1}, wantRanges: []seqRange{{1, 5}}, wantLate: 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s seqSet
			dups, lates := 0, 0
			for _, q := range tc.seqs {
				dup, late := s.add(q)
				if dup {
					dups++
				}
				if late {
					lates++
				}
			}
			if !slices.Equal(s.r, tc.wantRanges) || dups != tc.wantDup || lates != tc.wantLate || s.gaps() != tc.wantGaps {
				t.Fatalf("ranges %v dup %d late %d gaps %d; want %v %d %d %d",
					s.r, dups, lates, s.gaps(), tc.wantRanges, tc.wantDup, tc.wantLate, tc.wantGaps)
			}
		})
	}
}

// TestSeqSetRandom checks the set against a map under random arrivals.
func TestSeqSetRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var s seqSet
	seen := map[uint64]bool{}
	var highest uint64
	for range 20000 {
		q := uint64(r.IntN(3000)) + 1
		dup, late := s.add(q)
		if dup != seen[q] {
			t.Fatalf("seq %d: dup %v, seen %v", q, dup, seen[q])
		}
		if !dup && late != (q < highest) {
			t.Fatalf("seq %d: late %v with highest %d", q, late, highest)
		}
		seen[q] = true
		highest = max(highest, q)
	}
	if s.count() != uint64(len(seen)) {
		t.Fatalf("count %d, want %d", s.count(), len(seen))
	}
	for q := uint64(0); q <= 3001; q++ {
		if s.contains(q) != seen[q] {
			t.Fatalf("contains(%d) = %v", q, s.contains(q))
		}
	}
	var in uint64
	for q := uint64(100); q <= 200; q++ {
		if seen[q] {
			in++
		}
	}
	if got := s.countIn(100, 200); got != in {
		t.Fatalf("countIn(100, 200) = %d, want %d", got, in)
	}
	for i := 1; i < len(s.r); i++ {
		if s.r[i].Lo <= s.r[i-1].Hi+1 {
			t.Fatalf("ranges %v and %v touch", s.r[i-1], s.r[i])
		}
	}
}

func TestRecvLogAndStreamTable(t *testing.T) {
	st := newStreamTable()
	a, _ := st.id([]byte("room:live://1"))
	b, _ := st.id([]byte("mid:5"))
	if again, _ := st.id([]byte("room:live://1")); again != a || a == b || st.name(b) != "mid:5" {
		t.Fatalf("ids %d %d %d", a, b, again)
	}
	var l recvLog
	l.add(a, 1)
	l.add(b, 1)
	l.add(a, 2)
	if dup, _, _ := l.add(a, 2); !dup {
		t.Fatal("duplicate not seen")
	}
	if _, late, _ := l.add(b, 3); late {
		t.Fatal("in-order push seen as late")
	}
	if _, late, after := l.add(b, 2); !late || after != 3 {
		t.Fatalf("late %v after %d, want a late arrival after 3", late, after)
	}
	if len(l.streams) != 2 || l.streams[0].set.count() != 2 || l.streams[0].dup != 1 || l.streams[1].late != 1 || l.streams[1].set.gaps() != 0 {
		t.Fatalf("log %+v", l.streams)
	}
	if n := testing.AllocsPerRun(100, func() { st.id([]byte("room:live://1")) }); n != 0 {
		t.Fatalf("lookup allocates %v", n)
	}
}
