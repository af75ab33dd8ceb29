package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/goim/goim/internal/buildinfo"
	"github.com/goim/goim/internal/conf"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// start starts a server on a free loopback port and shuts it down at the
// end of the test.
func start(t *testing.T, cfg Config, reg *prometheus.Registry, ready func() error) (*Server, string) {
	t.Helper()
	s, err := New(cfg, reg, ready, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s, "http://" + s.Addr()
}

// get fetches url and returns the status code and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestMetricsServesOnlyTheGivenRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	mine := prometheus.NewCounter(prometheus.CounterOpts{Name: "goim_admin_test_mine_total", Help: "test"})
	reg.MustRegister(mine)
	mine.Add(3)
	global := prometheus.NewCounter(prometheus.CounterOpts{Name: "goim_admin_test_global_total", Help: "test"})
	if err := prometheus.DefaultRegisterer.Register(global); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prometheus.DefaultRegisterer.Unregister(global) })

	_, base := start(t, DefaultConfig(), reg, nil)
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	if !strings.Contains(body, "goim_admin_test_mine_total 3") {
		t.Errorf("/metrics lacks the counter of the given registry:\n%s", body)
	}
	if strings.Contains(body, "goim_admin_test_global_total") {
		t.Errorf("/metrics serves the global default registry:\n%s", body)
	}
	if strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics has Go collector metrics the registry does not:\n%s", body)
	}
}

func TestNewRegistryHasRuntimeCollectors(t *testing.T) {
	_, base := start(t, DefaultConfig(), NewRegistry(), nil)
	_, body := get(t, base+"/metrics")
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_open_fds"} {
		if !strings.Contains(body, "\n"+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	in := buildinfo.Read()
	want := fmt.Sprintf("goim_build_info{commit=%q,go=%q,version=%q} 1\n", in.CommitLabel(), in.Go, in.Version)
	if !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %q:\n%s", want, body)
	}
}

func TestBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(BuildInfo(buildinfo.Info{Version: "v1.2.0", Commit: "abc", Modified: true, Go: "go1.26.8"}))
	_, base := start(t, DefaultConfig(), reg, nil)
	_, body := get(t, base+"/metrics")
	if want := `goim_build_info{commit="abc-modified",go="go1.26.8",version="v1.2.0"} 1`; !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %s:\n%s", want, body)
	}
}

func TestHealthzAndReadyz(t *testing.T) {
	var notReady atomic.Pointer[error]
	warming := errors.New("warming up")
	notReady.Store(&warming)
	ready := func() error {
		if p := notReady.Load(); p != nil {
			return *p
		}
		return nil
	}
	_, base := start(t, DefaultConfig(), prometheus.NewRegistry(), ready)

	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 \"ok\\n\"", code, body)
	}
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "warming up") {
		t.Errorf("/readyz while not ready: %d %q, want 503 with the error", code, body)
	}
	notReady.Store(nil)
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/readyz when ready: %d %q, want 200 \"ok\\n\"", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
}

func TestNilReadyMeansReady(t *testing.T) {
	_, base := start(t, DefaultConfig(), prometheus.NewRegistry(), nil)
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with nil ready: %d, want 200", code)
	}
}

func TestPprofAndNotFound(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WriteTimeout = conf.Duration(300 * time.Millisecond)
	_, base := start(t, cfg, prometheus.NewRegistry(), nil)

	code, body := get(t, base+"/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d\n%s", code, body)
	}
	if code, body := get(t, base+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("/debug/pprof/goroutine: %d\n%.200s", code, body)
	}
	if code, body := get(t, base+"/debug/pprof/cmdline"); code != http.StatusOK || body == "" {
		t.Errorf("/debug/pprof/cmdline: %d %q", code, body)
	}
	// A profile longer than WriteTimeout: pprof extends the deadline.
	if code, body := get(t, base+"/debug/pprof/profile?seconds=1"); code != http.StatusOK || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Errorf("/debug/pprof/profile?seconds=1 with a 300ms WriteTimeout: %d, %d bytes, want a gzipped profile", code, len(body))
	}
	for _, path := range []string{"/", "/nope", "/metricsx", "/debug/pprof/nope"} {
		if code, _ := get(t, base+path); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}
}

func TestShutdown(t *testing.T) {
	s, err := New(DefaultConfig(), prometheus.NewRegistry(), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != "" {
		t.Errorf("Addr before Start = %q, want empty", s.Addr())
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	addr := s.Addr()
	if _, port, _ := net.SplitHostPort(addr); port == "0" || port == "" {
		t.Fatalf("Addr = %q, want the bound port", addr)
	}
	if code, _ := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}

	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-s.http.Done():
	default:
		t.Fatal("Serve goroutine still running after Shutdown")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Shutdown", addr)
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
}

func TestShutdownWithoutStart(t *testing.T) {
	s, err := New(DefaultConfig(), prometheus.NewRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
}

// A request still running when ctx expires is cut short: Shutdown returns
// the context's error and still stops everything.
func TestShutdownDeadline(t *testing.T) {
	s, err := New(DefaultConfig(), prometheus.NewRegistry(), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr()
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get(base + "/debug/pprof/profile?seconds=30")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	// Wait until the profile request is in flight.
	for deadline := time.Now().Add(time.Minute); ; {
		_, body := get(t, base+"/debug/pprof/goroutine?debug=1")
		if strings.Contains(body, "pprof.Profile") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("profile request not seen in flight")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a request in flight: %v, want context.DeadlineExceeded", err)
	}
	select {
	case <-errc: // the client sees the connection closed or a truncated body
	case <-time.After(time.Minute):
		t.Fatal("profile request still running a minute after Shutdown")
	}
	// The handler stops the CPU profile once it sees its request cancelled.
	for deadline := time.Now().Add(time.Minute); profileRunning(); {
		if time.Now().After(deadline) {
			t.Fatal("pprof.Profile handler still running a minute after Shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Shutdown(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Shutdown: %v, want the first call's result", err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(DefaultConfig(), nil, nil, nil); err == nil {
		t.Error("New with a nil registry succeeded")
	}
	cfg := DefaultConfig()
	cfg.Addr = "localhost"
	_, err := New(cfg, prometheus.NewRegistry(), nil, nil)
	if !errors.Is(err, conf.ErrInvalid) || !strings.Contains(err.Error(), "addr:") {
		t.Errorf("New with an invalid config: %v", err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg.Addr = busy.Addr().String() // valid, but in use
	s, err := New(cfg, prometheus.NewRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		s.Shutdown(context.Background())
		t.Error("Start on an address in use succeeded")
	}
}

// profileRunning reports whether a goroutine runs the pprof CPU profile
// handler.
func profileRunning() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "net/http/pprof.Profile(")
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   []string // substrings of the error; nil: valid
	}{
		{"default", func(*Config) {}, nil},
		{"fixed port", func(c *Config) { c.Addr = "127.0.0.1:3119" }, nil},
		{"all interfaces", func(c *Config) { c.Addr = ":3119" }, nil},
		{"ipv6", func(c *Config) { c.Addr = "[::1]:3119" }, nil},
		{"no port", func(c *Config) { c.Addr = "127.0.0.1" }, []string{"admin.addr: address 127.0.0.1: missing port"}},
		{"empty", func(c *Config) { c.Addr = "" }, []string{"admin.addr: missing port"}},
		{"port out of range", func(c *Config) { c.Addr = ":65536" }, []string{`admin.addr: port "65536"`}},
		{"named port", func(c *Config) { c.Addr = "localhost:http" }, []string{`admin.addr: port "http"`}},
		{"timeouts", func(c *Config) {
			c.ReadTimeout, c.WriteTimeout, c.IdleTimeout = 0, -1, 0
		}, []string{
			"admin.read_timeout: must be > 0, got 0s",
			"admin.write_timeout: must be > 0, got -1ns",
			"admin.idle_timeout: must be > 0, got 0s",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			var p conf.Problems
			c.Validate(p.Sub("admin"))
			err := p.Err()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !errors.Is(err, conf.ErrInvalid) {
				t.Errorf("error does not wrap conf.ErrInvalid: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tt.want) {
				t.Errorf("%d problems, want %d: %v", n, len(tt.want), err)
			}
		})
	}
}

func TestDefaultConfigDecodes(t *testing.T) {
	c := DefaultConfig()
	var wrap struct {
		Admin Config `toml:"admin"`
	}
	wrap.Admin = c
	if err := conf.Decode("x.toml", "[admin]\naddr = \"127.0.0.1:3119\"\nwrite_timeout = \"2m\"\n", &wrap); err != nil {
		t.Fatal(err)
	}
	if wrap.Admin.Addr != "127.0.0.1:3119" || wrap.Admin.WriteTimeout.D() != 2*time.Minute || wrap.Admin.ReadTimeout != c.ReadTimeout {
		t.Errorf("decoded %+v", wrap.Admin)
	}
}

func TestOrPrivate(t *testing.T) {
	if OrPrivate(nil) == nil {
		t.Fatal("OrPrivate(nil) = nil")
	}
	reg := prometheus.NewRegistry()
	if OrPrivate(reg) != reg {
		t.Fatal("OrPrivate(reg) is not reg")
	}
}
