package comet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/logging"
	"github.com/goim/goim/internal/ratelog"
	"github.com/goim/goim/internal/syncx"
	"github.com/goim/goim/internal/timer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Repeated warnings (logic unreachable, say) are logged at most warnBurst
// times per warnEvery each; the next line counts those held back.
const (
	warnBurst = 5
	warnEvery = 10 * time.Second
)

// Server is a comet. It keeps the listeners (clients and gRPC), starts
// and stops everything, and wires the parts together: the buckets and
// rooms of connections, the limits (limits.go), the link to logic
// (logiclink.go) and the discovery entry (discovery.go).
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	warns   *ratelog.Limiter // repeated warnings

	// The connections: published by key in buckets, grouped in rooms,
	// timed out by wheel (handshake, then session).
	buckets buckets
	rooms   *rooms
	wheel   *timer.Wheel
	connIDs atomic.Uint64 // the last connection id given (Channel.connID)
	born    time.Time     // when New ran: channels keep their times as durations since (smaller than a time.Time)
	readers readerPool    // frame readers, lent to connections while they read

	broadcasts broadcasts
	fetches    *fetchQueue   // reliable channels waiting for a fetch worker (fetch.go)
	roomReads  chan struct{} // a token per room sequencer read in flight (roomseq.go)
	ringState  atomic.Int32  // whether room fan-outs can use io_uring: ringUntried, ringWorks, ringUnavailable

	limits *limits      // admission and per-IP counts
	logic  *logicLink   // every call to logic
	reg    *registrar   // the discovery entry
	grpc   *grpc.Server // the Comet service job calls

	mu       sync.RWMutex // guards ln; held while ctx is cancelled, read-held to start a goroutine
	ln       listening
	ctx      context.Context // cancelled when shutdown begins: no goroutine starts after
	cancel   context.CancelFunc
	wg       sync.WaitGroup // every goroutine the server starts
	started  atomic.Bool
	draining atomic.Bool
	stopOnce sync.Once
	shutErr  error
}

// listening is what the comet listens on: the client listeners, the gRPC
// listener job calls, and the TLS config of the TLS and WSS listeners.
type listening struct {
	clients []listener
	rpc     net.Listener
	tls     *tls.Config // nil without a TLS or WSS bind
}

// closeAll closes every listener opened so far and forgets them.
func (l *listening) closeAll() {
	for _, ln := range l.clients {
		_ = ln.Close()
	}
	if l.rpc != nil {
		_ = l.rpc.Close()
	}
	l.clients, l.rpc = nil, nil
}

type listener struct {
	net.Listener
	tr transport
}

// Deps are what a comet uses from outside. Registry may be nil (metrics are
// then kept in a private registry).
type Deps struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// New checks cfg and builds a comet; it starts nothing (see Start).
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := logging.OrDiscard(deps.Logger)
	reg := admin.OrPrivate(deps.Registry)
	s := &Server{
		cfg:        cfg,
		log:        log,
		buckets:    newBuckets(cfg.Bucket.Count),
		rooms:      newRooms(cfg.Bucket.Count, cfg.Bucket.RoomWorkers, cfg.Bucket.RoomQueue),
		wheel:      timer.NewWheel(100*time.Millisecond, 0, cfg.Bucket.Count),
		broadcasts: newBroadcasts(cfg.Bucket.BroadcastQueue, cfg.Bucket.PacedBroadcasts),
		fetches:    newFetchQueue(),
		roomReads:  make(chan struct{}, fetchWorkers),
		warns:      ratelog.New(warnBurst, warnEvery),
		born:       time.Now(),
		limits:     newLimits(cfg.Limits, cfg.Bucket.Count),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	// Connection ids start at a random point in every process, so a
	// restarted comet does not hand out the ids of its previous run.
	s.connIDs.Store(rand.Uint64())
	s.readers.init(protocol.HeaderSize + cfg.Protocol.MaxBody)
	var err error
	if s.metrics, err = newMetrics(reg, func() float64 { return float64(s.rooms.len()) }, func() float64 { return float64(s.broadcasts.pacedRunning()) }); err != nil {
		return nil, err
	}
	keys, err := cfg.RPC.Load()
	if err != nil {
		return nil, fmt.Errorf("comet: %w", err)
	}
	keys.Log(log, "comet")
	if s.grpc, err = newGRPCServer(keys, reg, log); err != nil {
		return nil, err
	}
	if len(cfg.TCP.TLSBind)+len(cfg.WebSocket.TLSBind) > 0 {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("comet: tls: %w", err)
		}
		s.ln.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if s.reg, err = newRegistrar(cfg, s.meta, log, s.warns); err != nil {
		return nil, err
	}
	if s.logic, err = newLogicLink(cfg, keys, log, s.warns, s.metrics, s.rooms, s.reg); err != nil {
		return nil, err
	}
	cometpb.RegisterCometServer(s.grpc, &rpcServer{s: s})
	return s, nil
}

// Start opens every listener and starts serving. On error nothing is left
// open.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return ErrServerClosed
	}
	binds := []struct {
		addrs []string
		tr    transport
	}{
		{s.cfg.TCP.Bind, transportTCP}, {s.cfg.TCP.TLSBind, transportTLS},
		{s.cfg.WebSocket.Bind, transportWS}, {s.cfg.WebSocket.TLSBind, transportWSS},
	}
	var err error
	lc := listenConfig(s.cfg.TCP.KeepAlive.D())
	for _, b := range binds {
		for _, a := range b.addrs {
			var ln net.Listener
			if ln, err = lc.Listen(s.ctx, "tcp", a); err != nil {
				break
			}
			s.ln.clients = append(s.ln.clients, listener{Listener: ln, tr: b.tr})
		}
	}
	if err == nil {
		s.ln.rpc, err = net.Listen("tcp", s.cfg.RPC.Bind)
	}
	if err != nil {
		err = fmt.Errorf("comet: listen: %w", err)
	} else {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Discovery.RequestTimeout.D())
		err = s.reg.register(ctx, s.ln.rpc.Addr())
		cancel()
	}
	if err != nil {
		s.ln.closeAll()
		return err
	}
	s.wheel.Start()
	if !s.cfg.Bucket.IOURing {
		s.log.Info("comet: room fan-outs write with write(2): bucket.io_uring is off")
	}
	for _, q := range s.rooms.queues {
		s.wg.Go(func() { s.roomWorker(q) })
	}
	s.wg.Go(s.broadcastWorker)
	for range fetchWorkers {
		s.wg.Go(s.fetchWorker)
	}
	s.wg.Go(s.releaseLoop)
	s.wg.Go(func() { s.limits.sweepLoop(s.ctx.Done()) })
	s.logic.start(s.ctx, &s.wg)
	rpcLn := s.ln.rpc
	s.wg.Go(func() {
		if err := s.grpc.Serve(rpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("comet: grpc server stopped", "err", err)
		}
	})
	for _, ln := range s.ln.clients {
		s.wg.Go(func() { s.acceptLoop(ln) })
	}
	s.started.Store(true)
	s.log.Info("comet started", "host", s.cfg.Host, "rpc", rpcLn.Addr().String())
	return nil
}

// Ready reports whether the comet takes new clients: started and not
// draining. It backs the admin listener's /readyz.
func (s *Server) Ready() error {
	switch {
	case !s.started.Load():
		return errors.New("not started")
	case s.draining.Load():
		return errors.New("draining")
	}
	return nil
}

// Drain takes the comet out of the cluster gently: it marks itself offline
// (in discovery and in an immediate report to logic, so logic stops handing
// it to clients), stops accepting, and closes its clients spread evenly over
// window so they reconnect elsewhere a few at a time, each with a
// Disconnect to logic. Pushes keep reaching the clients not yet closed.
// Call Shutdown afterwards. Drain returns early if ctx ends.
func (s *Server) Drain(ctx context.Context, window time.Duration) {
	if s.draining.Swap(true) {
		return
	}
	s.logic.report()
	s.mu.Lock()
	for _, ln := range s.ln.clients {
		_ = ln.Close()
	}
	s.mu.Unlock()
	var chs []*Channel
	for _, b := range s.buckets.all {
		chs = b.channels(chs)
	}
	s.log.Info("comet: draining", "clients", len(chs), "window", window)
	if len(chs) == 0 {
		return
	}
	// Close in steps of at least 10 ms, as many clients per step as the
	// window needs.
	const step = 10 * time.Millisecond
	steps := max(int(window/step), 1)
	per := (len(chs) + steps - 1) / steps
	t := time.NewTicker(step)
	defer t.Stop()
	for i := 0; i < len(chs); i += per {
		for _, c := range chs[i:min(i+per, len(chs))] {
			c.closeGoingAway(ReasonDrain)
		}
		if i+per >= len(chs) {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// meta is what this comet tells the cluster about itself, in discovery
// and in its online reports: its [node] entry, its load and whether it is
// draining.
func (s *Server) meta() discovery.CometMeta {
	return discovery.CometMeta{
		Weight:    int64(s.cfg.Node.Weight),
		Offline:   s.draining.Load(),
		Addrs:     s.cfg.Node.Addrs,
		ConnCount: s.limits.conns.Load(),
		IPCount:   int64(s.limits.ips.distinct()),
	}
}

// Addrs returns the bound addresses of the client listeners of a transport
// ("tcp", "tls", "ws", "wss").
func (s *Server) Addrs(tr string) []net.Addr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []net.Addr
	for _, ln := range s.ln.clients {
		if ln.tr.String() == tr {
			out = append(out, ln.Addr())
		}
	}
	return out
}

// RPCAddr returns the bound gRPC address, or nil before Start.
func (s *Server) RPCAddr() net.Addr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ln.rpc == nil {
		return nil
	}
	return s.ln.rpc.Addr()
}

// goFunc starts f as an owned goroutine unless shutdown has begun.
func (s *Server) goFunc(f func()) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.wg.Go(f)
	return true
}

// Shutdown stops accepting, closes every connection (telling logic), stops
// the workers and the gRPC server, and waits for every goroutine, or until
// ctx ends. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.reg.deregister(ctx)
		s.mu.Lock()
		for _, ln := range s.ln.clients {
			_ = ln.Close()
		}
		s.cancel()
		s.mu.Unlock()
		s.grpc.Stop()
		s.limits.closePending(ReasonShutdown)
		for _, b := range s.buckets.all {
			for _, c := range b.channels(nil) {
				c.closeGoingAway(ReasonShutdown)
			}
		}
		if !syncx.Wait(ctx, &s.wg) {
			s.shutErr = fmt.Errorf("comet: shutdown: %w", ctx.Err())
		}
		s.logic.stop(ctx)
		s.wheel.Stop()
		s.logic.close()
		s.reg.close()
	})
	return s.shutErr
}

// acceptLoop accepts connections until the listener closes. Errors such as
// EMFILE back off (5 ms doubling to 1 s) and retry: the loop never dies.
func (s *Server) acceptLoop(ln listener) {
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.warns.Warn(s.log, "comet: accept failed, retrying", "addr", ln.Addr().String(), "err", err, "retry_in", delay)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		if !s.goFunc(func() { s.serveConn(conn, ln.tr) }) {
			_ = conn.Close()
			return
		}
	}
}
