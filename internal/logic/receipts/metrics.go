package receipts

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the receipts' Prometheus series; every series is resolved
// once, so that a push or an ack does no label lookup.
type metrics struct {
	receipts *prometheus.CounterVec // targets by status
	// receipts' series.
	pending, deferred, delivered, expired, untracked prometheus.Counter

	acks *prometheus.CounterVec // acks by result
	// acks' series, by dao.AckResult.
	ackBy [5]prometheus.Counter

	deferrals *prometheus.CounterVec // job's deferrals by result
	// deferrals' series, by dao.DeferResult.
	deferBy [4]prometheus.Counter

	events *prometheus.CounterVec // webhook events by outcome
	// events' series.
	sent, droppedQueue, failed prometheus.Counter

	requests *prometheus.CounterVec // webhook POSTs by status class
	// requests' series: 1xx..5xx at [1..5], transport errors at [0].
	requestBy [6]prometheus.Counter

	queue       prometheus.GaugeFunc // webhook events waiting
	sweepErrors prometheus.Counter   // failed sweeps
}

// ackResults are the acks' label values, indexed by dao.AckResult.
var ackResults = [...]string{"unknown", "not_target", "delivered", "duplicate", "late"}

// deferResults are the deferrals' label values, indexed by
// dao.DeferResult.
var deferResults = [...]string{"unknown", "not_target", "deferred", "unchanged"}

func newMetrics(reg prometheus.Registerer, queueLen func() float64) (*metrics, error) {
	m := &metrics{
		receipts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "receipts_total",
			Help: "Delivery receipt targets by status: pending (recorded for a push), deferred (recorded for a push while the target had no connection), delivered (acked), expired (not acked within receipts.ttl), untracked (beyond receipts.max_targets of one push).",
		}, []string{"status"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "receipt_acks_total",
			Help: "Acks of reliable connections by result: delivered, duplicate (already delivered), late (already expired), not_target (the push did not target the connection's user or key), unknown (no record of the msg id: not tracked, or past its keep time).",
		}, []string{"result"}),
		deferrals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "receipt_deferrals_total",
			Help: "Targets job reported deferred (it gave up on the comet call; the push waits in the target's stream), by result: deferred (the pending target turned deferred), unchanged (it was deferred, delivered or expired already, or past its deadline), not_target (the push did not target that user or key), unknown (no record of the msg id).",
		}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "webhook_events_total",
			Help: "Receipt webhook events by outcome: sent (a 2xx answer), dropped_queue (the queue was full), failed (no 2xx answer after the retries, or logic stopped first).",
		}, []string{"outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "webhook_requests_total",
			Help: `Receipt webhook POSTs by answer: "2xx", "3xx" (redirects are not followed), "4xx", "5xx", "1xx", or "error" (no answer: refused, timed out).`,
		}, []string{"code"}),
		queue: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "goim", Subsystem: "logic", Name: "webhook_queue_length",
			Help: "Receipt webhook events waiting to be sent (at most receipts.webhook.queue).",
		}, queueLen),
		sweepErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic", Name: "receipts_sweep_errors_total",
			Help: "Sweeps of expired receipts that failed (Redis); the next sweep takes them again.",
		}),
	}
	m.pending = m.receipts.WithLabelValues("pending")
	m.deferred = m.receipts.WithLabelValues("deferred")
	m.delivered = m.receipts.WithLabelValues("delivered")
	m.expired = m.receipts.WithLabelValues("expired")
	m.untracked = m.receipts.WithLabelValues("untracked")
	for i, r := range ackResults {
		m.ackBy[i] = m.acks.WithLabelValues(r)
	}
	for i, r := range deferResults {
		m.deferBy[i] = m.deferrals.WithLabelValues(r)
	}
	m.sent = m.events.WithLabelValues("sent")
	m.droppedQueue = m.events.WithLabelValues("dropped_queue")
	m.failed = m.events.WithLabelValues("failed")
	m.requestBy[0] = m.requests.WithLabelValues("error")
	for i := 1; i <= 5; i++ {
		m.requestBy[i] = m.requests.WithLabelValues(fmt.Sprintf("%dxx", i))
	}
	for _, c := range []prometheus.Collector{m.receipts, m.acks, m.deferrals, m.events, m.requests, m.queue, m.sweepErrors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("receipts: register metrics: %w", err)
		}
	}
	return m, nil
}

// request counts one webhook POST: status 0 for no answer.
func (m *metrics) request(status int) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	m.requestBy[class].Inc()
}
