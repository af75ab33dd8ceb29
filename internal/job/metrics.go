package job

import (
	"fmt"

	"github.com/goim/goim/api/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are job's consumer-side series (the comet pool has its own), on
// the registry given to New.
type metrics struct {
	consumed   prometheus.Counter     // Kafka messages read
	dispatched *prometheus.CounterVec // pushes handed to comets, by type
	// dispatched's series, resolved once (the per-message path does no
	// label lookup).
	dispatchedPush, dispatchedRoom, dispatchedBroadcast prometheus.Counter
	finished                                            prometheus.Counter     // pushes whose every comet call ended
	lost                                                *prometheus.CounterVec // (push, comet) deliveries that failed, by reason
	deferred                                            *prometheus.CounterVec // failed deliveries whose every target has the push in a stream, by reason
	expired                                             prometheus.Counter     // pushes older than max_age, skipped
	invalid                                             *prometheus.CounterVec // messages that are not a valid PushMsg, by reason
	roomBatch                                           prometheus.Histogram   // pushes per room batch
	lag                                                 *prometheus.GaugeVec   // messages behind the partition's high water mark
	committed                                           prometheus.Counter     // offset commits sent
	inflight                                            prometheus.Gauge       // pushes dispatched, not finished
	rebalances                                          prometheus.Counter     // consumer group sessions started
	errors                                              prometheus.Counter     // errors the consumer group reported
	reports                                             *prometheus.CounterVec // deferred targets reported to logic, by result
	// reports' series.
	reportSent, reportDropped, reportError prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "consumed_total",
			Help: "Kafka messages read from the push topic.",
		}),
		dispatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "dispatched_total",
			Help: "Pushes handed to comets, by type (push, room, broadcast).",
		}, []string{"type"}),
		finished: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "finished_total",
			Help: "Pushes whose every comet call ended (delivered or lost); their offsets may be committed.",
		}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "lost_total",
			Help: "Deliveries of a push to a comet that failed, by reason (comet_gone, rejected, retries_exhausted, queue_full, shutdown, no_comets).",
		}, []string{"reason"}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "deferred_total",
			Help: "Deliveries of a push to a comet that failed, by reason as goim_job_lost_total, where every target of the call has the push in its stream (user, key or room), so a reliable client recovers it from there; counted here instead of in goim_job_lost_total.",
		}, []string{"reason"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "expired_total",
			Help: "Pushes older than kafka.max_age, skipped instead of delivered late.",
		}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "invalid_total",
			Help: "Kafka messages that are not a valid PushMsg, by reason: skipped (undecodable, unknown_type, no_target, too_large), or delivered without their bad part (bad_msg_id: without the id, bad_positions: without positions).",
		}, []string{"reason"}),
		roomBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "goim", Subsystem: "job", Name: "room_batch_pushes",
			Help:    "Pushes per room batch sent to comets.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "goim", Subsystem: "job", Name: "consumer_lag",
			Help: "Messages between the last one read and the partition's high water mark.",
		}, []string{"partition"}),
		committed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "commits_total",
			Help: "Offset commits sent (failures are logged and counted in goim_job_consumer_errors_total).",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "goim", Subsystem: "job", Name: "inflight_pushes",
			Help: "Pushes dispatched to comets and not yet finished.",
		}),
		rebalances: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "group_sessions_total",
			Help: "Consumer group sessions started (one per rebalance).",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "consumer_errors_total",
			Help: "Errors the Kafka consumer group reported (fetch, commit, rebalance).",
		}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "deferral_reports_total",
			Help: "Targets of deferred pushes (mids and keys pushes) reported to logic so that their receipts say deferred, by result: sent (logic took them), dropped (the report queue was full, or job was stopping), error (logic unreachable or refused the call, after a retry).",
		}, []string{"result"}),
	}
	m.reportSent = m.reports.WithLabelValues("sent")
	m.reportDropped = m.reports.WithLabelValues("dropped")
	m.reportError = m.reports.WithLabelValues("error")
	m.dispatchedPush = m.dispatched.WithLabelValues("push")
	m.dispatchedRoom = m.dispatched.WithLabelValues("room")
	m.dispatchedBroadcast = m.dispatched.WithLabelValues("broadcast")
	for _, c := range []prometheus.Collector{m.errors, m.consumed, m.dispatched, m.finished, m.lost, m.deferred, m.expired, m.invalid,
		m.roomBatch, m.lag, m.committed, m.inflight, m.rebalances, m.reports} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("job: register metrics: %w", err)
		}
	}
	return m, nil
}

// failed counts n deliveries to one comet that ended with reason: deferred
// when pos (the positions of the call's targets) puts every target in a
// stream, lost otherwise. It returns whether they were deferred.
func (m *metrics) failed(reason string, pos []*protocol.Position, n int) bool {
	deferred := inStreams(pos)
	c := m.lost
	if deferred {
		c = m.deferred
	}
	c.WithLabelValues(reason).Add(float64(n))
	return deferred
}
