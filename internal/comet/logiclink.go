package comet

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/gather"
	"github.com/goim/goim/internal/logicclient"
	"github.com/goim/goim/internal/ratelog"
	"github.com/goim/goim/internal/rpcauth"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver/manual"
)

// logicLink is everything the comet says to logic: the gRPC connection
// (to logic.addrs, or to the instances discovery lists), the handshakes'
// Connect and the closed sessions' Disconnect, each batched by a few
// workers with a fallback for a logic without the batch calls
// (connect.go, disconnect.go), the disconnects sent again after a failure
// (disconnect_retry.go), the reliable connections' acks, batched the same
// way (ack.go), and the online report with the epoch it answers. The
// connections' own calls (Heartbeat, Receive, ReadStream: fetch.go) go
// through client.
type logicLink struct {
	cfg     LogicConfig
	host    string // Config.Host: the comet's server id in every request
	log     *slog.Logger
	warns   *ratelog.Limiter
	metrics *metrics

	client   logicpb.LogicClient
	conn     *grpc.ClientConn
	resolver *manual.Resolver // fed from discovery when cfg.Addrs is empty

	// Handshakes and closed sessions on their way to logic (not in the
	// server's WaitGroup: the workers outlive the connection goroutines
	// that feed them).
	connects      *gather.Gatherer[*connectCall]
	connectOne    atomic.Bool // logic has no ConnectBatch: one Connect per handshake
	disconnects   *gather.Gatherer[disconnectReq]
	disconnectOne atomic.Bool              // logic has no DisconnectBatch
	retrier       *disconnectRetrier       // failed disconnects, sent again
	acks          *gather.Gatherer[ackReq] // reliable connections' acks (ack.go)

	// The report reads the room counts and the comet's load (reg.meta),
	// applies the cluster-wide room counts logic answers, and then brings
	// the discovery metadata up to date.
	rooms *rooms
	reg   *registrar

	// epoch is the last OnlineReply.epoch from logic (guarded by epochMu:
	// reports come from the report loop and from Drain); sessionGen
	// counts its changes. A channel whose renewGen differs renews its
	// session at its next heartbeat.
	epochMu    sync.Mutex
	epoch      string
	sessionGen atomic.Uint64
}

// newLogicLink dials logic (without waiting for it) and builds the
// workers; it starts nothing.
func newLogicLink(cfg Config, keys *rpcauth.Keys, log *slog.Logger, warns *ratelog.Limiter, m *metrics, rooms *rooms, reg *registrar) (*logicLink, error) {
	l := &logicLink{cfg: cfg.Logic, host: cfg.Host, log: log, warns: warns, metrics: m, rooms: rooms, reg: reg}
	var err error
	if l.conn, l.resolver, err = logicclient.Dial(cfg.Logic.Addrs, "comet", keys); err != nil {
		return nil, err
	}
	l.client = logicpb.NewLogicClient(l.conn)
	l.connects = gather.New(connectQueue, connectMaxBatch, l.connectBatch)
	l.disconnects = gather.New(disconnectQueue, disconnectMaxBatch, l.disconnect)
	l.retrier = newDisconnectRetrier(cfg.Logic.DisconnectRetry.D(), l.sendDisconnects,
		func(n int) { m.disconnectsRetried.Add(float64(n)) }, l.disconnectsLost)
	l.disconnects.Overflow = l.retrier.overflow
	l.acks = gather.New(ackQueue, ackMaxBatch, l.sendAcks)
	l.acks.Overflow = func(ackReq) { m.ackDropped.Inc() }
	return l, nil
}

// start starts the workers, and in wg the report loop and, when logic's
// instances come from discovery, the watch feeding the resolver; those
// two end with ctx.
func (l *logicLink) start(ctx context.Context, wg *sync.WaitGroup) {
	if l.reg.client != nil && len(l.cfg.Addrs) == 0 {
		wg.Go(func() { l.watchLogic(ctx) })
	}
	wg.Go(func() { l.reportLoop(ctx.Done()) })
	l.connects.Start(connectWorkers)
	l.disconnects.Start(disconnectWorkers)
	l.acks.Start(ackWorkers)
	l.retrier.start()
}

// stop sends what the workers and the retrier hold, then the final
// report, each while ctx lasts. Call it once the connections have ended.
func (l *logicLink) stop(ctx context.Context) {
	l.connects.Stop(ctx)
	l.disconnects.Stop(ctx)
	l.acks.Stop(ctx)
	l.retrier.stop(ctx)
	l.finalReport(ctx)
}

// close closes the connection to logic.
func (l *logicLink) close() { _ = l.conn.Close() }

// watchLogic feeds logic's gRPC resolver from discovery (app goim.logic)
// until ctx ends; used when logic.addrs is empty.
func (l *logicLink) watchLogic(ctx context.Context) {
	logicclient.Follow(ctx, l.reg.client, l.resolver, l.log, "comet")
}

// reportLoop sends room counts and load to logic every report interval and
// applies the cluster-wide counts it gets back, until done is closed.
func (l *logicLink) reportLoop(done <-chan struct{}) {
	t := time.NewTicker(l.cfg.ReportInterval.D())
	defer t.Stop()
	for {
		l.report()
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// report sends one online report, applies logic's answer and updates the
// discovery metadata.
func (l *logicLink) report() {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout.D())
	defer cancel()
	m := l.reg.meta()
	reply, err := l.client.RenewOnline(ctx, &logicpb.OnlineReq{
		Server:    l.host,
		RoomCount: l.rooms.counts(),
		ConnCount: m.ConnCount,
		IpCount:   m.IPCount,
		Draining:  m.Offline,
	})
	if err != nil {
		l.warns.Warn(l.log, "comet: renew online failed", "err", err)
	} else {
		l.rooms.setAll(reply.GetAllRoomCount())
		l.noteEpoch(reply.GetEpoch())
	}
	l.reg.update(ctx)
}

// finalReport tells logic this comet has no clients left, so the online
// totals drop at once instead of counting the gone clients until the last
// report expires (online_ttl). Not through report: that would also update
// the discovery registration Shutdown has just cancelled.
func (l *logicLink) finalReport(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout.D())
	defer cancel()
	if _, err := l.client.RenewOnline(rctx, &logicpb.OnlineReq{Server: l.host, Draining: true}); err != nil {
		l.log.Warn("comet: final online report failed; logic counts this comet's clients until its last report expires", "err", err)
	}
}

// noteEpoch records logic's Redis epoch. When it changes, Redis lost the
// sessions: every channel re-registers its own at its next heartbeat
// (spread over the clients' heartbeat period, no burst of RPCs here).
func (l *logicLink) noteEpoch(epoch string) {
	if epoch == "" {
		return
	}
	l.epochMu.Lock()
	old := l.epoch
	l.epoch = epoch
	l.epochMu.Unlock()
	if old != "" && old != epoch {
		l.sessionGen.Add(1)
		l.metrics.resyncs.Inc()
		l.log.Warn("comet: logic's Redis lost its data (epoch changed); sessions are re-registered at each client's next heartbeat",
			"old", old, "new", epoch)
	}
}

// generation counts the epoch changes seen: a session registered in an
// older generation is registered again at its next heartbeat.
func (l *logicLink) generation() uint64 { return l.sessionGen.Load() }
