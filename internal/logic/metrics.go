package logic

import (
	"fmt"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are logic's own Prometheus series (the HTTP API and the gRPC
// server register theirs), on the registry given to New.
type metrics struct {
	auths *prometheus.CounterVec // Connect results: ok, rejected, error
	// auths' series, resolved once (a Connect does no label lookup).
	authOK, authRejected, authError prometheus.Counter
	publish                         *prometheus.HistogramVec // Kafka produce latency by push type and result
	// publishBy holds publish's series, [PushMsg type][0 ok, 1 error],
	// resolved once: a push does no label lookup.
	publishBy   [3][2]prometheus.Observer
	redisErrors *prometheus.CounterVec // failed Redis operations by operation
	received    *prometheus.CounterVec // upstream frames by op name, or "other"
	// receivedBy holds received's series of the protocol ops 0..17, and
	// receivedOther that of every other op, resolved once.
	receivedBy    [protocolOps]prometheus.Counter
	receivedOther prometheus.Counter
	roomsDropped  prometheus.Counter   // online report entries RenewOnline dropped
	onlineComets  prometheus.GaugeFunc // comets with a live report
	refreshErrors prometheus.Counter   // failed refreshes of the online totals
	// keyReloads counts reloads of the token verification keys by result;
	// keyReloadOK and keyReloadError are its series.
	keyReloads                  *prometheus.CounterVec
	keyReloadOK, keyReloadError prometheus.Counter
	authKeys                    prometheus.GaugeFunc // verification keys in use
	// streamAppends counts pushes appended to streams, by stream (user,
	// key, room): one per target stream; streamAppendBy holds its series,
	// indexed by protocol.StreamUser..StreamRoom.
	streamAppends  *prometheus.CounterVec
	streamAppendBy [4]prometheus.Counter
	// streamOpens counts streams opened by reliable connects, by stream;
	// streamOpenBy holds its series as streamAppendBy does.
	streamOpens  *prometheus.CounterVec
	streamOpenBy [4]prometheus.Counter
	// streamReads counts ReadStream calls by result; streamReadBy holds
	// its series, indexed by the readResult constants.
	streamReads  *prometheus.CounterVec
	streamReadBy [readResults]prometheus.Counter
	// pendingErrors counts failed Receipts.Pending calls of pushes.
	pendingErrors prometheus.Counter
}

// ReadStream results, the values of goim_logic_stream_reads_total's
// result label.
const (
	readRecovered = iota // entries continue the reader's position
	readReset            // not recovered: epoch changed, trimmed or expired
	readMissing          // no such stream
	readInvalid          // a request ReadStream refused
	readError            // Redis failed
	readResults
)

var readResultNames = [readResults]string{"recovered", "reset", "missing", "invalid", "error"}

func newMetrics(reg prometheus.Registerer, comets, authKeys func() float64) (*metrics, error) {
	m := &metrics{
		auths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "auths_total",
			Help: "Connect calls by result: ok, rejected (bad or missing token), error (Redis).",
		}, []string{"result"}),
		publish: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "goim", Subsystem: "logic", Name: "publish_duration_seconds",
			Help:    "Kafka produce latency (until every in-sync replica acknowledged), by push type and result.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"type", "result"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "redis_errors_total",
			Help: "Failed Redis operations by operation.",
		}, []string{"op"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "received_total",
			Help: `Upstream client frames comets forwarded (Receive), by op: the protocol op's name for ops 0..17 ("send_msg"), "other" for every other op.`,
		}, []string{"op"}),
		roomsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "online_rooms_dropped_total",
			Help: "Room entries dropped from comets' online reports: an invalid room id, a count <= 0, or beyond 100000 rooms in one report.",
		}),
		onlineComets: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "goim", Subsystem: "logic", Name: "online_comets",
			Help: "Comets whose online report is live (reported within redis.online_ttl).",
		}, comets),
		refreshErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "online_refresh_errors_total",
			Help: "Refreshes of the online totals that failed (the previous totals stay).",
		}),
		keyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "auth_key_reloads_total",
			Help: "Reloads of the token verification keys (SIGHUP, or a key file changed) by result: ok, error (the previous keys stay).",
		}, []string{"result"}),
		authKeys: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "goim", Subsystem: "logic", Name: "auth_keys",
			Help: "Token verification keys in use: the key files of [auth] plus the keys of auth.keys_dir.",
		}, authKeys),
		streamAppends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "stream_appends_total",
			Help: "Pushes appended to reliable delivery streams, one per stream, by stream: user, key, room.",
		}, []string{"stream"}),
		streamOpens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "stream_opens_total",
			Help: "Streams opened (created or kept) by reliable connects, by stream: user, key, room.",
		}, []string{"stream"}),
		streamReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "stream_reads_total",
			Help: "ReadStream calls by result: recovered, reset (epoch changed, trimmed or expired), missing (no such stream), invalid (refused request), error (Redis).",
		}, []string{"result"}),
		pendingErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "receipts_pending_errors_total",
			Help: "Pushes whose pending delivery receipts could not be recorded (the push itself went out).",
		}),
	}
	for stream := protocol.StreamUser; stream <= protocol.StreamRoom; stream++ {
		m.streamAppendBy[stream] = m.streamAppends.WithLabelValues(protocol.StreamName(stream))
		m.streamOpenBy[stream] = m.streamOpens.WithLabelValues(protocol.StreamName(stream))
	}
	for i, name := range readResultNames {
		m.streamReadBy[i] = m.streamReads.WithLabelValues(name)
	}
	m.authOK = m.auths.WithLabelValues("ok")
	m.authRejected = m.auths.WithLabelValues("rejected")
	m.authError = m.auths.WithLabelValues("error")
	for op := range m.receivedBy {
		m.receivedBy[op] = m.received.WithLabelValues(protocol.OpName(int32(op)))
	}
	m.receivedOther = m.received.WithLabelValues("other")
	m.keyReloadOK = m.keyReloads.WithLabelValues("ok")
	m.keyReloadError = m.keyReloads.WithLabelValues("error")
	for t := range m.publishBy {
		for r, result := range []string{"ok", "error"} {
			m.publishBy[t][r] = m.publish.WithLabelValues(logicpb.PushMsg_Type(t).String(), result)
		}
	}
	for _, c := range []prometheus.Collector{m.auths, m.publish, m.redisErrors, m.received, m.roomsDropped, m.onlineComets, m.refreshErrors, m.keyReloads, m.authKeys,
		m.streamAppends, m.streamOpens, m.streamReads, m.pendingErrors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("logic: register metrics: %w", err)
		}
	}
	return m, nil
}

// protocolOps is the number of protocol ops, 0..17, counted by name.
const protocolOps = protocol.OpUnsubReply + 1

// receivedOp is the received counter of op: its name's series for the
// protocol ops, "other" for any other op.
func (m *metrics) receivedOp(op int32) prometheus.Counter {
	if op >= 0 && op < protocolOps {
		return m.receivedBy[op]
	}
	return m.receivedOther
}
