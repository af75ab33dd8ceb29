package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// SummaryVersion is the version of the JSON summary's layout.
const SummaryVersion = 1

// Summary is what a run reports, as text (WriteText) and JSON. A conns or
// push summary also carries its record, the input of merge.
type Summary struct {
	Version int    `json:"version"`
	Mode    string `json:"mode"` // conns, push, run, merge
	Run     string `json:"run"`
	// Start is when the run began (Unix ns); Seconds its wall time.
	Start   int64   `json:"start_ns"`
	Seconds float64 `json:"seconds"`
	// OK is false when anything in Failures happened; the command then
	// exits with status 1.
	OK       bool     `json:"ok"`
	Failures []string `json:"failures"`
	// Warnings are worth a look but do not fail the run: duplicates, out
	// of order, pushes logic refused, foreign pushes, a missed rate.
	Warnings []string         `json:"warnings"`
	Conns    *ConnsSummary    `json:"conns,omitempty"`
	Push     *PushSummary     `json:"push,omitempty"`
	Delivery *DeliverySummary `json:"delivery,omitempty"`

	ConnsRecord *ConnsRecord `json:"conns_record,omitempty"`
	PushRecord  *PushRecord  `json:"push_record,omitempty"`
}

// ConnsSummary is the connections' side.
type ConnsSummary struct {
	Transport   string `json:"transport"`
	Processes   int    `json:"processes"`   // conns records merged
	Requested   int    `json:"requested"`   // connections asked for
	Established int    `json:"established"` // authenticated
	Failed      int    `json:"failed"`      // never authenticated
	Dropped     int    `json:"dropped"`     // ended before the tool closed them
	// HandshakesPerSecond is established connections over the dial
	// phase (first dial to last auth reply).
	HandshakesPerSecond float64   `json:"handshakes_per_s"`
	Handshake           Quantiles `json:"handshake_ms"` // dial to auth reply
	HeartbeatsSent      uint64    `json:"heartbeats_sent"`
	HeartbeatReplies    uint64    `json:"heartbeat_replies"`
	// Frames counts push frames received (any run); Reads the socket
	// reads that brought them (and everything else): FramesPerRead shows
	// how much the server batched its writes, and what a delivery cost
	// the clients.
	Frames        uint64            `json:"frames"`
	Reads         uint64            `json:"reads"`
	FramesPerRead float64           `json:"frames_per_read"`
	Errors        map[string]uint64 `json:"errors"` // "phase/kind"
	// Reconnect mode (conns -reconnect): Drops counts connections the
	// server or the network ended, Reconnects those that came back
	// (Dropped those still down at the end), ReconnectAttempts the
	// attempts, Reconnect the time from a drop to the new auth reply and
	// FirstWait the backoff drawn before the first attempt.
	Reconnect         bool      `json:"reconnect,omitempty"`
	Drops             uint64    `json:"drops,omitempty"`
	Reconnects        uint64    `json:"reconnects,omitempty"`
	ReconnectAttempts uint64    `json:"reconnect_attempts,omitempty"`
	ReconnectTime     Quantiles `json:"reconnect_ms"`
	FirstWait         Quantiles `json:"first_wait_ms"`
	// Reliable merges the reliable mode's counts (conns -reliable): a
	// duplicate or a gap in a stream, a report of a stream not recovered,
	// a push without an envelope or a body that did not decode fails the
	// run. Nil when no process ran reliable connections.
	Reliable *ReliableCounts `json:"reliable,omitempty"`
}

// PushSummary is the pushers' side.
type PushSummary struct {
	Kind        string  `json:"kind"`
	Op          int32   `json:"op"`
	Flood       bool    `json:"flood"`
	Rate        float64 `json:"rate"` // open-loop target, pushes/s
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"` // first request to last answer
	Sent        uint64  `json:"sent"`
	Accepted    uint64  `json:"accepted"`
	Failed      uint64  `json:"failed"`
	Behind      uint64  `json:"behind"` // open-loop slots skipped: every sender busy
	// AcceptedPerSecond is Accepted over Seconds.
	AcceptedPerSecond float64           `json:"accepted_per_s"`
	Answers           map[string]uint64 `json:"answers"`    // "status/code" or "error/kind"
	Latency           Quantiles         `json:"latency_ms"` // request to answer
}

// DeliverySummary is what arrived against what should have (see
// evaluate.go for the rules).
type DeliverySummary struct {
	// ExpectationKnown is false for a conns summary alone: without the
	// push record only gaps show losses.
	ExpectationKnown bool    `json:"expectation_known"`
	Expected         uint64  `json:"expected"`
	Delivered        uint64  `json:"delivered"`
	DeliveredRatio   float64 `json:"delivered_ratio"` // 1 when nothing was expected
	Lost             uint64  `json:"lost"`
	// LostAfterDrop is the part of Lost sent after its connection was
	// dropped by the server or the network.
	LostAfterDrop uint64 `json:"lost_after_drop"`
	Duplicated    uint64 `json:"duplicated"`
	// OutOfOrder counts deliveries that broke the order: a push arrived
	// after one that was sent only once it had been accepted. Without a
	// push record (conns alone) it counts every late arrival.
	OutOfOrder uint64 `json:"out_of_order"`
	// Reordered counts late arrivals the pusher explains: both pushes'
	// requests were in flight at once (concurrent requests), so logic
	// could publish them in either order. Not a fault.
	Reordered uint64 `json:"reordered"`
	// Received counts distinct pushes of this run received (duplicates
	// excluded), over every connection.
	Received uint64 `json:"received"`
	// Extra: received by a target but not expected of it (sent before
	// it was up, or not accepted by logic: Unacked).
	Extra   uint64 `json:"extra"`
	Unacked uint64 `json:"unacked"`
	// Misrouted: received by a connection that was not a target.
	Misrouted uint64 `json:"misrouted"`
	// Foreign: pushes of another run, or not the tool's.
	Foreign uint64 `json:"foreign"`
	// Gaps: sequence numbers missing between received ones (conns alone).
	Gaps uint64 `json:"gaps"`
	// StillArriving: run's drain ended while pushes were still arriving,
	// so some of Lost may only be late (a longer -drain tells).
	StillArriving bool `json:"still_arriving"`
	// PerSecond is Received over the push phase (first request to last
	// answer), or over the connections' lifetime without a push record.
	PerSecond      float64         `json:"deliveries_per_s"`
	Latency        Quantiles       `json:"latency_ms"` // push sent (body timestamp) to received
	Streams        []StreamSummary `json:"streams"`
	StreamsOmitted int             `json:"streams_omitted,omitempty"`
	LostSamples    []LostSample    `json:"lost_samples,omitempty"`
}

// StreamSummary is one room, user, key or broadcast op.
type StreamSummary struct {
	Stream     string `json:"stream"`
	Sent       uint64 `json:"sent"`
	Accepted   uint64 `json:"accepted"`
	Receivers  int    `json:"receivers"`
	Expected   uint64 `json:"expected"`
	Delivered  uint64 `json:"delivered"`
	Lost       uint64 `json:"lost"`
	Received   uint64 `json:"received"`
	Duplicated uint64 `json:"duplicated"`
	OutOfOrder uint64 `json:"out_of_order"`
	Reordered  uint64 `json:"reordered"`
	Gaps       uint64 `json:"gaps,omitempty"`
}

// LostSample is one connection that missed pushes of a stream.
type LostSample struct {
	Conn    int      `json:"conn"`
	Mid     int64    `json:"mid"`
	Key     string   `json:"key,omitempty"`
	Stream  string   `json:"stream"`
	Lost    uint64   `json:"lost"`
	Dropped bool     `json:"dropped"` // the connection was dropped
	Seqs    []string `json:"seqs"`    // first missing ranges
}

// summarizeConns merges conns records.
func summarizeConns(recs []*ConnsRecord) *ConnsSummary {
	s := &ConnsSummary{Errors: map[string]uint64{}}
	hs, rt, fw := &HistData{}, &HistData{}, &HistData{}
	var first, last int64
	for _, r := range recs {
		s.Processes++
		if s.Transport == "" || s.Transport == r.Transport {
			s.Transport = r.Transport
		} else {
			s.Transport = "mixed"
		}
		s.Requested += r.Requested
		s.Established += len(r.Conns)
		s.Failed += r.Failed
		for _, c := range r.Conns {
			if c.Down > 0 {
				s.Dropped++
			}
		}
		s.HeartbeatsSent += r.HeartbeatsSent
		s.HeartbeatReplies += r.HeartbeatReplies
		s.Frames += r.Frames
		s.Reads += r.Reads
		for k, v := range r.Errors {
			s.Errors[k] += v
		}
		hs.Merge(&r.Handshake)
		s.Reconnect = s.Reconnect || r.Reconnect
		s.Drops += r.Drops
		s.Reconnects += r.Reconnects
		s.ReconnectAttempts += r.ReconnectAttempts
		rt.Merge(&r.ReconnectTime)
		fw.Merge(&r.FirstWait)
		if r.Reliable != nil {
			if s.Reliable == nil {
				s.Reliable = &ReliableCounts{Streams: map[string]*StreamCounts{}}
			}
			s.Reliable.merge(r.Reliable)
		}
		if r.Start > 0 && (first == 0 || r.Start < first) {
			first = r.Start
		}
		last = max(last, r.Opened)
	}
	if last > first && first > 0 {
		s.HandshakesPerSecond = round1(float64(s.Established) / (float64(last-first) / 1e9))
	}
	s.Handshake = hs.Quantiles()
	s.ReconnectTime, s.FirstWait = rt.Quantiles(), fw.Quantiles()
	if s.Reads > 0 {
		s.FramesPerRead = round3(float64(s.Frames) / float64(s.Reads))
	}
	return s
}

// summarizePush merges push records.
func summarizePush(recs []*PushRecord) *PushSummary {
	s := &PushSummary{Answers: map[string]uint64{}}
	lat := &HistData{}
	var first, last int64
	for i, r := range recs {
		if i == 0 {
			s.Kind, s.Op, s.Flood, s.Rate = r.Kind, r.Op, r.Flood, r.Rate
		} else {
			if s.Kind != r.Kind {
				s.Kind = "mixed"
			}
			s.Rate += r.Rate
		}
		s.Concurrency += r.Concurrency
		s.Sent += r.Sent
		s.Accepted += r.Accepted
		s.Failed += r.Failed
		s.Behind += r.Behind
		for k, v := range r.Answers {
			s.Answers[k] += v
		}
		lat.Merge(&r.Latency)
		if first == 0 || r.Start < first {
			first = r.Start
		}
		last = max(last, r.End)
	}
	if last > first {
		s.Seconds = round3(float64(last-first) / 1e9)
		s.AcceptedPerSecond = round1(float64(s.Accepted) / s.Seconds)
	}
	s.Latency = lat.Quantiles()
	return s
}

// judge fills OK, Failures and Warnings from the parts present.
func (s *Summary) judge() {
	s.Failures, s.Warnings = []string{}, []string{}
	fail := func(format string, args ...any) { s.Failures = append(s.Failures, fmt.Sprintf(format, args...)) }
	warn := func(format string, args ...any) { s.Warnings = append(s.Warnings, fmt.Sprintf(format, args...)) }
	if c := s.Conns; c != nil {
		if c.Established == 0 {
			fail("no connection was established")
		}
		if c.Failed > 0 {
			fail("%d of %d connections failed to open (errors: %s)", c.Failed, c.Requested, fmtCounts(c.Errors))
		}
		switch {
		case c.Dropped > 0 && c.Reconnect:
			fail("%d connections were down at the end (%d drops, %d reconnected)", c.Dropped, c.Drops, c.Reconnects)
		case c.Dropped > 0:
			fail("%d connections were dropped before the end", c.Dropped)
		}
		if r := c.Reliable; r != nil {
			_, dups, gaps := r.totals()
			if dups > 0 {
				fail("%d duplicate stream positions on reliable connections (%s)", dups, r.fmtStreams())
			}
			if gaps > 0 {
				fail("%d gaps in streams on reliable connections (%s)", gaps, r.fmtStreams())
			}
			if r.Unrecovered > 0 {
				fail("%d stream reports (op 20) said a stream was not recovered after the connection's first", r.Unrecovered)
			}
			if r.Plain > 0 {
				fail("%d pushes reached reliable connections without an envelope (op 18)", r.Plain)
			}
			if r.Bad > 0 {
				fail("%d op-18 or op-20 bodies on reliable connections did not decode", r.Bad)
			}
		}
	}
	if p := s.Push; p != nil {
		if p.Sent > 0 && p.Accepted == 0 {
			fail("logic accepted none of %d pushes (answers: %s)", p.Sent, fmtCounts(p.Answers))
		} else if p.Failed > 0 {
			warn("%d of %d pushes not accepted (answers: %s)", p.Failed, p.Sent, fmtCounts(p.Answers))
		}
		if p.Sent == 0 {
			fail("no push was sent")
		}
		if p.Behind > 0 {
			warn("%d pushes behind schedule: all %d senders busy, the target rate %v/s was not met", p.Behind, p.Concurrency, p.Rate)
		}
	}
	if d := s.Delivery; d != nil {
		if d.ExpectationKnown {
			if d.Lost > 0 {
				msg := fmt.Sprintf("lost %d of %d expected deliveries", d.Lost, d.Expected)
				if d.LostAfterDrop > 0 {
					msg += fmt.Sprintf(" (%d of them after their connection was dropped)", d.LostAfterDrop)
				}
				if d.StillArriving {
					msg += fmt.Sprintf("; pushes were still arriving when the drain ended (push to receive p99 %.0f ms): some may be late rather than lost", d.Latency.P99)
				}
				fail("%s", msg)
			}
			if d.Expected == 0 && s.Push != nil && s.Push.Accepted > 0 {
				fail("no delivery was expected: no connection was a target of the accepted pushes")
			}
			if d.Misrouted > 0 {
				fail("%d pushes reached connections that were not their targets", d.Misrouted)
			}
		} else if d.Gaps > 0 {
			warn("%d sequence numbers missing between received ones: a lower bound of loss (merge with the push summary to count all)", d.Gaps)
		}
		if d.Duplicated > 0 {
			warn("%d duplicate deliveries", d.Duplicated)
		}
		if d.OutOfOrder > 0 {
			if d.ExpectationKnown {
				warn("%d deliveries out of order: each arrived after a push sent only once it had been accepted", d.OutOfOrder)
			} else {
				warn("%d late arrivals (after a higher seq); merge with the push summary to tell order violations from concurrent pushes", d.OutOfOrder)
			}
		}
		if d.Foreign > 0 {
			warn("%d foreign pushes (another run id, or not goim-bench bodies)", d.Foreign)
		}
	}
	s.OK = len(s.Failures) == 0
}

// WriteJSON writes s as JSON: indented, unless it carries a record (a
// conns record holds every connection).
func WriteJSON(w io.Writer, s *Summary) error {
	var b []byte
	var err error
	if s.ConnsRecord != nil || s.PushRecord != nil {
		b, err = json.Marshal(s)
	} else {
		b, err = json.MarshalIndent(s, "", "  ")
	}
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ReadSummary reads a summary written by WriteJSON.
func ReadSummary(r io.Reader) (*Summary, error) {
	var s Summary
	dec := json.NewDecoder(r)
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	if s.Version != SummaryVersion {
		return nil, fmt.Errorf("summary version %d, want %d", s.Version, SummaryVersion)
	}
	return &s, nil
}

// WriteText writes s for a person.
func WriteText(w io.Writer, s *Summary) error {
	var b strings.Builder
	status := "OK"
	if !s.OK {
		status = "FAILED"
	}
	fmt.Fprintf(&b, "goim-bench %s: run %s, %.1f s: %s\n", s.Mode, s.Run, s.Seconds, status)
	if c := s.Conns; c != nil {
		fmt.Fprintf(&b, "connections (%s", c.Transport)
		if c.Processes > 1 {
			fmt.Fprintf(&b, ", %d processes", c.Processes)
		}
		fmt.Fprintf(&b, "): %d of %d established, %d failed, %d dropped\n", c.Established, c.Requested, c.Failed, c.Dropped)
		fmt.Fprintf(&b, "  handshakes: %.0f/s; dial to auth reply ms %s\n", c.HandshakesPerSecond, fmtQ(c.Handshake))
		fmt.Fprintf(&b, "  heartbeats: %d sent, %d replies; %d push frames in %d socket reads (%.2f per read)\n",
			c.HeartbeatsSent, c.HeartbeatReplies, c.Frames, c.Reads, c.FramesPerRead)
		if c.Reconnect {
			fmt.Fprintf(&b, "  reconnect: %d drops, %d reconnected in %d attempts; drop to auth reply ms %s; first backoff ms %s\n",
				c.Drops, c.Reconnects, c.ReconnectAttempts, fmtQ(c.ReconnectTime), fmtQ(c.FirstWait))
		}
		if r := c.Reliable; r != nil {
			msgs, dups, gaps := r.totals()
			fmt.Fprintf(&b, "  reliable: %d messages (%s), %d duplicates, %d gaps; %d stream reports, %d not recovered after the first; %d ids acked in %d frames; %d without id, %d without envelope, %d bad\n",
				msgs, r.fmtStreams(), dups, gaps, r.Reports, r.Unrecovered, r.AckedIDs, r.AckFrames, r.NoID, r.Plain, r.Bad)
		}
		if len(c.Errors) > 0 {
			fmt.Fprintf(&b, "  errors: %s\n", fmtCounts(c.Errors))
		}
	}
	if p := s.Push; p != nil {
		mode := fmt.Sprintf("open loop %v/s", p.Rate)
		if p.Flood {
			mode = "flood"
		}
		fmt.Fprintf(&b, "pushes (%s, op %d, %s, concurrency %d): %d sent, %d accepted (%.1f/s over %.1f s), %d failed, %d behind schedule\n",
			p.Kind, p.Op, mode, p.Concurrency, p.Sent, p.Accepted, p.AcceptedPerSecond, p.Seconds, p.Failed, p.Behind)
		fmt.Fprintf(&b, "  answers: %s\n", fmtCounts(p.Answers))
		fmt.Fprintf(&b, "  HTTP request to answer ms %s\n", fmtQ(p.Latency))
	}
	if d := s.Delivery; d != nil {
		if d.ExpectationKnown {
			fmt.Fprintf(&b, "delivery: %d of %d expected (%.3f %%), lost %d", d.Delivered, d.Expected, 100*d.DeliveredRatio, d.Lost)
			if d.LostAfterDrop > 0 {
				fmt.Fprintf(&b, " (%d after a drop)", d.LostAfterDrop)
			}
			fmt.Fprintf(&b, ", duplicated %d, out of order %d (reordered by concurrent pushes %d), extra %d (unacked %d), misrouted %d, foreign %d\n",
				d.Duplicated, d.OutOfOrder, d.Reordered, d.Extra, d.Unacked, d.Misrouted, d.Foreign)
		} else {
			fmt.Fprintf(&b, "delivery (no push record: expectation unknown): %d received, gaps %d, duplicated %d, out of order %d, foreign %d\n",
				d.Received, d.Gaps, d.Duplicated, d.OutOfOrder, d.Foreign)
		}
		fmt.Fprintf(&b, "  %.0f deliveries/s; push to receive ms %s\n", d.PerSecond, fmtQ(d.Latency))
		// Every stream when there are few, else those with a problem.
		shown := 0
		for _, st := range d.Streams {
			if len(d.Streams) > 5 && st.Lost+st.Gaps+st.Duplicated+st.OutOfOrder == 0 {
				continue
			}
			if shown == 10 {
				break
			}
			shown++
			if d.ExpectationKnown {
				fmt.Fprintf(&b, "  %s: sent %d, accepted %d, receivers %d, delivered %d of %d, lost %d, dup %d, out of order %d, reordered %d\n",
					st.Stream, st.Sent, st.Accepted, st.Receivers, st.Delivered, st.Expected, st.Lost, st.Duplicated, st.OutOfOrder, st.Reordered)
			} else {
				fmt.Fprintf(&b, "  %s: receivers %d, received %d, gaps %d, dup %d, late %d\n",
					st.Stream, st.Receivers, st.Received, st.Gaps, st.Duplicated, st.OutOfOrder)
			}
		}
		if n := len(d.Streams) + d.StreamsOmitted; n > shown {
			fmt.Fprintf(&b, "  (%d streams in all; the JSON summary lists them)\n", n)
		}
		for _, l := range d.LostSamples {
			dropped := ""
			if l.Dropped {
				dropped = " (dropped)"
			}
			fmt.Fprintf(&b, "  lost: conn %d mid %d%s, %s: %d, seqs %s\n", l.Conn, l.Mid, dropped, l.Stream, l.Lost, strings.Join(l.Seqs, ","))
		}
	}
	for _, f := range s.Failures {
		fmt.Fprintf(&b, "FAILED: %s\n", f)
	}
	for _, f := range s.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", f)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtQ(q Quantiles) string {
	if q.Count == 0 {
		return "(none)"
	}
	return fmt.Sprintf("p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f (n %d)", q.P50, q.P90, q.P99, q.P999, q.Max, q.Count)
}

func fmtCounts(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }
func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// secondsSince is the time from start (Unix ns) to now, in seconds.
func secondsSince(start int64) float64 {
	return round3(time.Since(time.Unix(0, start)).Seconds())
}
