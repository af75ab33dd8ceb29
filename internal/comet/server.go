package comet

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/gather"
	"github.com/goim/goim/internal/logging"
	"github.com/goim/goim/internal/ratelog"
	"github.com/goim/goim/internal/syncx"
	"github.com/goim/goim/internal/timer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver/manual"
)

// Repeated warnings (logic unreachable, say) are logged at most warnBurst
// times per warnEvery each; the next line counts those held back.
const (
	warnBurst = 5
	warnEvery = 10 * time.Second
)

// Server is a comet: client listeners, the buckets of connections, the
// rooms, the push workers and the gRPC service job calls.
type Server struct {
	cfg     Config
	log     *slog.Logger
	seed    maphash.Seed
	buckets []*Bucket
	rooms   *rooms
	limits  *limits
	wheel   *timer.Wheel
	metrics *metrics
	tlsConf *tls.Config
	readers sync.Pool // *bufio.Reader of HeaderSize+MaxBody bytes

	logic         logicpb.LogicClient
	connectOne    atomic.Bool // logic has no ConnectBatch: one Connect per handshake
	disconnectOne atomic.Bool // logic has no DisconnectBatch
	logicConn     *grpc.ClientConn
	logicResolver *manual.Resolver
	grpc          *grpc.Server

	disc         *discovery.Client       // nil without discovery nodes
	registration *discovery.Registration // set by Start
	discMu       sync.Mutex              // serialises metadata updates
	lastMetadata string                  // guarded by discMu
	draining     atomic.Bool
	// epoch is the last OnlineReply.epoch from logic (guarded by
	// epochMu: reports come from the report loop and from Drain);
	// sessionGen counts its changes. A channel whose renewGen differs
	// renews its session at its next heartbeat.
	epochMu    sync.Mutex
	epoch      string
	sessionGen atomic.Uint64
	started    atomic.Bool
	ctx        context.Context // cancelled when shutdown begins
	cancel     context.CancelFunc

	roomQueues     []chan roomJob
	broadcastQueue chan broadcastJob
	paced          chan struct{} // one token per paced broadcast running (bucket.paced_broadcasts)

	connIDs atomic.Uint64    // the last connection id given (Channel.connID)
	born    time.Time        // when New ran: channels keep their times as durations since (smaller than a time.Time)
	warns   *ratelog.Limiter // repeated warnings

	mu        sync.RWMutex // guards closing and listeners; read-held to start a goroutine
	closing   bool
	listeners []listener
	rpcLn     net.Listener
	wg        sync.WaitGroup // every goroutine the server starts
	// Connect and disconnect workers (connect.go, disconnect.go): not in
	// wg, they outlive the connection goroutines that feed them.
	connects    *gather.Gatherer[*connectCall]
	disconnects *gather.Gatherer[disconnectReq]
	dretry      *disconnectRetrier // failed disconnects, sent again
	done        chan struct{}      // closed when shutdown begins
	stopOnce    sync.Once
	shutErr     error
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
		cfg:            cfg,
		log:            log,
		seed:           maphash.MakeSeed(),
		buckets:        newBuckets(cfg.Bucket.Count),
		rooms:          newRooms(cfg.Bucket.Count),
		limits:         newLimits(cfg.Limits, cfg.Bucket.Count),
		wheel:          timer.NewWheel(100*time.Millisecond, 0, cfg.Bucket.Count),
		roomQueues:     make([]chan roomJob, cfg.Bucket.RoomWorkers),
		broadcastQueue: make(chan broadcastJob, cfg.Bucket.BroadcastQueue),
		paced:          make(chan struct{}, cfg.Bucket.PacedBroadcasts),
		warns:          ratelog.New(warnBurst, warnEvery),
		born:           time.Now(),
		done:           make(chan struct{}),
	}
	for i := range s.roomQueues {
		s.roomQueues[i] = make(chan roomJob, cfg.Bucket.RoomQueue)
	}
	// Connection ids start at a random point in every process, so a
	// restarted comet does not hand out the ids of its previous run.
	s.connIDs.Store(rand.Uint64())
	s.connects = gather.New(connectQueue, connectMaxBatch, s.connectBatch)
	s.disconnects = gather.New(disconnectQueue, disconnectMaxBatch, s.disconnect)
	size := protocol.HeaderSize + cfg.Protocol.MaxBody
	s.readers.New = func() any { return bufio.NewReaderSize(nil, size) }
	var err error
	if s.metrics, err = newMetrics(reg, func() float64 { return float64(s.rooms.len()) }, func() float64 { return float64(len(s.paced)) }); err != nil {
		return nil, err
	}
	s.dretry = newDisconnectRetrier(cfg.Logic.DisconnectRetry.D(), s.sendDisconnects,
		func(n int) { s.metrics.disconnectsRetried.Add(float64(n)) }, s.disconnectsLost)
	s.disconnects.Overflow = s.dretry.overflow
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
		s.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if len(cfg.Discovery.Nodes) > 0 {
		dc := cfg.Discovery
		if dc.Host == "" {
			dc.Host = cfg.Host
		}
		if s.disc, err = discovery.New(dc, log); err != nil {
			return nil, fmt.Errorf("comet: %w", err)
		}
	}
	if s.logicConn, s.logicResolver, err = dialLogic(cfg.Logic, keys); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.logic = logicpb.NewLogicClient(s.logicConn)
	cometpb.RegisterCometServer(s.grpc, &rpcServer{s: s})
	return s, nil
}

// Start opens every listener and starts serving. On error nothing is left
// open.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
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
			s.listeners = append(s.listeners, listener{Listener: ln, tr: b.tr})
		}
	}
	if err == nil {
		s.rpcLn, err = net.Listen("tcp", s.cfg.RPC.Bind)
	}
	if err != nil {
		err = fmt.Errorf("comet: listen: %w", err)
	} else {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Discovery.RequestTimeout.D())
		err = s.register(ctx)
		cancel()
	}
	if err != nil {
		for _, ln := range s.listeners {
			_ = ln.Close()
		}
		if s.rpcLn != nil {
			_ = s.rpcLn.Close()
		}
		s.listeners, s.rpcLn = nil, nil
		return err
	}
	s.wheel.Start()
	if s.disc != nil && len(s.cfg.Logic.Addrs) == 0 {
		s.wg.Go(func() { s.watchLogic(s.ctx) })
	}
	for _, q := range s.roomQueues {
		s.wg.Go(func() { s.roomWorker(q) })
	}
	s.wg.Go(s.broadcastWorker)
	s.wg.Go(s.reportLoop)
	s.wg.Go(s.releaseLoop)
	s.wg.Go(func() { s.limits.sweepLoop(s.done) })
	s.connects.Start(connectWorkers)
	s.disconnects.Start(disconnectWorkers)
	s.dretry.start()
	rpcLn := s.rpcLn
	s.wg.Go(func() {
		if err := s.grpc.Serve(rpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("comet: grpc server stopped", "err", err)
		}
	})
	for _, ln := range s.listeners {
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
	s.report()
	s.mu.Lock()
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	s.mu.Unlock()
	var chs []*Channel
	for _, b := range s.buckets {
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
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

// Addrs returns the bound addresses of the client listeners of a transport
// ("tcp", "tls", "ws", "wss").
func (s *Server) Addrs(tr string) []net.Addr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []net.Addr
	for _, ln := range s.listeners {
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
	if s.rpcLn == nil {
		return nil
	}
	return s.rpcLn.Addr()
}

// goFunc starts f as an owned goroutine unless shutdown has begun.
func (s *Server) goFunc(f func()) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closing {
		return false
	}
	s.wg.Go(f)
	return true
}

// goWriter starts c's writer as an owned goroutine (writeLoop calls
// wg.Done) unless shutdown has begun.
func (s *Server) goWriter(c *Channel) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	go c.writeLoop()
	return true
}

// Shutdown stops accepting, closes every connection (telling logic), stops
// the workers and the gRPC server, and waits for every goroutine, or until
// ctx ends. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.deregister(ctx)
		s.mu.Lock()
		s.closing = true
		for _, ln := range s.listeners {
			_ = ln.Close()
		}
		s.mu.Unlock()
		close(s.done)
		s.cancel()
		s.grpc.Stop()
		s.limits.closePending(ReasonShutdown)
		for _, b := range s.buckets {
			for _, c := range b.channels(nil) {
				c.closeGoingAway(ReasonShutdown)
			}
		}
		if !syncx.Wait(ctx, &s.wg) {
			s.shutErr = fmt.Errorf("comet: shutdown: %w", ctx.Err())
		}
		s.connects.Stop(ctx)
		s.disconnects.Stop(ctx)
		s.dretry.stop(ctx)
		s.finalReport(ctx)
		s.wheel.Stop()
		_ = s.logicConn.Close()
		if s.disc != nil {
			_ = s.disc.Close()
		}
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
			case <-s.done:
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

// reportLoop sends room counts and load to logic every report interval and
// applies the cluster-wide counts it gets back.
func (s *Server) reportLoop() {
	t := time.NewTicker(s.cfg.Logic.ReportInterval.D())
	defer t.Stop()
	for {
		s.report()
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

func (s *Server) report() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Logic.Timeout.D())
	defer cancel()
	reply, err := s.logic.RenewOnline(ctx, &logicpb.OnlineReq{
		Server:    s.cfg.Host,
		RoomCount: s.rooms.counts(),
		ConnCount: s.limits.conns.Load(),
		IpCount:   int64(s.limits.ips.distinct()),
		Draining:  s.draining.Load(),
	})
	if err != nil {
		s.warns.Warn(s.log, "comet: renew online failed", "err", err)
	} else {
		s.rooms.setAll(reply.GetAllRoomCount())
		s.noteEpoch(reply.GetEpoch())
	}
	s.discMu.Lock()
	s.updateMetadata(ctx)
	s.discMu.Unlock()
}

// finalReport tells logic this comet has no clients left, so the online
// totals drop at once instead of counting the gone clients until the last
// report expires (online_ttl). Not through report: that would also update
// the discovery registration Shutdown has just cancelled.
func (s *Server) finalReport(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Logic.Timeout.D())
	defer cancel()
	if _, err := s.logic.RenewOnline(rctx, &logicpb.OnlineReq{Server: s.cfg.Host, Draining: true}); err != nil {
		s.log.Warn("comet: final online report failed; logic counts this comet's clients until its last report expires", "err", err)
	}
}

// noteEpoch records logic's Redis epoch. When it changes, Redis lost the
// sessions: every channel re-registers its own at its next heartbeat
// (spread over the clients' heartbeat period, no burst of RPCs here).
func (s *Server) noteEpoch(epoch string) {
	if epoch == "" {
		return
	}
	s.epochMu.Lock()
	old := s.epoch
	s.epoch = epoch
	s.epochMu.Unlock()
	if old != "" && old != epoch {
		s.sessionGen.Add(1)
		s.metrics.resyncs.Inc()
		s.log.Warn("comet: logic's Redis lost its data (epoch changed); sessions are re-registered at each client's next heartbeat",
			"old", old, "new", epoch)
	}
}

// jitter returns d ± 10 %.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

// getReader borrows a frame reader for r.
func (s *Server) getReader(r io.Reader) *bufio.Reader {
	br := s.readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func (s *Server) putReader(br *bufio.Reader) {
	br.Reset(nil)
	s.readers.Put(br)
}
