package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	"github.com/goim/goim/internal/conf"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The comet pool: one gRPC client per comet, and per comet a fixed set of
// workers, each with its own bounded queue. A key push or room push goes
// to the worker its shard picks, so the calls of one shard reach a comet
// in the order they were sent (goim v2 spread them round robin). A worker
// stays on its call through retries, so a call's successors wait behind it
// rather than overtake it. Broadcasts have a worker and queue of their own
// per comet, so a slow or retried Broadcast (a paced one the comet turns
// away as busy, say) holds only the broadcasts behind it, never a key or
// room push. Each comet has its own workers and queues and send never
// waits (v2's blocking enqueue stalled everything).
//
// A queue grows with its backlog (up to Queue calls) and shrinks as it
// drains, so a healthy comet that answers slower than Kafka is read keeps
// every call and delivers it, however long that takes. A comet is failing
// from an attempt's transient error until a call to it succeeds; once it
// has failed for RetryFor, its calls queued for RetryFor end without an
// attempt (LostRetries), so a hung comet holds a push, and the commit of
// its partition, for about RetryFor + CallTimeout, and never delays
// another comet's calls.
//
// Locks: cometPool.mu serializes update and the start of close; it guards
// the comets map's replacement and every poolComet.addr. poolComet.sendMu
// guards the comet's state; send holds it for reading while it queues a
// call, so once a writer has changed the state no call can be queued
// behind the worker's final drain. poolQueue.mu guards one queue's ring.
// Order: cometPool.mu, then poolComet.sendMu, then poolQueue.mu.

// PoolConfig is the [comet] section of job's config: the client pool of
// comets.
type PoolConfig struct {
	// Shards is the number of workers per comet for key and room pushes.
	// A call goes to the worker its shard picks (shard % Shards), so calls
	// with the same shard reach a comet in order; different shards proceed
	// in parallel. Broadcasts have one more worker per comet of their own,
	// so a slow broadcast never delays a key or room push. At most 1024.
	// Default 8.
	Shards int `toml:"shards"`
	// Queue bounds the calls waiting per worker; a call sent to a full
	// queue is lost at once (queue_full). A bound, not a preallocation: a
	// queue takes memory for the calls it holds, grows with a backlog and
	// shrinks again as it drains. A healthy comet's backlog waits as long
	// as it takes to drain and a hung comet's calls end after retry_for,
	// so only a backlog beyond this bound loses calls here. At most
	// 1048576. Default 65536.
	Queue int `toml:"queue"`
	// CallTimeout is the deadline of each gRPC attempt, however long its
	// call waited or was retried. Default "3s".
	CallTimeout conf.Duration `toml:"call_timeout"`
	// RetryBase is the first wait after a transient error (comet busy,
	// unavailable, deadline exceeded, ...); it doubles with each retry,
	// ±20 % jitter. Default "50ms".
	RetryBase conf.Duration `toml:"retry_base"`
	// RetryMax is the longest wait between retries; >= retry_base.
	// Default "1s".
	RetryMax conf.Duration `toml:"retry_max"`
	// RetryFor bounds how long a call is retried after transient errors,
	// counted from its first attempt: no attempt starts later, so a call
	// ends within retry_for + call_timeout of its first attempt
	// (retries_exhausted). While its comet is healthy, a call waits in its
	// queue as long as needed: a backlog drains in full, nothing expires.
	// A comet is failing from an attempt's transient error until any call
	// to it succeeds; a call gets no (further) attempt and is lost
	// (retries_exhausted) once its comet has been failing for retry_for
	// and it was queued retry_for ago. So a hung comet holds a push (and
	// the commit of its partition) for about retry_for + call_timeout
	// after it was queued, or after the comet hung for pushes queued
	// before. Default "10s".
	RetryFor conf.Duration `toml:"retry_for"`
}

// Bounds of PoolConfig.
const (
	poolMaxShards = 1024
	poolMaxQueue  = 1 << 20
)

// DefaultPoolConfig returns the defaults of every PoolConfig field.
func DefaultPoolConfig() PoolConfig {
	return PoolConfig{
		Shards:      8,
		Queue:       65536,
		CallTimeout: conf.Duration(3 * time.Second),
		RetryBase:   conf.Duration(50 * time.Millisecond),
		RetryMax:    conf.Duration(time.Second),
		RetryFor:    conf.Duration(10 * time.Second),
	}
}

// Validate records every problem of c in p, with key paths relative to p
// (call it with p.Sub("comet")).
func (c PoolConfig) Validate(p *conf.Problems) {
	p.Check(c.Shards > 0 && c.Shards <= poolMaxShards, "shards", "must be 1..%d, got %d", poolMaxShards, c.Shards)
	p.Check(c.Queue > 0 && c.Queue <= poolMaxQueue, "queue", "must be 1..%d, got %d", poolMaxQueue, c.Queue)
	p.Check(c.CallTimeout > 0, "call_timeout", "must be > 0, got %v", c.CallTimeout)
	p.Check(c.RetryBase > 0, "retry_base", "must be > 0, got %v", c.RetryBase)
	p.Check(c.RetryMax > 0 && c.RetryMax >= c.RetryBase, "retry_max", "must be > 0 and >= retry_base (%v), got %v", c.RetryBase, c.RetryMax)
	p.Check(c.RetryFor > 0, "retry_for", "must be > 0, got %v", c.RetryFor)
}

// withDefaults returns c with every field out of its valid range replaced
// by its default, so that a pool built from an unvalidated config cannot
// divide by zero or spin.
func (c PoolConfig) withDefaults() PoolConfig {
	d := DefaultPoolConfig()
	if c.Shards <= 0 || c.Shards > poolMaxShards {
		c.Shards = d.Shards
	}
	if c.Queue <= 0 || c.Queue > poolMaxQueue {
		c.Queue = d.Queue
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = d.CallTimeout
	}
	if c.RetryBase <= 0 {
		c.RetryBase = d.RetryBase
	}
	if c.RetryMax < c.RetryBase {
		c.RetryMax = c.RetryBase
	}
	if c.RetryFor <= 0 {
		c.RetryFor = d.RetryFor
	}
	return c
}

// gRPC client settings. The comet's server allows pings every 10 s
// without streams (internal/comet/rpc.go); we ping less often than that.
const (
	poolPing        = 30 * time.Second
	poolPingTimeout = 10 * time.Second
	poolMaxMsgSize  = 16 << 20 // room batches can be large; the comet accepts 16 MiB
	// poolReconnectMax caps gRPC's reconnect backoff (default 2 min) so a
	// restarted comet is reached again within a few seconds, well inside
	// RetryFor.
	poolReconnectMax = 3 * time.Second
	// poolConnectTimeout bounds one attempt to open a connection.
	poolConnectTimeout = 5 * time.Second
	// poolWarnEvery is the least time between two warnings of one kind
	// about one comet.
	poolWarnEvery = 10 * time.Second
)

// Causes of a comet's context ending.
var (
	errPoolCometGone = errors.New("job: comet removed from the pool")
	errPoolShutdown  = errors.New("job: comet pool closed")
)

// cometPool holds a gRPC client and workers per comet. Build it with
// newCometPool, feed it comets with update, send calls, and close it.
type cometPool struct {
	cfg      PoolConfig
	log      *slog.Logger
	m        *poolMetrics
	dialOpts []grpc.DialOption // added to the pool's own (the rpc secret)

	mu     sync.Mutex                            // serializes update and the start of close
	comets atomic.Pointer[map[string]*poolComet] // replaced whole under mu, never modified; read by send without a lock
	closed atomic.Bool                           // close has begun; set under mu

	epoch       time.Time               // origin of the pool's clock (see clock)
	stopCtx     context.Context         // parent of every comet's context
	stop        context.CancelCauseFunc // ends every attempt and backoff (cause errPoolShutdown)
	draining    chan struct{}           // closed when close begins: workers finish their queues and exit
	wg          sync.WaitGroup          // every worker
	workersDone chan struct{}           // closed when wg is done after close began
	closeOnce   sync.Once
	connsOnce   sync.Once
}

// poolComet is one comet: its connection and its workers' queues.
type poolComet struct {
	host   string
	addr   string // guarded by cometPool.mu
	log    *slog.Logger
	ctx    context.Context         // ends on removal (errPoolCometGone) or when the pool stops (errPoolShutdown)
	cancel context.CancelCauseFunc // of ctx
	conn   atomic.Pointer[poolConn]
	queues []*poolQueue // by shard, then the broadcast queue (see queue)

	// failingSince is when (on the pool's clock, made nonzero) the first
	// attempt to end with a transient error since the last successful
	// call ended; 0 while the comet is healthy (no such attempt).
	failingSince atomic.Int64

	sendMu sync.RWMutex
	state  poolCometState // guarded by sendMu

	rejected  poolWarnLimiter // warnings of calls the comet refused
	exhausted poolWarnLimiter // warnings of calls whose retries ran out
}

type poolCometState uint8

const (
	poolCometOpen    poolCometState = iota
	poolCometClosing                // the pool is closing: no new calls, queued ones go on
	poolCometRemoved                // gone from the pool: every call ends with LostCometGone
)

// poolConn is one gRPC connection to a comet.
type poolConn struct {
	cc       *grpc.ClientConn
	client   cometpb.CometClient
	replaced chan struct{} // closed when update replaces this connection (the comet's address changed)
}

// newCometPool returns an empty pool; it starts nothing (update starts a
// comet's workers). Fields of cfg out of their valid range take their
// defaults; a nil log discards; nil metrics go to a private registry.
// m's queued gauge reports this pool. Every comet is dialled with dial
// added to the pool's options (the per-call credentials that send the
// rpc secret).
func newCometPool(cfg PoolConfig, log *slog.Logger, m *poolMetrics, dial ...grpc.DialOption) *cometPool {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m, _ = newPoolMetrics(prometheus.NewRegistry()) // a fresh registry cannot clash
	}
	ctx, stop := context.WithCancelCause(context.Background())
	p := &cometPool{
		cfg:         cfg.withDefaults(),
		log:         log,
		m:           m,
		dialOpts:    dial,
		epoch:       time.Now(),
		stopCtx:     ctx,
		stop:        stop,
		draining:    make(chan struct{}),
		workersDone: make(chan struct{}),
	}
	p.comets.Store(&map[string]*poolComet{})
	m.pool.Store(p)
	return p
}

// update sets the comets: hostname -> gRPC address ("host:port", no
// scheme). New hosts are dialled (without waiting for a connection) and
// get their workers. Hosts absent from comets are removed: every call
// queued, in flight or waiting to retry for them ends with LostCometGone,
// and their connection is closed. A host whose address changed gets a new
// connection that its workers use from their next attempt on; its queued
// calls stay, in order (an attempt in flight on the old connection fails
// and is retried on the new one). A host with an unusable address is
// logged and left out (removed if it was in). After close began, update
// does nothing. Safe to call concurrently with send.
func (p *cometPool) update(comets map[string]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return
	}
	old := *p.comets.Load()
	next := make(map[string]*poolComet, len(comets))
	for host, addr := range comets {
		if err := poolCheckAddr(host, addr); err != nil {
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

// poolCheckAddr reports why addr cannot be a comet's gRPC address.
func poolCheckAddr(host, addr string) error {
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
func (p *cometPool) addComet(host, addr string) (*poolComet, error) {
	conn, err := p.dial(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(p.stopCtx)
	cm := &poolComet{
		host:   host,
		addr:   addr,
		log:    p.log.With("comet", host),
		ctx:    ctx,
		cancel: cancel,
		queues: make([]*poolQueue, p.cfg.Shards+1),
	}
	cm.conn.Store(conn)
	for i := range cm.queues {
		q := newPoolQueue(p.cfg.Queue)
		cm.queues[i] = q
		p.wg.Add(1) // p.closed is false: close has not started waiting
		go p.work(cm, q)
	}
	cm.log.Info("job: comet added to the pool", "addr", addr)
	return cm, nil
}

// readdress points cm's workers at addr and closes the old connection.
// p.mu must be held.
func (p *cometPool) readdress(cm *poolComet, addr string) error {
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
func (p *cometPool) remove(cm *poolComet) {
	cm.sendMu.Lock()
	cm.state = poolCometRemoved
	cm.sendMu.Unlock()
	cm.cancel(errPoolCometGone)
	_ = cm.conn.Load().cc.Close()
	cm.log.Info("job: comet removed from the pool", "addr", cm.addr)
}

func (p *cometPool) dial(addr string) (*poolConn, error) {
	bo := backoff.DefaultConfig
	bo.MaxDelay = poolReconnectMax
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: poolPing, Timeout: poolPingTimeout, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(poolMaxMsgSize)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: poolConnectTimeout}),
	}
	cc, err := grpc.NewClient(addr, append(opts, p.dialOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("job: comet client %s: %w", addr, err)
	}
	return &poolConn{cc: cc, client: cometpb.NewCometClient(cc), replaced: make(chan struct{})}, nil
}

// hosts returns the hostnames of the comets, sorted.
func (p *cometPool) hosts() []string {
	comets := *p.comets.Load()
	hs := make([]string, 0, len(comets))
	for h := range comets {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	return hs
}

// size returns the number of comets.
func (p *cometPool) size() int { return len(*p.comets.Load()) }

// queuedLen returns the calls waiting in every queue.
func (p *cometPool) queuedLen() int {
	n := 0
	for _, cm := range *p.comets.Load() {
		for _, q := range cm.queues {
			n += q.len()
		}
	}
	return n
}

// queue returns the queue of c: the broadcast queue for a broadcast, else
// the queue of shard (shard % Shards).
func (cm *poolComet) queue(shard uint32, c *call) *poolQueue {
	shards := uint32(len(cm.queues) - 1)
	if c.broadcast != nil {
		return cm.queues[shards]
	}
	return cm.queues[shard%shards]
}

// send queues c for host, stamped with the time (c.queued): a broadcast
// on the comet's broadcast worker (shard is then ignored), any other call
// on the worker of shard (shard % Shards). It never waits. When c cannot
// be queued, c.done is called before send returns: LostCometGone for a
// host not in the pool, LostQueueFull when that worker's queue is full,
// LostShutdown once close has begun.
func (p *cometPool) send(host string, shard uint32, c *call) {
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
	case poolCometRemoved:
		o = LostCometGone
	case poolCometClosing:
		o = LostShutdown
	default:
		if cm.queue(shard, c).push(c) {
			cm.sendMu.RUnlock()
			return
		}
	}
	cm.sendMu.RUnlock()
	p.finish(c, o)
}

// finish counts c's outcome and tells its sender.
func (p *cometPool) finish(c *call, o Outcome) {
	p.m.method(c).calls[o].Inc()
	c.done(o)
}

// work is one worker of cm: it runs the calls of q in order until cm is
// removed or the pool closes (then it finishes q first).
func (p *cometPool) work(cm *poolComet, q *poolQueue) {
	defer p.wg.Done()
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
			// No call can be queued any more (close set every comet's
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
func (p *cometPool) abandon(cm *poolComet, q *poolQueue) {
	o := cm.lost()
	for c := q.pop(); c != nil; c = q.pop() {
		p.finish(c, o)
	}
}

// lost is the outcome of a call cut short by the end of cm's context.
func (cm *poolComet) lost() Outcome {
	if errors.Is(context.Cause(cm.ctx), errPoolCometGone) {
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
func (p *cometPool) deliver(cm *poolComet, c *call) {
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
				cm.exhausted.warn(cm.log, "job: comet failing for retry_for; calls queued longer lost unattempted", c,
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
		case !poolTransient(status.Code(err)) || poolTooLarge(c, err):
			cm.rejected.warn(cm.log, "job: comet refused calls; lost", c, err)
			p.finish(c, LostRejected)
			return
		}
		if cm.failingSince.Load() == 0 {
			cm.failingSince.CompareAndSwap(0, max(int64(p.clock(end)), 1))
		}
		d := poolJitter(wait)
		if next := end.Add(d); next.Sub(first) > budget || p.expired(cm, c, next) {
			cm.exhausted.warn(cm.log, "job: calls to comet failed until retry_for ran out; lost", c, err)
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
func (p *cometPool) clock(t time.Time) time.Duration { return t.Sub(p.epoch) }

// expired tells whether c is to end, unattempted or without a further
// attempt, if its next attempt starts at t: cm has been failing for
// RetryFor by then and c was queued RetryFor before. Requiring the
// comet to have failed that long, not only now, keeps one transient error
// of a busy but healthy comet from ending the whole backlog its other
// workers are draining.
func (p *cometPool) expired(cm *poolComet, c *call, t time.Time) bool {
	since := cm.failingSince.Load()
	if since == 0 {
		return false
	}
	return p.clock(t)-max(time.Duration(since), p.clock(c.queued)) >= p.cfg.RetryFor.D()
}

// attempt makes one gRPC call for c with the deadline timeout.
func (p *cometPool) attempt(ctx context.Context, client cometpb.CometClient, c *call, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	switch {
	case c.push != nil:
		var r *cometpb.PushMsgReply
		if r, err = client.PushMsg(ctx, c.push); err == nil {
			p.m.pushReply(r)
		}
	case c.room != nil:
		_, err = client.BroadcastRoom(ctx, c.room)
	case c.broadcast != nil:
		_, err = client.Broadcast(ctx, c.broadcast)
	default:
		err = status.Error(codes.InvalidArgument, "job: empty call (no push, room or broadcast)")
	}
	return err
}

// sleep waits d, or less if conn is replaced; it returns false if cm's
// context ended first.
func (cm *poolComet) sleep(d time.Duration, replaced <-chan struct{}) bool {
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

// poolTransient tells whether a call that failed with code may succeed if
// retried. The comet answers ResourceExhausted when its queues stay full
// for the call's deadline, Unavailable while it shuts down, Internal for
// unexpected errors; Canceled that the pool did not cause comes from a
// connection closed under the call (an address change). Everything else
// (InvalidArgument, NotFound, Unimplemented, ...) is the request's fault.
func poolTransient(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted,
		codes.Internal, codes.Unknown, codes.Canceled:
		return true
	}
	return false
}

// poolTooLarge tells whether err is gRPC refusing c for its size (on
// either side, as ResourceExhausted), which no retry can fix. Checked only
// after a ResourceExhausted, so the happy path never sizes a request.
func poolTooLarge(c *call, err error) bool {
	if status.Code(err) != codes.ResourceExhausted {
		return false
	}
	var m proto.Message
	switch {
	case c.push != nil:
		m = c.push
	case c.room != nil:
		m = c.room
	case c.broadcast != nil:
		m = c.broadcast
	default:
		return false
	}
	return proto.Size(m) > poolMaxMsgSize
}

// poolJitter returns d ± 20 %.
func poolJitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// close stops accepting calls (send ends them with LostShutdown), lets
// the workers run what is queued until ctx ends, then cuts short every
// attempt and backoff (LostShutdown for every call left), waits for every
// worker and closes every connection. It returns ctx.Err() if ctx ended
// before the queues were done, else nil. Idempotent; update does nothing
// once close has begun.
func (p *cometPool) close(ctx context.Context) error {
	p.closeOnce.Do(p.beginClose)
	var err error
	select {
	case <-p.workersDone:
	default:
		select {
		case <-p.workersDone:
		case <-ctx.Done():
			err = ctx.Err()
			p.stop(errPoolShutdown)
			<-p.workersDone // quick now: every wait selects on the stopped context
		}
	}
	p.connsOnce.Do(p.closeConns)
	return err
}

func (p *cometPool) beginClose() {
	p.mu.Lock()
	p.closed.Store(true)
	comets := *p.comets.Load() // final: update does nothing from now on
	p.mu.Unlock()
	for _, cm := range comets {
		cm.sendMu.Lock()
		if cm.state == poolCometOpen {
			cm.state = poolCometClosing
		}
		cm.sendMu.Unlock()
	}
	close(p.draining)
	// The waiter ends when the workers do, which close ensures by stopping
	// them at its deadline.
	go func() {
		p.wg.Wait()
		close(p.workersDone)
	}()
}

// closeConns runs after every worker has exited.
func (p *cometPool) closeConns() {
	comets := *p.comets.Load()
	for _, cm := range comets {
		_ = cm.conn.Load().cc.Close()
		cm.cancel(errPoolShutdown)
	}
	p.stop(errPoolShutdown)
	p.comets.Store(&map[string]*poolComet{})
	p.m.comets.Set(0)
}

// poolWarnLimiter rate-limits one kind of warning about one comet: at
// most one line per poolWarnEvery, carrying how many events it stands for.
type poolWarnLimiter struct {
	mu    sync.Mutex
	last  time.Time // of the last line
	count int       // events since the last line
}

// warn logs msg for the failure err of c unless a line was logged less
// than poolWarnEvery ago; the next line's count includes the events not
// logged.
func (w *poolWarnLimiter) warn(log *slog.Logger, msg string, c *call, err error) {
	now := time.Now()
	w.mu.Lock()
	w.count++
	if !w.last.IsZero() && now.Sub(w.last) < poolWarnEvery {
		w.mu.Unlock()
		return
	}
	n := w.count
	w.count = 0
	w.last = now
	w.mu.Unlock()
	log.Warn(msg, "count", n, "method", c.method(), "code", status.Code(err).String(), "err", err)
}
