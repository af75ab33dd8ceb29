// Package embedded runs bilibili/discovery's own server (v1.2.0) inside the
// current process, for tests and for the all-in-one binary.
//
// It is a separate package from internal/discovery on purpose: importing
// bilibili/discovery's server pulls in kratos v0.6.0, whose init functions
// register flags on the global flag.CommandLine (-conf, -region, -zone,
// -appid, -deploy.env, -discovery.nodes, -log.*, -http, -http.perf, -trace)
// and metrics on Prometheus' default registry. Only binaries that import
// this package get those side effects; comet, logic and job, which only
// need the client, do not.
//
// Limits of the library, which keeps its state in package variables:
//   - only one server can run per process: a second StartServer returns an
//     error wrapping [ErrStarted];
//   - it cannot be shut down: it runs until the process exits;
//   - kratos' logger is global; StartServer silences it (it would write to
//     stderr), so the server logs nothing; the logger passed to StartServer
//     only gets this package's own messages;
//   - the server also serves /metrics and /debug/pprof on its address, and
//     with the HTTP_PERF environment variable set kratos would open a
//     separate pprof listener: leave HTTP_PERF unset;
//   - the server writes a field from a goroutine 60 s after it starts
//     (leaving its start-up protect mode) without synchronisation, so under
//     the race detector a process that serves requests for longer than
//     60 s reports a data race inside the library: keep -race test binaries
//     that use it short.
package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"sync"
	"time"

	dconf "github.com/bilibili/discovery/conf"
	"github.com/bilibili/discovery/discovery"
	dhttp "github.com/bilibili/discovery/http"
	"github.com/go-kratos/kratos/pkg/conf/paladin"
	klog "github.com/go-kratos/kratos/pkg/log"
	bm "github.com/go-kratos/kratos/pkg/net/http/blademaster"
	xtime "github.com/go-kratos/kratos/pkg/time"
)

// ErrStarted is wrapped by the error StartServer returns when it was
// already called in this process.
var ErrStarted = errors.New("embedded discovery: a server was already started in this process")

// serverTimeout bounds every request the server handles. It must exceed the
// 30 s the server holds a long poll, or polls would be cut short.
const serverTimeout = 40 * time.Second

// state is the single embedded server of the process. A package-level
// guard is used because the library itself keeps its server in package
// variables (the handlers' *Discovery, paladin's and kratos' log clients):
// two servers could not coexist anyway.
var state struct {
	mu      sync.Mutex
	started bool
	addr    string
}

// StartServer starts a discovery server on addr ("host:port", with a fixed
// non-zero port: the server registers its own address as an instance of
// infra.discovery, so ":0" cannot work) and returns once it listens. It
// runs until the process exits. Only the first call in a process can start
// a server; later calls return an error wrapping [ErrStarted], even if the
// first one failed. logger may be nil.
func StartServer(addr string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("embedded discovery: address %q: %w", addr, err)
	}
	if port == "" || port == "0" {
		return fmt.Errorf("embedded discovery: address %q: needs a fixed non-zero port", addr)
	}

	state.mu.Lock()
	defer state.mu.Unlock()
	if state.started {
		return fmt.Errorf("%w (on %s); it cannot be stopped or restarted", ErrStarted, state.addr)
	}
	state.started, state.addr = true, addr

	// Fail early, before the library starts goroutines, if the port is taken.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("embedded discovery: %w", err)
	}
	if err := l.Close(); err != nil {
		return fmt.Errorf("embedded discovery: %w", err)
	}

	// The registry loads scheduler settings through paladin's default
	// client, which is nil until set; a mock with no keys means none.
	paladin.DefaultClient = paladin.NewMock(map[string]string{})
	// No handlers and a verbosity above every level: kratos logs nothing.
	klog.Init(&klog.Config{V: math.MaxInt32})

	hostname, _ := os.Hostname()
	if hostname == "" {
		hostname = "discovery-" + host
	}
	cfg := &dconf.Config{
		Nodes: []string{addr},
		HTTPServer: &bm.ServerConfig{
			Network: "tcp",
			Addr:    addr,
			Timeout: xtime.Duration(serverTimeout),
		},
		HTTPClient: &bm.ClientConfig{
			Dial:      xtime.Duration(time.Second),
			Timeout:   xtime.Duration(serverTimeout),
			KeepAlive: xtime.Duration(2 * time.Minute),
		},
		Env: &dconf.Env{
			Region:    "local",
			Zone:      "local",
			Host:      hostname,
			DeployEnv: "embedded",
		},
		// Without peers the protect mode would refuse every read for the
		// first 60 s.
		EnableProtect: false,
	}
	// The returned cancel deregisters the server from itself; the server
	// is never stopped, so it is not kept.
	dis, _ := discovery.New(cfg)
	if err := initHTTP(cfg, dis); err != nil {
		return fmt.Errorf("embedded discovery: %w", err)
	}
	logger.Info("embedded discovery server started", "addr", addr)
	return nil
}

// initHTTP starts the library's HTTP server, which panics when it cannot
// listen, and turns that panic into an error.
func initHTTP(cfg *dconf.Config, dis *discovery.Discovery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("start http server on %s: %v", cfg.HTTPServer.Addr, r)
		}
	}()
	dhttp.Init(cfg, dis)
	return nil
}
