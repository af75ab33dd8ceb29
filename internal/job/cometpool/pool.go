package cometpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/jitter"
	"github.com/goim/goim/internal/logging"
	"github.com/goim/goim/internal/ratelog"
	"github.com/goim/goim/internal/syncx"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// gRPC client settings. The comet's server allows pings every 10 s
// without streams (internal/comet/rpc.go); we ping less often than that.
const (
	ping        = 30 * time.Second
	pingTimeout = 10 * time.Second
	maxMsgSize  = 16 << 20 // room batches can be large; the comet accepts 16 MiB
	// reconnectMax caps gRPC's reconnect backoff (default 2 min) so a
	// restarted comet is reached again within a few seconds, well inside
	// RetryFor.
	reconnectMax = 3 * time.Second
	// connectTimeout bounds one attempt to open a connection.
	connectTimeout = 5 * time.Second
	// warnEvery is the least time between two warnings of one kind about
	// one comet.
	warnEvery = 10 * time.Second
	// retryJitter spreads each wait between retries by ±20 %.
	retryJitter = 0.2
)

// Causes of a comet's context ending.
var (
	errCometGone = errors.New("job: comet removed from the pool")
	errShutdown  = errors.New("job: comet pool closed")
)

// Pool holds a gRPC client and workers per comet. Build it with New, feed
// it comets with Update, send calls with Send, and close it with Close.
type Pool struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	dialOpts []grpc.DialOption // added to the pool's own (the rpc secret)

	mu     sync.Mutex                        // serializes Update and the start of Close
	comets atomic.Pointer[map[string]*comet] // replaced whole under mu, never modified; read by Send without a lock
	closed atomic.Bool                       // Close has begun; set under mu

	epoch     time.Time               // origin of the pool's clock (see clock)
	stopCtx   context.Context         // parent of every comet's context
	stop      context.CancelCauseFunc // ends every attempt and backoff (cause errShutdown)
	draining  chan struct{}           // closed when Close begins: workers finish their queues and exit
	wg        sync.WaitGroup          // every worker
	closeOnce sync.Once
	connsOnce sync.Once
	finished  atomic.Bool // every worker has exited and the connections are closed
}

// comet is one comet: its connection and its workers' queues.
type comet struct {
	host   string
	addr   string // guarded by Pool.mu
	log    *slog.Logger
	ctx    context.Context         // ends on removal (errCometGone) or when the pool stops (errShutdown)
	cancel context.CancelCauseFunc // of ctx
	conn   atomic.Pointer[connection]
	queues []*queue // by shard, then the broadcast queue (see queueFor)

	// failingSince is when (on the pool's clock, made nonzero) the first
	// attempt to end with a transient error since the last successful
	// call ended; 0 while the comet is healthy (no such attempt).
	failingSince atomic.Int64

	sendMu sync.RWMutex
	state  cometState // guarded by sendMu

	// warns lets one warning per warnEvery through for each kind of
	// failure (warnRejected, warnExhausted) of this comet.
	warns *ratelog.Limiter
}

type cometState uint8

const (
	stateOpen    cometState = iota
	stateClosing            // the pool is closing: no new calls, queued ones go on
	stateRemoved            // gone from the pool: every call ends with LostCometGone
)

// Kinds of warnings about a comet, each rate-limited on its own.
const (
	warnRejected  = "rejected"  // calls the comet refused
	warnExhausted = "exhausted" // calls whose retries ran out
)

// connection is one gRPC connection to a comet.
type connection struct {
	cc       *grpc.ClientConn
	client   cometpb.CometClient
	replaced chan struct{} // closed when Update replaces this connection (the comet's address changed)
}

// New returns an empty pool; it starts nothing (Update starts a comet's
// workers). Fields of cfg out of their valid range take their defaults; a
// nil log discards; the pool's metrics are registered on reg (a private
// registry when nil). Every comet is dialled with dial added to the pool's
// options (the per-call credentials that send the rpc secret).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer, dial ...grpc.DialOption) (*Pool, error) {
	ctx, stop := context.WithCancelCause(context.Background())
	p := &Pool{
		cfg:      cfg.withDefaults(),
		log:      logging.OrDiscard(log),
		dialOpts: dial,
		epoch:    time.Now(),
		stopCtx:  ctx,
		stop:     stop,
		draining: make(chan struct{}),
	}
	p.comets.Store(&map[string]*comet{})
	m, err := newMetrics(admin.OrPrivate(reg), p.queuedLen)
	if err != nil {
		stop(errShutdown)
		return nil, err
	}
	p.m = m
	return p, nil
}

// Update sets the comets: hostname -> gRPC address ("host:port", no
// scheme). New hosts are dialled (without waiting for a connection) and
// get their workers. Hosts absent from comets are removed: every call
// queued, in flight or waiting to retry for them ends with LostCometGone,
// and their connection is closed. A host whose address changed gets a new
// connection that its workers use from their next attempt on; its queued
// calls stay, in order (an attempt in flight on the old connection fails
// and is retried on the new one). A host with an unusable address is
// logged and left out (removed if it was in). After Close began, Update
// does nothing. Safe to call concurrently with Send.
func (p *Pool) Update(comets map[string]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return
	}
	old := *p.comets.Load()
	next := make(map[string]*comet, len(comets))
	for host, addr := range comets {
		if err := checkAddr(host, addr); err != nil {
			p.log.Error("job: comet left out of the pool", "comet", host, "addr", addr, "err", err)
			continue
		}
		cm := old[host]
		var err error
		switch {
		case cm == nil:
			cm, err = p.addComet(host, addr)
		case cm.addr != addr:
			err = p.readdress(cm, addr)
		}
		if err != nil {
			p.log.Error("job: comet left out of the pool", "comet", host, "addr", addr, "err", err)
			continue
		}
		next[host] = cm
	}
	p.comets.Store(&next)
	for host, cm := range old {
		if next[host] != cm {
			p.remove(cm)
		}
	}
	p.m.comets.Set(float64(len(next)))
}

// checkAddr reports why addr cannot be a comet's gRPC address.
func checkAddr(host, addr string) error {
	if host == "" {
		return errors.New("empty hostname")
	}
	if strings.Contains(addr, "/") {
		return fmt.Errorf("address %q must be host:port without a scheme", addr)
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return fmt.Errorf("address %q is not host:port", addr)
	}
	return nil
}

// addComet dials host and starts its workers. p.mu must be held.
func (p *Pool) addComet(host, addr string) (*comet, error) {
	conn, err := p.dial(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(p.stopCtx)
	cm := &comet{
		host:   host,
		addr:   addr,
		log:    p.log.With("comet", host),
		ctx:    ctx,
		cancel: cancel,
		queues: make([]*queue, p.cfg.Shards+1),
		warns:  ratelog.New(1, warnEvery),
	}
	cm.conn.Store(conn)
	for i := range cm.queues {
		q := newQueue(p.cfg.Queue)
		cm.queues[i] = q
		p.wg.Go(func() { p.work(cm, q) }) // p.closed is false: Close has not started waiting
	}
	cm.log.Info("job: comet added to the pool", "addr", addr)
	return cm, nil
}

// readdress points cm's workers at addr and closes the old connection.
// p.mu must be held.
func (p *Pool) readdress(cm *comet, addr string) error {
	conn, err := p.dial(addr)
	if err != nil {
		return err
	}
	old := cm.conn.Swap(conn)
	cm.log.Info("job: comet moved", "from", cm.addr, "addr", addr)
	cm.addr = addr
	close(old.replaced) // a worker waiting to retry on old retries now, on conn
	_ = old.cc.Close()
	return nil
}

// remove ends cm: no call is queued any more, its workers end every call
// with LostCometGone and exit, its connection closes. p.mu must be held.
func (p *Pool) remove(cm *comet) {
	cm.sendMu.Lock()
	cm.state = stateRemoved
	cm.sendMu.Unlock()
	cm.cancel(errCometGone)
	_ = cm.conn.Load().cc.Close()
	cm.log.Info("job: comet removed from the pool", "addr", cm.addr)
}

func (p *Pool) dial(addr string) (*connection, error) {
	bo := backoff.DefaultConfig
	bo.MaxDelay = reconnectMax
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: ping, Timeout: pingTimeout, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(maxMsgSize)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: connectTimeout}),
	}
	cc, err := grpc.NewClient(addr, append(opts, p.dialOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("job: comet client %s: %w", addr, err)
	}
	return &connection{cc: cc, client: cometpb.NewCometClient(cc), replaced: make(chan struct{})}, nil
}

// Hosts returns the hostnames of the comets, sorted.
func (p *Pool) Hosts() []string {
	comets := *p.comets.Load()
	hs := make([]string, 0, len(comets))
	for h := range comets {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	return hs
}

// queuedLen returns the calls waiting in every queue.
func (p *Pool) queuedLen() int {
	n := 0
	for _, cm := range *p.comets.Load() {
		for _, q := range cm.queues {
			n += q.len()
		}
	}
	return n
}

// queueFor returns the queue of c: the broadcast queue for a broadcast,
// else the queue of shard (shard % Shards).
func (cm *comet) queueFor(shard uint32, c *Call) *queue {
	shards := uint32(len(cm.queues) - 1)
	if c.Broadcast != nil {
		return cm.queues[shards]
	}
	return cm.queues[shard%shards]
}

// Send queues c for host, stamped with the time: a broadcast on the
// comet's broadcast worker (shard is then ignored), any other call on the
// worker of shard (shard % Shards). It never waits. When c cannot be
// queued, c.Done is called before Send returns: LostCometGone for a host
// not in the pool, LostQueueFull when that worker's queue is full,
// LostShutdown once Close has begun.
func (p *Pool) Send(host string, shard uint32, c *Call) {
	cm := (*p.comets.Load())[host]
	if cm == nil {
		o := LostCometGone
		if p.closed.Load() {
			o = LostShutdown
		}
		p.finish(c, o)
		return
	}
	o := LostQueueFull
	c.queued = time.Now()
	cm.sendMu.RLock()
	switch cm.state {
	case stateRemoved:
		o = LostCometGone
	case stateClosing:
		o = LostShutdown
	default:
		if cm.queueFor(shard, c).push(c) {
			cm.sendMu.RUnlock()
			return
		}
	}
	cm.sendMu.RUnlock()
	p.finish(c, o)
}

// finish counts c's outcome and tells its sender.
func (p *Pool) finish(c *Call, o Outcome) {
	p.m.method(c).calls[o].Inc()
	c.Done(o)
}

// work is one worker of cm: it runs the calls of q in order until cm is
// removed or the pool closes (then it finishes q first).
func (p *Pool) work(cm *comet, q *queue) {
	for {
		if c := q.pop(); c != nil {
			p.deliver(cm, c) // ends c at once if cm's context has ended
			continue
		}
		select {
		case <-q.wake:
		case <-cm.ctx.Done():
			p.abandon(cm, q)
			return
		case <-p.draining:
			// No call can be queued any more (Close set every comet's
			// state first): run what is queued, then exit. If the pool
			// stops meanwhile, deliver ends each remaining call at once.
			for c := q.pop(); c != nil; c = q.pop() {
				p.deliver(cm, c)
			}
			return
		}
	}
}

// abandon ends every call left in q with the reason cm's context ended.
// Nothing can be queued any more: the state was set before the context
// was cancelled.
func (p *Pool) abandon(cm *comet, q *queue) {
	o := cm.lost()
	for c := q.pop(); c != nil; c = q.pop() {
		p.finish(c, o)
	}
}

// lost is the outcome of a call cut short by the end of cm's context.
func (cm *comet) lost() Outcome {
	if errors.Is(context.Cause(cm.ctx), errCometGone) {
		return LostCometGone
	}
	return LostShutdown
}

// deliver runs c to its end: attempts, and waits between them after
// transient errors, until it is accepted, refused, out of time, or cut
// short by cm's removal or the pool's stop. Out of time is RetryFor after
// its first attempt, or earlier while cm is failing (see expired); each
// attempt has the whole CallTimeout. (Cutting an attempt short to fit a
// budget counted from the queue would fail, and then duplicate, pushes a
// slow but healthy comet was about to accept; the bound it gave a hung
// comet comes from expired instead.)
func (p *Pool) deliver(cm *comet, c *Call) {
	mm := p.m.method(c)
	base, ceiling, budget := p.cfg.RetryBase.D(), p.cfg.RetryMax.D(), p.cfg.RetryFor.D()
	wait := base
	var first time.Time
	for {
		if cm.ctx.Err() != nil {
			p.finish(c, cm.lost())
			return
		}
		start := time.Now()
		if first.IsZero() {
			if p.expired(cm, c, start) {
				cm.warn(warnExhausted, "job: comet failing for retry_for; calls queued longer lost unattempted", c,
					errors.New("comet failing, call queued longer than retry_for"))
				p.finish(c, LostRetries)
				return
			}
			first = start
		}
		conn := cm.conn.Load()
		err := p.attempt(cm.ctx, conn.client, c, p.cfg.CallTimeout.D())
		end := time.Now()
		mm.duration.Observe(end.Sub(start).Seconds())
		switch {
		case err == nil:
			if cm.failingSince.Load() != 0 {
				cm.failingSince.Store(0) // healthy again
			}
			p.finish(c, Delivered)
			return
		case cm.ctx.Err() != nil:
			p.finish(c, cm.lost())
			return
		case !transient(status.Code(err)) || tooLarge(c, err):
			cm.warn(warnRejected, "job: comet refused calls; lost", c, err)
			p.finish(c, LostRejected)
			return
		}
		if cm.failingSince.Load() == 0 {
			cm.failingSince.CompareAndSwap(0, max(int64(p.clock(end)), 1))
		}
		d := jitter.Spread(wait, retryJitter)
		if next := end.Add(d); next.Sub(first) > budget || p.expired(cm, c, next) {
			cm.warn(warnExhausted, "job: calls to comet failed until retry_for ran out; lost", c, err)
			p.finish(c, LostRetries)
			return
		}
		mm.retries.Inc()
		if !cm.sleep(d, conn.replaced) {
			p.finish(c, cm.lost())
			return
		}
		select {
		case <-conn.replaced:
			wait = base // a new address: start over
		default:
			wait = min(2*wait, ceiling)
		}
	}
}

// clock is t on the pool's monotonic clock.
func (p *Pool) clock(t time.Time) time.Duration { return t.Sub(p.epoch) }

// expired tells whether c is to end, unattempted or without a further
// attempt, if its next attempt starts at t: cm has been failing for
// RetryFor by then and c was queued RetryFor before. Requiring the
// comet to have failed that long, not only now, keeps one transient error
// of a busy but healthy comet from ending the whole backlog its other
// workers are draining.
func (p *Pool) expired(cm *comet, c *Call, t time.Time) bool {
	since := cm.failingSince.Load()
	if since == 0 {
		return false
	}
	return p.clock(t)-max(time.Duration(since), p.clock(c.queued)) >= p.cfg.RetryFor.D()
}

// attempt makes one gRPC call for c with the deadline timeout.
func (p *Pool) attempt(ctx context.Context, client cometpb.CometClient, c *Call, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	switch {
	case c.Push != nil:
		var r *cometpb.PushMsgReply
		if r, err = client.PushMsg(ctx, c.Push); err == nil {
			p.m.pushReply(r)
		}
	case c.Room != nil:
		_, err = client.BroadcastRoom(ctx, c.Room)
	case c.Broadcast != nil:
		_, err = client.Broadcast(ctx, c.Broadcast)
	default:
		err = status.Error(codes.InvalidArgument, "job: empty call (no push, room or broadcast)")
	}
	return err
}

// sleep waits d, or less if conn is replaced; it returns false if cm's
// context ended first.
func (cm *comet) sleep(d time.Duration, replaced <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-replaced:
		return true
	case <-cm.ctx.Done():
		return false
	}
}

// warn logs msg for the failure err of c unless a warning of kind about
// cm was logged less than warnEvery ago; "count" is the failures of kind
// the line stands for (this one and those not logged since the last).
func (cm *comet) warn(kind, msg string, c *Call, err error) {
	if ok, suppressed := cm.warns.Allow(kind); ok {
		cm.log.Warn(msg, "count", suppressed+1, "method", c.method(), "code", status.Code(err).String(), "err", err)
	}
}

// transient tells whether a call that failed with code may succeed if
// retried. The comet answers ResourceExhausted when its queues stay full
// for the call's deadline, Unavailable while it shuts down, Internal for
// unexpected errors; Canceled that the pool did not cause comes from a
// connection closed under the call (an address change). Everything else
// (InvalidArgument, NotFound, Unimplemented, ...) is the request's fault.
func transient(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted,
		codes.Internal, codes.Unknown, codes.Canceled:
		return true
	}
	return false
}

// tooLarge tells whether err is gRPC refusing c for its size (on either
// side, as ResourceExhausted), which no retry can fix. Checked only after
// a ResourceExhausted, so the happy path never sizes a request.
func tooLarge(c *Call, err error) bool {
	if status.Code(err) != codes.ResourceExhausted {
		return false
	}
	var m proto.Message
	switch {
	case c.Push != nil:
		m = c.Push
	case c.Room != nil:
		m = c.Room
	case c.Broadcast != nil:
		m = c.Broadcast
	default:
		return false
	}
	return proto.Size(m) > maxMsgSize
}

// Close stops accepting calls (Send ends them with LostShutdown), lets
// the workers run what is queued until ctx ends, then cuts short every
// attempt and backoff (LostShutdown for every call left), waits for every
// worker and closes every connection. It returns ctx.Err() if ctx ended
// before the queues were done, else nil. Idempotent; Update does nothing
// once Close has begun.
func (p *Pool) Close(ctx context.Context) error {
	p.closeOnce.Do(p.beginClose)
	var err error
	if !p.finished.Load() && !syncx.Wait(ctx, &p.wg) {
		err = ctx.Err()
		p.stop(errShutdown)
		p.wg.Wait() // quick now: every wait selects on the stopped context
	}
	p.connsOnce.Do(p.closeConns)
	return err
}

// beginClose stops Send and Update and tells the workers to drain.
func (p *Pool) beginClose() {
	p.mu.Lock()
	p.closed.Store(true)
	comets := *p.comets.Load() // final: Update does nothing from now on
	p.mu.Unlock()
	for _, cm := range comets {
		cm.sendMu.Lock()
		if cm.state == stateOpen {
			cm.state = stateClosing
		}
		cm.sendMu.Unlock()
	}
	close(p.draining)
}

// closeConns runs after every worker has exited.
func (p *Pool) closeConns() {
	comets := *p.comets.Load()
	for _, cm := range comets {
		_ = cm.conn.Load().cc.Close()
		cm.cancel(errShutdown)
	}
	p.stop(errShutdown)
	p.comets.Store(&map[string]*comet{})
	p.m.comets.Set(0)
	p.finished.Store(true)
}
