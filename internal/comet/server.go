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
	"github.com/goim/goim/internal/timer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Server is a comet: client listeners, the buckets of connections, the
// rooms, the push workers and the gRPC service job calls.
type Server struct {
	cfg     Config
	log     *slog.Logger
	seed    maphash.Seed
	buckets []*Bucket
	rooms   *rooms
	ips     ipCounter
	wheel   *timer.Wheel
	metrics *metrics
	tlsConf *tls.Config
	readers sync.Pool // *bufio.Reader of HeaderSize+MaxBody bytes

	logic     logicpb.LogicClient
	logicConn *grpc.ClientConn
	grpc      *grpc.Server

	roomQueues     []chan roomJob
	broadcastQueue chan broadcastJob

	conns atomic.Int64 // open connections, authenticated or not

	pendingMu sync.Mutex
	pending   map[*Channel]struct{} // connections still in their handshake; guarded by pendingMu

	mu        sync.RWMutex // guards closing and listeners; read-held to start a goroutine
	closing   bool
	listeners []listener
	rpcLn     net.Listener
	wg        sync.WaitGroup // every goroutine the server starts
	done      chan struct{}  // closed when shutdown begins
	stopOnce  sync.Once
	shutErr   error
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
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := deps.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:            cfg,
		log:            log,
		seed:           maphash.MakeSeed(),
		buckets:        newBuckets(cfg.Bucket.Count),
		rooms:          newRooms(cfg.Bucket.Count),
		ips:            newIPCounter(cfg.Bucket.Count),
		wheel:          timer.NewWheel(100*time.Millisecond, 0, cfg.Bucket.Count),
		roomQueues:     make([]chan roomJob, cfg.Bucket.RoomWorkers),
		broadcastQueue: make(chan broadcastJob, cfg.Bucket.BroadcastQueue),
		done:           make(chan struct{}),
		pending:        make(map[*Channel]struct{}),
	}
	for i := range s.roomQueues {
		s.roomQueues[i] = make(chan roomJob, cfg.Bucket.RoomQueue)
	}
	size := protocol.HeaderSize + cfg.Protocol.MaxBody
	s.readers.New = func() any { return bufio.NewReaderSize(nil, size) }
	var err error
	if s.metrics, err = newMetrics(reg, func() float64 { return float64(len(s.rooms.counts())) }); err != nil {
		return nil, err
	}
	if len(cfg.TCP.TLSBind)+len(cfg.WebSocket.TLSBind) > 0 {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("comet: tls: %w", err)
		}
		s.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if s.logicConn, err = dialLogic(cfg.Logic); err != nil {
		return nil, err
	}
	s.logic = logicpb.NewLogicClient(s.logicConn)
	s.grpc = newGRPCServer()
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
	for _, b := range binds {
		for _, a := range b.addrs {
			var ln net.Listener
			if ln, err = net.Listen("tcp", a); err != nil {
				break
			}
			s.listeners = append(s.listeners, listener{Listener: ln, tr: b.tr})
		}
	}
	if err == nil {
		s.rpcLn, err = net.Listen("tcp", s.cfg.RPC.Bind)
	}
	if err != nil {
		for _, ln := range s.listeners {
			_ = ln.Close()
		}
		s.listeners = nil
		return fmt.Errorf("comet: listen: %w", err)
	}
	s.wheel.Start()
	for _, q := range s.roomQueues {
		s.startLocked(func() { s.roomWorker(q) })
	}
	s.startLocked(s.broadcastWorker)
	s.startLocked(s.reportLoop)
	rpcLn := s.rpcLn
	s.startLocked(func() {
		if err := s.grpc.Serve(rpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("comet: grpc server stopped", "err", err)
		}
	})
	for _, ln := range s.listeners {
		s.startLocked(func() { s.acceptLoop(ln) })
	}
	s.log.Info("comet started", "host", s.cfg.Host, "rpc", rpcLn.Addr().String())
	return nil
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

// startLocked starts f as a goroutine owned by the server; s.mu is held.
func (s *Server) startLocked(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// goFunc starts f as an owned goroutine unless shutdown has begun.
func (s *Server) goFunc(f func()) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closing {
		return false
	}
	s.startLocked(f)
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
		s.mu.Lock()
		s.closing = true
		for _, ln := range s.listeners {
			_ = ln.Close()
		}
		s.mu.Unlock()
		close(s.done)
		s.grpc.Stop()
		s.pendingMu.Lock()
		for c := range s.pending {
			c.close(ReasonShutdown)
		}
		s.pendingMu.Unlock()
		for _, b := range s.buckets {
			for _, c := range b.channels(nil) {
				c.close(ReasonShutdown)
			}
		}
		waited := make(chan struct{})
		go func() {
			s.wg.Wait()
			close(waited)
		}()
		select {
		case <-waited:
		case <-ctx.Done():
			s.shutErr = fmt.Errorf("comet: shutdown: %w", ctx.Err())
		}
		s.wheel.Stop()
		_ = s.logicConn.Close()
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
			s.log.Warn("comet: accept failed, retrying", "addr", ln.Addr().String(), "err", err, "retry_in", delay)
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
		ConnCount: s.conns.Load(),
		IpCount:   int64(s.ips.distinct()),
	})
	if err != nil {
		s.log.Warn("comet: renew online failed", "err", err)
		return
	}
	s.rooms.setAll(reply.GetAllRoomCount())
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

// ipCounter counts connections per client IP, sharded by IP.
type ipCounter struct {
	seed   maphash.Seed
	shards []ipShard
}

type ipShard struct {
	mu sync.Mutex
	m  map[string]int32 // guarded by mu
}

func newIPCounter(n int) ipCounter {
	c := ipCounter{seed: maphash.MakeSeed(), shards: make([]ipShard, n)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]int32)
	}
	return c
}

// add counts one more connection from ip unless that would pass limit
// (0 = unlimited).
func (c *ipCounter) add(ip string, limit int) bool {
	sh := &c.shards[maphash.String(c.seed, ip)%uint64(len(c.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if limit > 0 && int(sh.m[ip]) >= limit {
		return false
	}
	sh.m[ip]++
	return true
}

func (c *ipCounter) remove(ip string) {
	sh := &c.shards[maphash.String(c.seed, ip)%uint64(len(c.shards))]
	sh.mu.Lock()
	if sh.m[ip]--; sh.m[ip] <= 0 {
		delete(sh.m, ip)
	}
	sh.mu.Unlock()
}

func (c *ipCounter) distinct() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
