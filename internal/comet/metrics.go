package comet

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the comet's Prometheus series, registered on the registry
// given to New (never the global one).
type metrics struct {
	conns       *prometheus.GaugeVec   // open connections by transport
	auths       *prometheus.CounterVec // auth attempts by result
	closes      *prometheus.CounterVec // closed connections by reason
	delivered   *prometheus.CounterVec // frames queued on a connection, by push kind
	droppedPush *prometheus.CounterVec // frames not queued, by push kind
	slowDrops   *prometheus.CounterVec // frames refused by a full queue, by transport
	writeBatch  prometheus.Histogram   // frames per write system call
	roomMerged  prometheus.Histogram   // room batches merged into one fan-out
	roomSent    *prometheus.CounterVec // frames room fan-outs handed to members, by path
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	rooms       prometheus.GaugeFunc
	paced       prometheus.GaugeFunc // paced broadcasts running
	resyncs     prometheus.Counter   // logic's Redis epoch changes seen
	// disconnects sent again after a failure, and given up
	disconnectsRetried, disconnectsAbandoned prometheus.Counter
	releases                                 prometheus.Counter // free heap returned to the system (release.go)

	// Reliable delivery (reliable.go, fetch.go, ack.go).
	reliable   prometheus.Gauge       // open reliable connections
	fetches    *prometheus.CounterVec // stream reads by result
	streamDups prometheus.Counter     // live messages dropped as duplicates
	acks       *prometheus.CounterVec // acked push ids by result
	// fetches' and acks' series
	fetchOK, fetchUnrecovered, fetchError prometheus.Counter
	// room sequencer (roomseq.go): its gaps by outcome, and failed reads
	roomGaps                                  *prometheus.CounterVec
	roomGapFilled, roomGapRead, roomGapPassed prometheus.Counter
	roomReadError                             prometheus.Counter
	ackSent, ackDropped, ackFailed            prometheus.Counter

	// Series of the per-connection paths, resolved once (no label lookup
	// per connection): every close reason, the reasons an auth fails for,
	// auth success.
	closeBy [numReasons]prometheus.Counter // nil for reasonNone
	authBy  [numReasons]prometheus.Counter // nil but for authFailures
	authOK  prometheus.Counter
	connsBy [numTransports]prometheus.Gauge
	// roomSent's series: ring, write, queued.
	roomSentRing, roomSentWrite, roomSentQueued prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, roomCount, pacedCount func() float64) (*metrics, error) {
	m := &metrics{
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "goim", Subsystem: "comet", Name: "connections",
			Help: "Open client connections by transport.",
		}, []string{"transport"}),
		auths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "auths_total",
			Help: "Auth attempts by result (ok or the close reason).",
		}, []string{"result"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "closes_total",
			Help: "Closed client connections by reason.",
		}, []string{"reason"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "pushes_delivered_total",
			Help: "Frames queued on a connection, by push kind (keys, room, broadcast).",
		}, []string{"kind"}),
		droppedPush: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "pushes_dropped_total",
			Help: "Frames a full connection queue refused, by push kind.",
		}, []string{"kind"}),
		slowDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "queue_full_total",
			Help: "Frames refused because a connection's outbound queue was full, by transport.",
		}, []string{"transport"}),
		writeBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "goim", Subsystem: "comet", Name: "write_batch_frames",
			Help:    "Frames a connection's writer sent in one write (its queue depth when it ran).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
		roomMerged: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "goim", Subsystem: "comet", Name: "room_fanout_batches",
			Help:    "Room batches (BroadcastRoom calls) merged into one fan-out: they queued while the room worker was busy, or were held while their room lingered, and reach each member in one write.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
		roomSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "room_sends_total",
			Help: "Frames room fan-outs handed to members, by path: ring (sent in a room worker's io_uring batch, one io_uring_enter per batch of up to 1024), write (written inline, one write(2) each) or queued (the member's writer was busy; its write loop writes it).",
		}, []string{"path"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "read_bytes_total",
			Help: "Frame bytes read from clients.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "written_bytes_total",
			Help: "Bytes written to clients.",
		}),
		rooms: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "goim", Subsystem: "comet", Name: "rooms",
			Help: "Rooms with members on this comet.",
		}, roomCount),
		paced: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "goim", Subsystem: "comet", Name: "paced_broadcasts",
			Help: "Paced broadcasts (speed > 0) running, at most bucket.paced_broadcasts.",
		}, pacedCount),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "session_resyncs_total",
			Help: "Times logic's Redis lost its data (its epoch changed) and every session was re-registered at its next heartbeat.",
		}),
		disconnectsRetried: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "disconnects_retried_total",
			Help: "Disconnects sent to logic again after a failed attempt (logic or its Redis unavailable or too slow).",
		}),
		disconnectsAbandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "disconnects_abandoned_total",
			Help: "Disconnects given up (still failing logic.disconnect_retry after the first failure, not retryable, or more held than the retrier keeps): their routing stays in Redis until it expires.",
		}),
		releases: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "memory_releases_total",
			Help: "Times the comet returned free heap memory to the system after its connection count settled.",
		}),
		reliable: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "goim", Subsystem: "comet", Name: "reliable_connections",
			Help: "Open connections that opted in to reliable delivery (op 18 envelopes, acks, stream recovery).",
		}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "stream_fetches_total",
			Help: "Reads of reliable connections' streams from logic (auth recovery, gap fills, room state), by result: ok (continued the connection's view), unrecovered (a gap that could not be filled: op 20 recovered=false), error (the read failed; the connection closes).",
		}, []string{"result"}),
		streamDups: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "stream_duplicates_total",
			Help: "Live messages a reliable connection had already received (offset at or below its last), dropped.",
		}),
		roomGaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "room_gaps_total",
			Help: "Gaps in recoverable rooms' streams (pushes arriving beyond a missing offset) the room sequencer closed, by outcome: filled (the missing pushes arrived within bucket.room_gap_wait), read (one read of the room's stream filled it for every reliable member), passed (not filled: each reliable member's own sequencer fills or reports it).",
		}, []string{"outcome"}),
		roomReadError: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "room_stream_read_errors_total",
			Help: "Reads of a recoverable room's stream by the room sequencer that failed (the gap is then passed to the members).",
		}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "comet", Name: "acks_total",
			Help: "Push ids reliable clients acknowledged (op 19), by result: sent (logic's Ack took them), dropped (the ack queue was full), failed (the Ack call failed).",
		}, []string{"result"}),
	}
	for r := reasonNone + 1; r < numReasons; r++ {
		m.closeBy[r] = m.closes.WithLabelValues(r.String())
	}
	for _, r := range authFailures {
		m.authBy[r] = m.auths.WithLabelValues(r.String())
	}
	m.authOK = m.auths.WithLabelValues("ok")
	for t := range numTransports {
		m.connsBy[t] = m.conns.WithLabelValues(t.String())
	}
	m.fetchOK, m.fetchUnrecovered, m.fetchError = m.fetches.WithLabelValues("ok"), m.fetches.WithLabelValues("unrecovered"), m.fetches.WithLabelValues("error")
	m.roomGapFilled, m.roomGapRead, m.roomGapPassed = m.roomGaps.WithLabelValues("filled"), m.roomGaps.WithLabelValues("read"), m.roomGaps.WithLabelValues("passed")
	m.ackSent, m.ackDropped, m.ackFailed = m.acks.WithLabelValues("sent"), m.acks.WithLabelValues("dropped"), m.acks.WithLabelValues("failed")
	m.roomSentRing, m.roomSentWrite, m.roomSentQueued = m.roomSent.WithLabelValues("ring"), m.roomSent.WithLabelValues("write"), m.roomSent.WithLabelValues("queued")
	for _, c := range []prometheus.Collector{m.conns, m.auths, m.closes, m.delivered, m.droppedPush, m.slowDrops, m.writeBatch, m.roomMerged, m.roomSent, m.bytesIn, m.bytesOut, m.rooms, m.paced, m.resyncs, m.releases, m.disconnectsRetried, m.disconnectsAbandoned,
		m.reliable, m.fetches, m.streamDups, m.acks, m.roomGaps, m.roomReadError} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("comet: register metrics: %w", err)
		}
	}
	return m, nil
}

// authFailures are the reasons an auth attempt fails for (the result
// label of goim_comet_auths_total besides "ok").
var authFailures = []CloseReason{ReasonAuthRate, ReasonBadAuth, ReasonAuthRejected, ReasonLogicError,
	ReasonBadRoom, ReasonRoomDenied, ReasonTooManyRooms}

// closed counts a closed connection by reason.
func (m *metrics) closed(r CloseReason) {
	if r > reasonNone && r < numReasons {
		m.closeBy[r].Inc()
	}
}

// authFailed counts an auth attempt that failed for r (one of authFailures).
func (m *metrics) authFailed(r CloseReason) {
	if c := m.authBy[r]; c != nil {
		c.Inc()
	}
}

func (m *metrics) dropped(t transport) { m.slowDrops.WithLabelValues(t.String()).Inc() }

// kindPushes counts one push's outcome (keys, room or broadcast): once per
// push, never per recipient.
func (m *metrics) kindPushes(kind string, queued, dropped int) {
	m.delivered.WithLabelValues(kind).Add(float64(queued))
	m.droppedPush.WithLabelValues(kind).Add(float64(dropped))
}

// roomSends counts one room fan-out's frames by path: sent through the
// ring, written inline, queued behind a busy writer.
func (m *metrics) roomSends(ring, write, queued int) {
	if ring > 0 {
		m.roomSentRing.Add(float64(ring))
	}
	if write > 0 {
		m.roomSentWrite.Add(float64(write))
	}
	if queued > 0 {
		m.roomSentQueued.Add(float64(queued))
	}
}
