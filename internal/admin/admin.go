// Package admin is the admin HTTP listener every service runs: Prometheus
// metrics, pprof, and liveness/readiness probes.
//
// Routes:
//
//	/metrics       Prometheus exposition of the registry given to New
//	               (NewRegistry's has goim_build_info, go_* and process_*)
//	/debug/pprof/  net/http/pprof index, named profiles, cmdline, profile,
//	               symbol, trace
//	/healthz       200 "ok" while the process serves
//	/readyz        200 "ok" when the ready func returns nil, else 503 and
//	               the error text
//
// Any other path is 404. The listener exposes profiling and process
// internals: bind it to loopback or a private network, never to the public.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goim/goim/internal/buildinfo"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/httpserve"
	"github.com/goim/goim/internal/logging"
)

// Config is the [admin] section of a service's configuration.
type Config struct {
	// Addr is the host:port to listen on. Default "127.0.0.1:0" (loopback,
	// a free port): each service sets its own port in its defaults. Port 0
	// picks a free port; see Server.Addr.
	Addr string `toml:"addr"`
	// ReadTimeout bounds reading a request, headers included, a duration
	// string. Default "10s".
	ReadTimeout conf.Duration `toml:"read_timeout"`
	// WriteTimeout bounds writing a response, a duration string. Default
	// "30s". The pprof endpoints that take a seconds parameter (profile,
	// trace, delta profiles) extend it by that duration, so
	// /debug/pprof/profile?seconds=60 works.
	WriteTimeout conf.Duration `toml:"write_timeout"`
	// IdleTimeout is how long an idle keep-alive connection stays open, a
	// duration string. Default "2m".
	IdleTimeout conf.Duration `toml:"idle_timeout"`
}

// DefaultConfig returns the defaults of every Config field.
func DefaultConfig() Config {
	return Config{
		Addr:         "127.0.0.1:0",
		ReadTimeout:  conf.Duration(10 * time.Second),
		WriteTimeout: conf.Duration(30 * time.Second),
		IdleTimeout:  conf.Duration(2 * time.Minute),
	}
}

// Validate records c's problems in p, with key paths relative to p's
// section (call it with p.Sub("admin")).
func (c Config) Validate(p *conf.Problems) {
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		p.Add("addr", "%w", err)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		p.Add("addr", "port %q of %q must be a number from 0 to 65535", port, c.Addr)
	}
	p.Check(c.ReadTimeout > 0, "read_timeout", "must be > 0, got %v", c.ReadTimeout)
	p.Check(c.WriteTimeout > 0, "write_timeout", "must be > 0, got %v", c.WriteTimeout)
	p.Check(c.IdleTimeout > 0, "idle_timeout", "must be > 0, got %v", c.IdleTimeout)
}

// NewRegistry returns a registry with the Go runtime and process collectors
// and goim_build_info registered, for a service's own metrics. It never
// touches the global default registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		BuildInfo(buildinfo.Read()),
	)
	return reg
}

// BuildInfo is the goim_build_info gauge: always 1, labelled with the
// build's version, commit (with "-modified" for a modified tree) and Go
// version, so dashboards can show and group what every instance runs.
func BuildInfo(in buildinfo.Info) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "goim", Name: "build_info",
		Help:        "Always 1; the labels say which build runs: module version, VCS commit, Go version.",
		ConstLabels: prometheus.Labels{"version": in.Version, "commit": in.CommitLabel(), "go": in.Go},
	})
	g.Set(1)
	return g
}

// Server is the admin HTTP server. Create it with New, then Start it;
// Shutdown stops it.
type Server struct {
	cfg   Config
	http  *httpserve.Server
	ready func() error
}

// New returns a server, not yet listening, that serves reg on /metrics and
// reports ready's result on /readyz. reg must not be nil; pass the registry
// the service registers its metrics on (see [NewRegistry]). A nil ready
// means always ready; a nil logger discards. ready is called once per
// /readyz request, concurrently: it must be safe for that and quick.
func New(cfg Config, reg *prometheus.Registry, ready func() error, logger *slog.Logger) (*Server, error) {
	var p conf.Problems
	cfg.Validate(&p)
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if reg == nil {
		return nil, errors.New("admin: nil prometheus registry")
	}
	if ready == nil {
		ready = func() error { return nil }
	}
	logger = logging.OrDiscard(logger)
	s := &Server{cfg: cfg, ready: ready}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{logger},
		ErrorHandling: promhttp.ContinueOnError, // serve what was gathered, log the rest
	}))
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also serves the named profiles
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/healthz", s.healthz)
	mux.HandleFunc("/readyz", s.readyz)

	s.http = httpserve.New("admin", &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.ReadTimeout.D(),
		ReadTimeout:       cfg.ReadTimeout.D(),
		// net/http/pprof extends the write deadline of its endpoints that
		// run for ?seconds=N by N beyond the server's WriteTimeout.
		WriteTimeout:   cfg.WriteTimeout.D(),
		IdleTimeout:    cfg.IdleTimeout.D(),
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}, logger)
	return s, nil
}

// Start opens the listener and serves on a goroutine that Shutdown stops.
// It fails if the address cannot be bound, if called twice, or after
// Shutdown.
func (s *Server) Start() error { return s.http.Start(s.cfg.Addr) }

// Addr returns the address the server listens on, with the actual port when
// Config.Addr had port 0, or "" before Start.
func (s *Server) Addr() string { return s.http.Addr() }

// Shutdown stops the server: it closes the listener and the connections
// that have not sent a request at once, waits for in-flight requests until
// ctx is done, then closes the remaining
// connections (a running CPU profile or trace stops early: its request
// context is cancelled), and waits for the Serve goroutine to return. It
// returns ctx's error if it had to cut requests short. It is idempotent:
// later calls wait for the first one and return its result. It may be
// called without Start.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := s.ready(); err != nil {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
		return
	}
	writeText(w, http.StatusOK, "ok\n")
}

func writeText(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// promLogger routes promhttp's error log to slog.
type promLogger struct{ l *slog.Logger }

func (p promLogger) Println(v ...any) {
	p.l.Error("admin: serving metrics", "err", fmt.Sprint(v...))
}

// OrPrivate returns reg, or a new private registry when reg is nil (a
// service built without one keeps its metrics to itself).
func OrPrivate(reg prometheus.Registerer) prometheus.Registerer {
	if reg == nil {
		return prometheus.NewRegistry()
	}
	return reg
}
