package bench

import (
	"slices"
	"sort"
	"sync"
)

// What one connection received, per stream: the sequence numbers as
// ranges, plus duplicates and late arrivals counted as they happen. Which
// of them the connection should have received is decided at the end, from
// the pusher's record (evaluate.go).

// seqRange is an inclusive range of sequence numbers.
type seqRange struct{ Lo, Hi uint64 }

// seqSet is a set of sequence numbers kept as sorted, disjoint,
// non-adjacent ranges. In-order delivery keeps a single range and adds in
// O(1), so a connection that misses nothing costs 16 bytes per stream
// however long the run; each hole costs one more range.
type seqSet struct {
	r []seqRange
}

// add adds seq. dup reports that seq was already there (nothing changes);
// late that a higher seq had arrived before it (out of order).
func (s *seqSet) add(seq uint64) (dup, late bool) {
	n := len(s.r)
	if n == 0 || seq > s.r[n-1].Hi+1 {
		s.r = append(s.r, seqRange{seq, seq})
		return false, false
	}
	if seq == s.r[n-1].Hi+1 {
		s.r[n-1].Hi = seq
		return false, false
	}
	// seq <= the highest: a duplicate or a late arrival. Find the first
	// range that ends at or after seq (the last one does).
	i := sort.Search(n, func(i int) bool { return s.r[i].Hi >= seq })
	if s.r[i].Lo <= seq {
		return true, false
	}
	joinPrev := i > 0 && s.r[i-1].Hi+1 == seq
	joinNext := seq+1 == s.r[i].Lo
	switch {
	case joinPrev && joinNext:
		s.r[i-1].Hi = s.r[i].Hi
		s.r = slices.Delete(s.r, i, i+1)
	case joinPrev:
		s.r[i-1].Hi = seq
	case joinNext:
		s.r[i].Lo = seq
	default:
		s.r = slices.Insert(s.r, i, seqRange{seq, seq})
	}
	return false, true
}

// contains reports whether seq is in the set.
func (s *seqSet) contains(seq uint64) bool {
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i].Hi >= seq })
	return i < len(s.r) && s.r[i].Lo <= seq
}

// count is the number of sequence numbers in the set.
func (s *seqSet) count() uint64 {
	var n uint64
	for _, r := range s.r {
		n += r.Hi - r.Lo + 1
	}
	return n
}

// countIn is the number of sequence numbers of the set in [lo, hi].
func (s *seqSet) countIn(lo, hi uint64) uint64 {
	if lo > hi {
		return 0
	}
	var n uint64
	for _, r := range s.r {
		a, b := max(r.Lo, lo), min(r.Hi, hi)
		if a <= b {
			n += b - a + 1
		}
	}
	return n
}

// gaps is the number of sequence numbers missing between the lowest and
// the highest in the set: a lower bound of what was lost, known without
// the pusher's record.
func (s *seqSet) gaps() uint64 {
	if len(s.r) == 0 {
		return 0
	}
	return s.r[len(s.r)-1].Hi - s.r[0].Lo + 1 - s.count()
}

// connStream is what a connection received of one stream.
type connStream struct {
	id   int32 // index in the streamTable
	set  seqSet
	dup  uint32
	late uint32
}

// recvLog is what a connection received, per stream. mu is taken by the
// connection's reader for each push and by whoever reads the log while the
// connection is open (the drain check).
type recvLog struct {
	mu      sync.Mutex // guards streams
	streams []connStream
}

// add records push seq of stream id and reports what it was; for a late
// one, after is the highest seq that had arrived before it.
func (l *recvLog) add(id int32, seq uint64) (dup, late bool, after uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.streams {
		if l.streams[i].id == id {
			st := &l.streams[i]
			after = st.set.r[len(st.set.r)-1].Hi
			dup, late = st.set.add(seq)
			if dup {
				st.dup++
			}
			if late {
				st.late++
			}
			return dup, late, after
		}
	}
	l.streams = append(l.streams, connStream{id: id, set: seqSet{r: []seqRange{{seq, seq}}}})
	return false, false, 0
}

// lateKey is a late arrival: seq of stream arrived after after had.
type lateKey struct {
	stream     int32
	seq, after uint64
}

// maxLateKeys bounds the distinct late arrivals a process keeps for
// classification (about 40 bytes each); further ones are only counted.
const maxLateKeys = 1 << 18

// streamTable interns stream ids, so connections store a small index per
// stream and the reader looks one up without allocating.
type streamTable struct {
	mu    sync.RWMutex // guards ids and names
	ids   map[string]int32
	names []string
}

// maxStreams bounds the streams one process tracks; pushes of further
// streams are counted as foreign.
const maxStreams = 1 << 20

func newStreamTable() *streamTable {
	return &streamTable{ids: make(map[string]int32)}
}

// id returns the index of stream name, adding it if new; false when the
// table is full.
func (t *streamTable) id(name []byte) (int32, bool) {
	t.mu.RLock()
	id, ok := t.ids[string(name)]
	t.mu.RUnlock()
	if ok {
		return id, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids[string(name)]; ok {
		return id, true
	}
	if len(t.names) >= maxStreams {
		return -1, false
	}
	s := string(name)
	id = int32(len(t.names))
	t.ids[s] = id
	t.names = append(t.names, s)
	return id, true
}

// name returns the name of stream id.
func (t *streamTable) name(id int32) string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.names[id]
}
