// Package embedded runs bilibili/discovery's own server (v1.2.0) inside the
// current process: for cmd/discovery, the all-in-one binary and tests.
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
//   - only one server can run per process: a second Start returns an error
//     wrapping [ErrStarted];
//   - it cannot be shut down: it runs until the process exits
//     (Server.Deregister removes its own registration, which is all the
//     library allows);
//   - kratos' logger is global; Start silences it (it would write to
//     stderr), so the server logs nothing; the logger passed to Start
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
	"context"
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
	"github.com/bilibili/discovery/model"
	"github.com/go-kratos/kratos/pkg/conf/paladin"
	klog "github.com/go-kratos/kratos/pkg/log"
	bm "github.com/go-kratos/kratos/pkg/net/http/blademaster"
	xtime "github.com/go-kratos/kratos/pkg/time"
)

// ErrStarted is wrapped by the error Start returns when it was already
// called in this process.
var ErrStarted = errors.New("embedded discovery: a server was already started in this process")

// serverTimeout bounds every request the server handles. It must exceed the
// 30 s the server holds a long poll, or polls would be cut short.
const serverTimeout = 40 * time.Second

// The defaults of Config: what configs/*.toml use.
const (
	DefaultEnv    = "dev"
	DefaultZone   = "sh001"
	DefaultRegion = "sh"
)

// Config is what a server serves.
type Config struct {
	// Addr is the listen address, "host:port" with a fixed non-zero port:
	// the server registers its own address as an instance of
	// infra.discovery, so ":0" cannot work. Required.
	Addr string
	// Env, Zone and Region are the deploy env, zone and region the server
	// registers itself in (app infra.discovery). Clients that find
	// discovery nodes through discovery itself (bilibili/discovery's
	// naming client, which goim v2 uses) look in their own env and zone.
	// Instances of every env and zone are served either way. Defaults
	// "dev", "sh001", "sh".
	Env, Zone, Region string
	// Host is the server's name in its own registry. Default: the OS
	// hostname. Servers sharing peers need distinct names.
	Host string
	// Peers are the other discovery servers of the same zone
	// ("host:port"): the server fetches their registry at start and
	// replicates every change to them. Default none.
	Peers []string
}

// Server is the process's running server.
type Server struct {
	cfg    Config // defaults applied
	dis    *discovery.Discovery
	cancel context.CancelFunc // stops the self-renewal loop
	once   sync.Once
}

// state is the single embedded server of the process. A package-level
// guard is used because the library itself keeps its server in package
// variables (the handlers' *Discovery, paladin's and kratos' log clients):
// two servers could not coexist anyway.
var state struct {
	mu      sync.Mutex
	started bool
	addr    string
}

// StartServer is Start with only an address (every other field default),
// for callers that never stop the server.
func StartServer(addr string, logger *slog.Logger) error {
	_, err := Start(Config{Addr: addr}, logger)
	return err
}

// Start starts a discovery server as cfg says and returns once it listens.
// It serves until the process exits; Server.Deregister is all of a
// shutdown the library allows. Only the first call in a process can start
// a server; later calls return an error wrapping [ErrStarted], even if the
// first one failed. logger may be nil.
func Start(cfg Config, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded discovery: address %q: %w", cfg.Addr, err)
	}
	if port == "" || port == "0" {
		return nil, fmt.Errorf("embedded discovery: address %q: needs a fixed non-zero port", cfg.Addr)
	}
	for _, p := range cfg.Peers {
		if _, pport, err := net.SplitHostPort(p); err != nil || pport == "" {
			return nil, fmt.Errorf("embedded discovery: peer %q is not host:port", p)
		}
	}
	if cfg.Env == "" {
		cfg.Env = DefaultEnv
	}
	if cfg.Zone == "" {
		cfg.Zone = DefaultZone
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
		if cfg.Host == "" {
			cfg.Host = "discovery-" + host
		}
	}

	state.mu.Lock()
	defer state.mu.Unlock()
	if state.started {
		return nil, fmt.Errorf("%w (on %s); it cannot be stopped or restarted", ErrStarted, state.addr)
	}
	state.started, state.addr = true, cfg.Addr

	// Fail early, before the library starts goroutines, if the port is taken.
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded discovery: %w", err)
	}
	if err := l.Close(); err != nil {
		return nil, fmt.Errorf("embedded discovery: %w", err)
	}

	// The registry loads scheduler settings through paladin's default
	// client, which is nil until set; a mock with no keys means none.
	paladin.DefaultClient = paladin.NewMock(map[string]string{})
	// No handlers and a verbosity above every level: kratos logs nothing.
	klog.Init(&klog.Config{V: math.MaxInt32})

	dcfg := &dconf.Config{
		Nodes: append([]string{cfg.Addr}, cfg.Peers...),
		HTTPServer: &bm.ServerConfig{
			Network: "tcp",
			Addr:    cfg.Addr,
			Timeout: xtime.Duration(serverTimeout),
		},
		HTTPClient: &bm.ClientConfig{
			Dial:      xtime.Duration(time.Second),
			Timeout:   xtime.Duration(serverTimeout),
			KeepAlive: xtime.Duration(2 * time.Minute),
		},
		Env: &dconf.Env{
			Region:    cfg.Region,
			Zone:      cfg.Zone,
			Host:      cfg.Host,
			DeployEnv: cfg.Env,
		},
		// Protect mode refuses every read for the first 60 s unless a
		// peer's registry was fetched: off, so that a lone server (or the
		// first of several) answers at once.
		EnableProtect: false,
	}
	// New fetches the peers' registries (syncUp) and registers the server
	// in its own registry; cancel stops renewing that registration.
	dis, cancel := discovery.New(dcfg)
	if err := initHTTP(dcfg, dis); err != nil {
		cancel()
		return nil, fmt.Errorf("embedded discovery: %w", err)
	}
	logger.Info("discovery server started", "addr", cfg.Addr, "env", cfg.Env, "zone", cfg.Zone,
		"region", cfg.Region, "host", cfg.Host, "peers", cfg.Peers)
	return &Server{cfg: cfg, dis: dis, cancel: cancel}, nil
}

// Config is the server's configuration, defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Deregister removes the server's own instance (infra.discovery) from its
// registry and its peers' and stops renewing it, so that clients which
// find discovery nodes through discovery stop using this one. It is what
// the library allows of a shutdown: its HTTP listener cannot be closed
// and keeps serving until the process exits. Idempotent; ctx bounds the
// replication to peers.
func (s *Server) Deregister(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		// Cancel first, synchronously (the renewal loop's own cancel on
		// ctx.Done runs in a goroutine nobody can wait for; it then finds
		// nothing to cancel).
		err = s.dis.Cancel(ctx, &model.ArgCancel{
			AppID:    model.AppID,
			Zone:     s.cfg.Zone,
			Env:      s.cfg.Env,
			Hostname: s.cfg.Host,
		})
		s.cancel()
		if err != nil {
			err = fmt.Errorf("embedded discovery: deregister %s: %w", s.cfg.Host, err)
		}
	})
	return err
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
