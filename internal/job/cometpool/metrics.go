package cometpool

import (
	"fmt"

	cometpb "github.com/goim/goim/api/comet"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pool's Prometheus series, registered on the registry
// given to New (never the global one). The label values a call can take
// are resolved once here, so the call path does no label lookup.
type metrics struct {
	calls    *prometheus.CounterVec   // calls by method and outcome, one per call
	duration *prometheus.HistogramVec // gRPC attempts by method
	retries  *prometheus.CounterVec   // attempts that failed transiently and were retried
	pushKeys *prometheus.CounterVec   // keys of PushMsg replies, by result
	comets   prometheus.Gauge         // comets in the pool
	queued   prometheus.GaugeFunc     // calls waiting in every queue, counted at scrape time

	byMethod [len(methods)]methodMetrics
	keys     [4]prometheus.Counter // delivered, absent, filtered, dropped
}

// methods are the gRPC methods a call can use; the index is what
// methodIndex returns.
var methods = [...]string{"PushMsg", "BroadcastRoom", "Broadcast"}

// methodMetrics are the series of one method, labels resolved.
type methodMetrics struct {
	calls    [len(outcomeNames)]prometheus.Counter // by Outcome
	duration prometheus.Observer
	retries  prometheus.Counter
}

// newMetrics registers the pool's series on reg; queued counts the calls
// waiting in the pool's queues (the queued gauge, at scrape time).
func newMetrics(reg prometheus.Registerer, queued func() int) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "comet_calls_total",
			Help: "Calls to comets, one per call when it ends, by gRPC method and outcome (delivered or the loss reason).",
		}, []string{"method", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "goim", Subsystem: "job", Name: "comet_call_duration_seconds",
			Help:    "Duration of each gRPC attempt to a comet (a retried call observes each attempt), by method.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"method"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "comet_retries_total",
			Help: "Attempts to a comet that failed with a transient error and were scheduled for a retry, by method.",
		}, []string{"method"}),
		pushKeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "job", Name: "comet_push_keys_total",
			Help: "Keys of delivered PushMsg calls as the comets reported them: delivered, absent (no such connection), filtered (operation not watched), dropped (slow client).",
		}, []string{"result"}),
		comets: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "goim", Subsystem: "job", Name: "comets",
			Help: "Comets in the client pool.",
		}),
	}
	m.queued = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "goim", Subsystem: "job", Name: "comet_queued",
		Help: "Calls waiting in the queues of every comet (not counting those in flight).",
	}, func() float64 { return float64(queued()) })
	for i, name := range methods {
		mm := &m.byMethod[i]
		for o := range mm.calls {
			mm.calls[o] = m.calls.WithLabelValues(name, Outcome(o).String())
		}
		mm.duration = m.duration.WithLabelValues(name)
		mm.retries = m.retries.WithLabelValues(name)
	}
	for i, r := range [...]string{"delivered", "absent", "filtered", "dropped"} {
		m.keys[i] = m.pushKeys.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.calls, m.duration, m.retries, m.pushKeys, m.comets, m.queued} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("job: register comet pool metrics: %w", err)
		}
	}
	return m, nil
}

// methodIndex is the index in methods of c's method.
func methodIndex(c *Call) int {
	switch {
	case c.Push != nil:
		return 0
	case c.Room != nil:
		return 1
	default:
		return 2
	}
}

func (m *metrics) method(c *Call) *methodMetrics { return &m.byMethod[methodIndex(c)] }

// pushReply adds the counts of one PushMsg reply.
func (m *metrics) pushReply(r *cometpb.PushMsgReply) {
	for i, n := range [...]int32{r.GetDelivered(), r.GetAbsent(), r.GetFiltered(), r.GetDropped()} {
		if n > 0 {
			m.keys[i].Add(float64(n))
		}
	}
}
