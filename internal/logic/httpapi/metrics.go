package httpapi

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// unknownEndpoint labels requests that matched no route.
const unknownEndpoint = "unknown"

// metrics are the API's Prometheus series, registered on the registry given
// to New (never the global one).
type metrics struct {
	requests  *prometheus.CounterVec   // by endpoint and envelope code
	duration  *prometheus.HistogramVec // by endpoint
	bodyBytes prometheus.Histogram     // accepted push bodies
	// authFailures counts refused credentials by reason; its three series
	// are resolved once.
	authFailures                            *prometheus.CounterVec
	authMissing, authInvalid, authForbidden prometheus.Counter

	// byPath holds every route's series, resolved at New so that a request
	// costs no label lookup; read-only afterwards.
	byPath  map[string]*endpointMetrics
	unknown *endpointMetrics
}

// endpointMetrics are one endpoint's series.
type endpointMetrics struct {
	name     string
	requests *prometheus.CounterVec     // for codes not in byCode
	byCode   map[int]prometheus.Counter // the codes the endpoint answers
	duration prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic_http", Name: "requests_total",
			Help: `HTTP API requests by endpoint (route path, or "unknown") and response code ("0", "-400", "-401", "-403", "-404", "-405", "-500", "-501").`,
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "goim", Subsystem: "logic_http", Name: "request_duration_seconds",
			Help:    "Time to answer an HTTP API request, by endpoint; for a push it includes the Kafka acknowledgement.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"endpoint"}),
		bodyBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "goim", Subsystem: "logic_http", Name: "push_body_bytes",
			Help:    "Size of accepted push messages (request bodies), in bytes.",
			Buckets: prometheus.ExponentialBuckets(16, 4, 9), // 16 B .. 1 MiB
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "goim", Subsystem: "logic_http", Name: "auth_failures_total",
			Help: "Requests refused for their credential, by reason: missing (no Authorization header, 401), invalid (not a configured bearer token, 401), forbidden (a read-scope token on a push endpoint, 403).",
		}, []string{"reason"}),
		byPath: make(map[string]*endpointMetrics),
	}
	m.authMissing = m.authFailures.WithLabelValues(reasonMissing)
	m.authInvalid = m.authFailures.WithLabelValues(reasonInvalid)
	m.authForbidden = m.authFailures.WithLabelValues(reasonForbidden)
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.bodyBytes, m.authFailures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("httpapi: register metrics: %w", err)
		}
	}
	m.unknown = m.endpoint(unknownEndpoint, CodeNotFound, CodeMethodNotAllowed)
	return m, nil
}

// endpoint returns the series of the endpoint name, creating the request
// counters of codes (so they read 0 before the first request).
func (m *metrics) endpoint(name string, codes ...int) *endpointMetrics {
	if e, ok := m.byPath[name]; ok {
		return e
	}
	e := &endpointMetrics{
		name:     name,
		requests: m.requests,
		byCode:   make(map[int]prometheus.Counter, len(codes)),
		duration: m.duration.WithLabelValues(name),
	}
	for _, code := range codes {
		e.byCode[code] = m.requests.WithLabelValues(name, strconv.Itoa(code))
	}
	m.byPath[name] = e
	return e
}

// lookup returns the series of the route at path, or those of "unknown".
func (m *metrics) lookup(path string) *endpointMetrics {
	if e, ok := m.byPath[path]; ok {
		return e
	}
	return m.unknown
}

// observe counts one answered request.
func (e *endpointMetrics) observe(code int, d time.Duration) {
	c, ok := e.byCode[code]
	if !ok {
		c = e.requests.WithLabelValues(e.name, strconv.Itoa(code))
	}
	c.Inc()
	e.duration.Observe(d.Seconds())
}
