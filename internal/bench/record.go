package bench

// Records are the raw results of one conns or push process: what merge
// needs to decide, after the fact, which connection should have received
// which push. A conns or push summary written as JSON carries its record
// (conns_record, push_record), so a script can run several conns
// processes and a push process and merge their files; run evaluates the
// same records in memory. All times are Unix ns of the machine's wall
// clock, which is why processes to be merged must share one machine.

// ConnsRecord is what one conns process saw.
type ConnsRecord struct {
	Run       string  `json:"run"`
	Transport string  `json:"transport"`
	Requested int     `json:"requested"` // connections asked for
	First     int     `json:"first"`     // global index of the first
	Accepts   []int32 `json:"accepts"`   // ops every connection accepts
	Start     int64   `json:"start_ns"`  // first dial
	Opened    int64   `json:"opened_ns"` // last successful handshake
	End       int64   `json:"end_ns"`    // the tool closed the connections; 0 while open
	Failed    int     `json:"failed"`    // connections never authenticated
	// Errors counts errors by "phase/kind": phases dial, upgrade, auth,
	// read, heartbeat; kinds eof, reset, refused, refused_upgrade,
	// timeout, canceled, no_source_port, too_many_files, ws_close,
	// protocol, closed, other.
	Errors map[string]uint64 `json:"errors"`
	// Frames counts push frames received (heartbeat and auth replies
	// excluded), of any run; Foreign those not of this run.
	Frames           uint64 `json:"frames"`
	Foreign          uint64 `json:"foreign"`
	HeartbeatsSent   uint64 `json:"heartbeats_sent"`
	HeartbeatReplies uint64 `json:"heartbeat_replies"`
	Reads            uint64 `json:"reads"` // socket reads (handshakes included)
	// LateArrivals are the distinct late arrivals (a seq received after a
	// higher one of its stream) with how many connections saw each:
	// merge tells reordering by the pusher's concurrent requests from
	// order violations with them. LateUnclassified counts those beyond
	// the tool's bound, which are not kept.
	LateArrivals     []LateArrival `json:"late_arrivals,omitempty"`
	LateUnclassified uint64        `json:"late_unclassified,omitempty"`
	Handshake        HistData      `json:"handshake"` // dial to auth reply, ns
	Latency          HistData      `json:"latency"`   // push sent to received, ns
	// Reconnect is the reconnect mode (conns -reconnect). Drops counts
	// connections ended by the server or the network (in any mode),
	// Reconnects those that came back, ReconnectAttempts the attempts
	// (each dials the nodes in turn until one handshake succeeds),
	// ReconnectTime the time from a drop to the new auth reply, and
	// FirstWait the backoff drawn before the first attempt after a drop.
	Reconnect         bool     `json:"reconnect,omitempty"`
	Drops             uint64   `json:"drops,omitempty"`
	Reconnects        uint64   `json:"reconnects,omitempty"`
	ReconnectAttempts uint64   `json:"reconnect_attempts,omitempty"`
	ReconnectTime     HistData `json:"reconnect_time"`
	FirstWait         HistData `json:"first_wait"`
	// Reliable holds the reliable mode's counts (conns -reliable); nil
	// without it.
	Reliable *ReliableCounts `json:"reliable,omitempty"`
	Conns    []ConnRecord    `json:"conns"` // authenticated connections
}

// ConnRecord is one authenticated connection.
type ConnRecord struct {
	Index int    `json:"i"` // global index (first + i)
	Mid   int64  `json:"mid,omitempty"`
	Key   string `json:"key,omitempty"` // asked for; "" let the server choose
	Room  string `json:"room,omitempty"`
	Up    int64  `json:"up"` // first auth reply received
	// Down is when the connection ended without the tool closing it (the
	// server or the network dropped it); 0 if it did not, or came back
	// (reconnect mode).
	Down int64 `json:"down,omitempty"`
	// Reconnects counts the times it came back after a drop; pushes sent
	// while it was away are not expected of it again (goim does not
	// replay them), so they count as lost.
	Reconnects int          `json:"reconnects,omitempty"`
	Streams    []StreamRecv `json:"streams,omitempty"`
}

// StreamRecv is what one connection received of one stream.
type StreamRecv struct {
	Stream string      `json:"s"`
	Ranges [][2]uint64 `json:"r"` // sequence numbers received, sorted inclusive ranges
	Dup    uint32      `json:"dup,omitempty"`
	Late   uint32      `json:"late,omitempty"` // arrived after a higher seq
}

// set returns the ranges as a seqSet.
func (s *StreamRecv) set() seqSet {
	r := make([]seqRange, len(s.Ranges))
	for i, x := range s.Ranges {
		r[i] = seqRange{x[0], x[1]}
	}
	return seqSet{r: r}
}

// LateArrival is seq of a stream received after seq After had been, by
// Count connections.
type LateArrival struct {
	Stream string `json:"s"`
	Seq    uint64 `json:"seq"`
	After  uint64 `json:"after"`
	Count  uint32 `json:"n"`
}

// PushRecord is what one push process sent.
type PushRecord struct {
	Run         string  `json:"run"`
	Kind        string  `json:"kind"` // keys, mids, room, all
	Op          int32   `json:"op"`
	Flood       bool    `json:"flood"`
	Rate        float64 `json:"rate"` // target pushes/s (open loop)
	Concurrency int     `json:"concurrency"`
	Start       int64   `json:"start_ns"`
	End         int64   `json:"end_ns"` // last answer
	Sent        uint64  `json:"sent"`
	Accepted    uint64  `json:"accepted"` // answered 200 with code 0
	Failed      uint64  `json:"failed"`   // any other answer, or none
	// Behind counts open-loop slots skipped because all -concurrency
	// requests were in flight: the target rate was not met.
	Behind uint64 `json:"behind"`
	// Answers counts answers by "HTTP status/code" ("200/0", "500/-500")
	// and transport errors by "error/kind".
	Answers map[string]uint64 `json:"answers"`
	Latency HistData          `json:"latency"` // HTTP request to answer, ns
	Streams []PushStream      `json:"streams"`
}

// PushStream is the send log of one stream.
type PushStream struct {
	Stream string `json:"s"`
	Kind   string `json:"kind"`
	Target string `json:"target"` // room id, mid, key; "" for all
	// Sent holds the send time (Unix ns, the body's) of seq i+1;
	// non-decreasing.
	Sent []int64 `json:"sent_ns"`
	// Acked holds the time seq i+1 was accepted (Unix ns), 0 if it was
	// not: a push accepted before a later one was sent must not arrive
	// after it.
	Acked []int64 `json:"acked_ns"`
	// Failed lists the seqs not answered 200/0, sorted: not expected
	// anywhere (one that arrives anyway counts as unacked).
	Failed []uint64 `json:"failed,omitempty"`
}
