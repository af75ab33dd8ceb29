package bench

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Which connection should have received which push, decided from the
// records after the run:
//
//   - a room push is expected by every connection in the room; a mids or
//     keys push by every connection of that user or key that accepts the
//     op; an all push by every connection that accepts the op;
//   - only pushes logic accepted (200, code 0) are expected;
//   - a connection expects the pushes sent after its handshake completed
//     (comet joins it to its room and registers it before the auth
//     reply, so nothing sent later can miss it) and before the tool
//     closed it;
//   - a connection the server or the network dropped keeps expecting
//     every push until the end: what it missed is lost (counted again
//     apart as lost_after_drop), because for the user it is.
//
// Anything received beyond that is extra (sent before the connection was
// up, or not accepted by logic: unacked) or misrouted (the connection was
// not a target at all).

// maxStreamSummaries bounds the per-stream lines of a summary; the
// streams with the most losses come first.
const maxStreamSummaries = 1000

// maxLostSamples bounds the examples of losses a summary lists.
const maxLostSamples = 10

// connRef is a connection with what its process knew of it.
type connRef struct {
	c       *ConnRecord
	accepts []int32
	end     int64 // the tool closed it; 0 if it did not
}

func (r connRef) recv(stream string) *StreamRecv {
	for i := range r.c.Streams {
		if r.c.Streams[i].Stream == stream {
			return &r.c.Streams[i]
		}
	}
	return nil
}

// evaluate decides delivery from the pushers' and the connections'
// records.
func evaluate(pushes []*PushRecord, conns []*ConnsRecord) (*DeliverySummary, error) {
	d := &DeliverySummary{ExpectationKnown: true}
	var all []connRef
	byRoom := map[string][]connRef{}
	byMid := map[int64][]connRef{}
	byKey := map[string][]connRef{}
	lat := &HistData{}
	for _, cr := range conns {
		d.Foreign += cr.Foreign
		lat.Merge(&cr.Latency)
		for i := range cr.Conns {
			c := &cr.Conns[i]
			ref := connRef{c: c, accepts: cr.Accepts, end: cr.End}
			all = append(all, ref)
			if c.Room != "" {
				byRoom[c.Room] = append(byRoom[c.Room], ref)
			}
			byMid[c.Mid] = append(byMid[c.Mid], ref)
			if c.Key != "" {
				byKey[c.Key] = append(byKey[c.Key], ref)
			}
			for _, st := range c.Streams {
				set := st.set()
				d.Received += set.count()
				d.Duplicated += uint64(st.Dup)
			}
		}
	}
	d.Latency = lat.Quantiles()

	byName := map[string]*PushStream{}
	var matchedRecv uint64
	var streams []StreamSummary
	for _, pr := range pushes {
		for i := range pr.Streams {
			ps := &pr.Streams[i]
			if byName[ps.Stream] != nil {
				return nil, fmt.Errorf("stream %s is in two push records", ps.Stream)
			}
			byName[ps.Stream] = ps
			ss := StreamSummary{Stream: ps.Stream, Sent: uint64(len(ps.Sent)), Accepted: uint64(len(ps.Sent) - len(ps.Failed))}
			var targets []connRef
			switch ps.Kind {
			case KindRoom:
				targets = byRoom[ps.Target]
			case KindMids:
				mid, err := strconv.ParseInt(ps.Target, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("stream %s: mid %q", ps.Stream, ps.Target)
				}
				targets = byMid[mid]
			case KindKeys:
				targets = byKey[ps.Target]
			case KindAll:
				targets = all
			default:
				return nil, fmt.Errorf("stream %s: kind %q", ps.Stream, ps.Kind)
			}
			for _, ref := range targets {
				if ps.Kind != KindRoom && !slices.Contains(ref.accepts, pr.Op) {
					continue
				}
				ss.Receivers++
				var set seqSet
				if st := ref.recv(ps.Stream); st != nil {
					set = st.set()
					ss.Duplicated += uint64(st.Dup)
				}
				got := set.count()
				ss.Received += got
				matchedRecv += got
				a, b := window(ps.Sent, ref.c.Up, ref.end)
				exp := expectedIn(ps.Failed, a, b)
				del := deliveredIn(&set, ps.Failed, a, b)
				ss.Expected += exp
				ss.Delivered += del
				d.Extra += got - del
				for _, f := range ps.Failed {
					if set.contains(f) {
						d.Unacked++
					}
				}
				lost := exp - del
				if lost == 0 {
					continue
				}
				if ref.c.Down > 0 {
					lo := max(a, uint64(sort.Search(len(ps.Sent), func(i int) bool { return ps.Sent[i] > ref.c.Down }))+1)
					d.LostAfterDrop += expectedIn(ps.Failed, lo, b) - deliveredIn(&set, ps.Failed, lo, b)
				}
				if len(d.LostSamples) < maxLostSamples {
					d.LostSamples = append(d.LostSamples, LostSample{
						Conn: ref.c.Index, Mid: ref.c.Mid, Key: ref.c.Key, Stream: ps.Stream, Lost: lost,
						Dropped: ref.c.Down > 0, Seqs: missing(&set, ps.Failed, a, b, 5),
					})
				}
			}
			ss.Lost = ss.Expected - ss.Delivered
			d.Expected += ss.Expected
			d.Delivered += ss.Delivered
			streams = append(streams, ss)
		}
	}
	d.Lost = d.Expected - d.Delivered
	d.Misrouted = d.Received - matchedRecv
	d.classifyLate(conns, byName, streams)
	d.DeliveredRatio = 1
	if d.Expected > 0 {
		d.DeliveredRatio = float64(d.Delivered) / float64(d.Expected)
	}
	d.setStreams(streams)
	return d, nil
}

// classifyLate sorts late arrivals into reordering the pusher caused
// (Reordered: both pushes were in flight at once, so logic may have
// published them in either order) and order violations (OutOfOrder: the
// earlier push was accepted before the later one was even sent). One
// that cannot be told apart (no send log, beyond the tool's bound)
// counts as a violation.
func (d *DeliverySummary) classifyLate(conns []*ConnsRecord, byName map[string]*PushStream, streams []StreamSummary) {
	idx := make(map[string]int, len(streams))
	for i, st := range streams {
		idx[st.Stream] = i
	}
	for _, cr := range conns {
		d.OutOfOrder += cr.LateUnclassified
		for _, la := range cr.LateArrivals {
			n := uint64(la.Count)
			violation := true
			if ps := byName[la.Stream]; ps != nil && la.Seq >= 1 && la.Seq <= uint64(len(ps.Acked)) && la.After >= 1 && la.After <= uint64(len(ps.Sent)) {
				acked := ps.Acked[la.Seq-1]
				violation = acked > 0 && acked < ps.Sent[la.After-1]
			}
			i, known := idx[la.Stream]
			switch {
			case violation:
				d.OutOfOrder += n
				if known {
					streams[i].OutOfOrder += n
				}
			default:
				d.Reordered += n
				if known {
					streams[i].Reordered += n
				}
			}
		}
	}
}

// receiveOnly summarises what connections received when nobody knows what
// was sent (conns without a push record): gaps between received sequence
// numbers are the only loss it can see.
func receiveOnly(conns []*ConnsRecord) *DeliverySummary {
	d := &DeliverySummary{}
	lat := &HistData{}
	per := map[string]*StreamSummary{}
	for _, cr := range conns {
		d.Foreign += cr.Foreign
		lat.Merge(&cr.Latency)
		for i := range cr.Conns {
			for _, st := range cr.Conns[i].Streams {
				ss := per[st.Stream]
				if ss == nil {
					ss = &StreamSummary{Stream: st.Stream}
					per[st.Stream] = ss
				}
				set := st.set()
				ss.Receivers++
				ss.Received += set.count()
				ss.Gaps += set.gaps()
				ss.Duplicated += uint64(st.Dup)
				ss.OutOfOrder += uint64(st.Late)
			}
		}
	}
	streams := make([]StreamSummary, 0, len(per))
	for _, ss := range per {
		d.Received += ss.Received
		d.Gaps += ss.Gaps
		d.Duplicated += ss.Duplicated
		d.OutOfOrder += ss.OutOfOrder
		streams = append(streams, *ss)
	}
	d.Latency = lat.Quantiles()
	d.setStreams(streams)
	return d
}

// setStreams keeps the worst streams (most lost, then most gaps, then by
// name) up to maxStreamSummaries.
func (d *DeliverySummary) setStreams(s []StreamSummary) {
	slices.SortFunc(s, func(a, b StreamSummary) int {
		return cmp.Or(cmp.Compare(b.Lost, a.Lost), cmp.Compare(b.Gaps, a.Gaps), strings.Compare(a.Stream, b.Stream))
	})
	if len(s) > maxStreamSummaries {
		d.StreamsOmitted = len(s) - maxStreamSummaries
		s = s[:maxStreamSummaries]
	}
	if s == nil {
		s = []StreamSummary{}
	}
	d.Streams = s
}

// window returns the seqs [a, b] a connection up at up and closed by the
// tool at end (0: not closed) expects of a stream whose send times are
// sent: those sent after up and before end. a > b when there are none.
func window(sent []int64, up, end int64) (a, b uint64) {
	a = uint64(sort.Search(len(sent), func(i int) bool { return sent[i] > up })) + 1
	b = uint64(len(sent))
	if end > 0 {
		b = uint64(sort.Search(len(sent), func(i int) bool { return sent[i] >= end }))
	}
	return a, b
}

// expectedIn counts the seqs in [a, b] not in failed (sorted).
func expectedIn(failed []uint64, a, b uint64) uint64 {
	if a > b {
		return 0
	}
	return b - a + 1 - uint64(len(inRange(failed, a, b)))
}

// deliveredIn counts the seqs of set in [a, b] not in failed.
func deliveredIn(set *seqSet, failed []uint64, a, b uint64) uint64 {
	if a > b {
		return 0
	}
	n := set.countIn(a, b)
	for _, f := range inRange(failed, a, b) {
		if set.contains(f) {
			n--
		}
	}
	return n
}

// inRange returns the part of sorted s within [a, b].
func inRange(s []uint64, a, b uint64) []uint64 {
	i, _ := slices.BinarySearch(s, a)
	j, _ := slices.BinarySearch(s, b+1)
	return s[i:j]
}

// missing lists up to limit ranges of seqs in [a, b] that are neither in
// set nor in failed, as "7" or "7-9".
func missing(set *seqSet, failed []uint64, a, b uint64, limit int) []string {
	var out []string
	emit := func(lo, hi uint64) bool {
		for _, f := range inRange(failed, lo, hi) {
			if f > lo && len(out) < limit {
				out = append(out, fmtRange(lo, f-1))
			}
			lo = f + 1
		}
		if lo <= hi && len(out) < limit {
			out = append(out, fmtRange(lo, hi))
		}
		return len(out) < limit
	}
	next := a
	for _, r := range set.r {
		if r.Hi < a {
			continue
		}
		if r.Lo > b {
			break
		}
		if r.Lo > next && !emit(next, r.Lo-1) {
			return out
		}
		next = r.Hi + 1
	}
	if next <= b {
		emit(next, b)
	}
	return out
}

func fmtRange(lo, hi uint64) string {
	if lo == hi {
		return strconv.FormatUint(lo, 10)
	}
	return strconv.FormatUint(lo, 10) + "-" + strconv.FormatUint(hi, 10)
}
