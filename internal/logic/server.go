package logic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/httpserve"
	"github.com/goim/goim/internal/logging"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/logic/httpapi"
	"github.com/goim/goim/internal/logic/receipts"
	"github.com/goim/goim/internal/logic/rpc"
	"github.com/goim/goim/internal/ratelog"
	"github.com/goim/goim/internal/syncx"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// ErrServerClosed is returned by Start after Shutdown.
var ErrServerClosed = errors.New("logic: server closed")

// readyTimeout bounds the Redis and Kafka checks of Ready.
const readyTimeout = 2 * time.Second

// Server is a logic instance: the HTTP API, the gRPC service comets call,
// the online refresh, and its discovery registration.
type Server struct {
	cfg  Config
	log  *slog.Logger
	svc  *Service
	http *httpapi.Server
	grpc *grpc.Server
	disc *discovery.Client // nil without discovery nodes
	// receipts is the delivery receipts' tracker; nil when they are off.
	receipts *receipts.Tracker

	ctx    context.Context // cancelled when shutdown begins; stops the loops
	cancel context.CancelFunc
	wg     sync.WaitGroup // the gRPC server and the online loop

	mu           sync.Mutex // guards the fields below
	started      bool
	closing      bool
	rpcLn        net.Listener
	registration *discovery.Registration

	stopOnce sync.Once
	shutErr  error
}

// Deps are what logic uses from outside. A nil Logger discards; a nil
// Registry keeps the metrics in a private registry.
type Deps struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Pages are extra GET pages served by the HTTP API's listener (the
	// all-in-one's /demo); see httpapi.Deps.
	Pages map[string]http.Handler
}

// New checks cfg and builds logic; it starts nothing and connects to
// nothing (see Start).
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := logging.OrDiscard(deps.Logger)
	reg := admin.OrPrivate(deps.Registry)
	auth, err := NewAuthenticator(cfg.Auth)
	if err != nil {
		return nil, err
	}
	svc := &Service{
		cfg:     cfg,
		log:     log,
		auth:    auth,
		online:  newOnline(cfg.Redis.OnlineTTL.D()),
		nodes:   newBalancer(),
		session: sessionTimeout(cfg.Node),
		warns:   ratelog.New(1, time.Minute),
	}
	authKeys := func() float64 {
		n, _ := auth.Keys()
		return float64(n)
	}
	if svc.metrics, err = newMetrics(reg, func() float64 { return float64(svc.online.count()) }, authKeys); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, svc: svc}
	fail := func(err error) (*Server, error) {
		s.closeClients()
		return nil, err
	}
	if svc.redis, err = dao.NewRedis(cfg.Redis, log); err != nil {
		return fail(fmt.Errorf("logic: %w", err))
	}
	if svc.kafka, err = dao.NewKafka(cfg.Kafka, log); err != nil {
		return fail(fmt.Errorf("logic: %w", err))
	}
	if cfg.Receipts.Enabled {
		if s.receipts, err = receipts.New(cfg.Receipts, svc.redis, reg, log); err != nil {
			return fail(fmt.Errorf("logic: %w", err))
		}
		svc.receipts = s.receipts
	}
	if len(cfg.Discovery.Nodes) > 0 {
		dc := cfg.Discovery
		if dc.Host == "" {
			dc.Host = cfg.Host
		}
		if s.disc, err = discovery.New(dc, log); err != nil {
			return fail(fmt.Errorf("logic: %w", err))
		}
	}
	if s.http, err = httpapi.New(cfg.HTTP, svc, httpapi.Deps{Logger: log, Registry: reg, Pages: deps.Pages}); err != nil {
		return fail(fmt.Errorf("logic: %w", err))
	}
	keys, err := cfg.RPC.Load()
	if err != nil {
		return fail(fmt.Errorf("logic: %w", err))
	}
	keys.Log(log, "logic")
	if s.grpc, err = rpc.NewServer(reg, log, keys); err != nil {
		return fail(err)
	}
	rpc.Register(s.grpc, svc, rpc.Errors{Auth: ErrAuth, InvalidArgument: ErrInvalidArgument})
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Service returns the service behind both APIs (for the all-in-one and
// tests).
func (s *Server) Service() *Service { return s.svc }

// Start opens the gRPC and HTTP listeners, starts following comets in
// discovery and refreshing the online totals, and registers goim.logic. On
// error nothing is left open.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrServerClosed
	}
	if s.started {
		return errors.New("logic: already started")
	}
	if s.cfg.Auth.Insecure {
		s.log.Warn("logic: auth.insecure = true: connections are NOT authenticated; any client may claim any user id, key and room (goim v2 mode, for development only)")
	}
	ln, err := net.Listen("tcp", s.cfg.RPC.Bind)
	if err != nil {
		return fmt.Errorf("logic: rpc listen: %w", err)
	}
	if s.disc != nil {
		w := s.disc.Watch(s.ctx, discovery.AppComet)
		s.svc.comets = w.Instances
	}
	if err := s.http.Start(); err != nil {
		_ = ln.Close()
		return fmt.Errorf("logic: %w", err)
	}
	s.rpcLn, s.started = ln, true
	s.wg.Go(func() {
		if err := s.grpc.Serve(ln); err != nil {
			s.log.Error("logic: gRPC server stopped", "err", err)
		}
	})
	s.wg.Go(func() { s.svc.onlineLoop(s.ctx) })
	if s.receipts != nil {
		s.receipts.Start()
	}
	s.logKeys()
	if d := s.cfg.Auth.ReloadInterval.D(); d > 0 && s.cfg.Auth.hasKeyFiles() {
		s.wg.Go(func() { s.keysLoop(s.ctx, d) })
	}
	if s.disc != nil {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Discovery.RequestTimeout.D())
		s.registration, err = s.disc.Register(ctx, discovery.Instance{
			AppID:    discovery.AppLogic,
			Hostname: s.cfg.Host,
			Addrs:    []string{discovery.GRPCAddr(s.advertise()), discovery.HTTPAddr(s.http.Addr())},
			Metadata: map[string]string{"weight": strconv.Itoa(s.cfg.RPC.Weight)},
		})
		cancel()
		if err != nil {
			// Not fatal: comets with static logic addresses still work, and
			// the operator sees the error; registering again needs a restart.
			s.log.Error("logic: discovery registration failed; comets that find logic through discovery will not see this instance", "err", err)
		}
	}
	return nil
}

// AnonymousAPI reports whether the HTTP API runs without any credential
// (http.allow_anonymous and no token): open to anyone who reaches it.
func (s *Server) AnonymousAPI() bool { return s.http.Anonymous() }

// HTTPAddr is the bound address of the HTTP API ("" before Start).
func (s *Server) HTTPAddr() string { return s.http.Addr() }

// RPCAddr is the bound address of the gRPC service ("" before Start).
func (s *Server) RPCAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return httpserve.Addr(s.rpcLn)
}

// advertise is the gRPC address registered in discovery. s.mu is held.
func (s *Server) advertise() string {
	return discovery.Advertise(s.cfg.RPC.Advertise, s.rpcLn.Addr())
}

// Ready reports whether logic can serve: Redis answers PING and a Kafka
// broker answers for the push topic (admin /readyz).
func (s *Server) Ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	return errors.Join(s.svc.redis.Ping(ctx), s.svc.kafka.Ping(ctx))
}

// Shutdown stops logic gracefully and is idempotent: new pushes get 503,
// the discovery registration is cancelled, in-flight HTTP requests (and so
// their produces) and RPCs finish, then the loops stop, the delivery
// receipts' webhook sends what it has queued, and the Redis, Kafka and
// discovery clients close. At ctx's deadline what is left is cut
// off and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { s.shutErr = s.shutdown(ctx) })
	return s.shutErr
}

// StopPushes makes the HTTP API answer 503 to pushes and online queries
// from now on (nodes keep answering), as the first step of Shutdown does;
// the gRPC service keeps serving comets. The all-in-one calls it before
// stopping job and comet, so that nothing new is accepted while they
// finish.
func (s *Server) StopPushes() { s.http.SetDraining() }

func (s *Server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	started, reg := s.started, s.registration
	s.mu.Unlock()
	s.http.SetDraining()
	if reg != nil {
		if err := reg.Cancel(ctx); err != nil {
			s.log.Warn("logic: discovery cancel failed", "err", err)
		}
	}
	var errs []error
	if started {
		errs = append(errs, s.http.Shutdown(ctx))
		var stopping sync.WaitGroup
		stopping.Go(s.grpc.GracefulStop)
		if !syncx.Wait(ctx, &stopping) {
			s.grpc.Stop()
			stopping.Wait()
			errs = append(errs, ctx.Err())
		}
	}
	s.cancel()
	s.wg.Wait()
	if s.receipts != nil {
		// After the gRPC server: no ack comes any more; before Redis
		// closes under the sweeper. It sends the queued webhook events
		// until ctx ends.
		errs = append(errs, s.receipts.Close(ctx))
	}
	s.closeClients()
	return errors.Join(errs...)
}

// closeClients closes what New created.
func (s *Server) closeClients() {
	if s.svc.kafka != nil {
		_ = s.svc.kafka.Close()
	}
	if s.svc.redis != nil {
		_ = s.svc.redis.Close()
	}
	if s.disc != nil {
		_ = s.disc.Close()
	}
}
