package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/logicclient"
	"github.com/goim/goim/internal/ratelog"
	"github.com/goim/goim/internal/rpcauth"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
)

// The reports of deferred deliveries: a bounded queue of targets, sent by
// one goroutine in batches.
const (
	// deferQueue bounds the targets waiting to be reported (40 bytes
	// each in the queue, the key and msg id shared with the push); beyond
	// it they are dropped and counted.
	deferQueue = 65536
	// deferBatch is the most targets of one Defer call: logic's bound
	// (MaxAcks).
	deferBatch = 4096
	// deferFlush is the longest a target waits for its batch to fill.
	deferFlush = 100 * time.Millisecond
	// deferRetryDelay spaces the one retry of a failed call.
	deferRetryDelay = 250 * time.Millisecond
)

// deferral is one target of a push that job gave up delivering while the
// target has the push in its stream: the push's id, and the target's
// member id (0 for a keys push's target) and key, as logic's Defer names
// it.
type deferral struct {
	msgID string
	mid   int64
	key   string
}

// reporter tells logic which targets' deliveries job gave up on while
// their push waits in a stream, so that their receipts turn "deferred"
// (logic's Defer). It is best effort and never holds a push back: the
// targets go on a bounded queue that one goroutine sends in batches of
// at most deferBatch, every deferFlush or when a batch is full, each call
// retried once; what overflows, and what logic does not take, is counted
// and dropped.
type reporter struct {
	client  logicpb.LogicClient
	conn    *grpc.ClientConn
	res     *manual.Resolver // fed from discovery when no addresses are set
	follow  bool             // logic comes from discovery
	timeout time.Duration
	m       *metrics
	log     *slog.Logger
	warns   *ratelog.Limiter

	queue   chan deferral
	started atomic.Bool   // run was started
	stopped atomic.Bool   // set by stop: add drops
	stopc   chan struct{} // closed by stop: send what is queued and end
	done    chan struct{} // closed when run ends
	// ctx bounds every call; cancelled when stop's deadline passes.
	ctx    context.Context
	cancel context.CancelFunc

	oldLogic sync.Once // logs once that logic has no Defer
}

// newReporter dials logic (without waiting for it); nil, nil when the
// link is off.
func newReporter(cfg LogicConfig, keys *rpcauth.Keys, m *metrics, log *slog.Logger) (*reporter, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	conn, res, err := logicclient.Dial(cfg.Addrs, "job", keys)
	if err != nil {
		return nil, err
	}
	r := &reporter{
		client:  logicpb.NewLogicClient(conn),
		conn:    conn,
		res:     res,
		follow:  len(cfg.Addrs) == 0,
		timeout: cfg.Timeout.D(),
		m:       m,
		log:     log,
		warns:   ratelog.New(1, time.Minute),
		queue:   make(chan deferral, deferQueue),
		stopc:   make(chan struct{}),
		done:    make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// pushTargets queues the targets of one failed PUSH call whose every key
// has the push in a stream (pos, aligned with keys): a key in its user
// stream is reported as its member (mids, aligned with keys; a key
// without a member id is left out), once per member of the call, a key in
// its key stream as the key. Without a msg id there is nothing to name.
// Never blocks.
func (r *reporter) pushTargets(id string, keys []string, mids []int64, pos []*protocol.Position) {
	if r == nil || id == "" {
		return
	}
	var seen map[int64]struct{} // members reported, when the call has several keys
	for i, k := range keys {
		if i >= len(pos) || protocol.CheckKey(k) != nil {
			continue
		}
		d := deferral{msgID: id, key: k}
		switch pos[i].GetStream() {
		case protocol.StreamUser:
			if i >= len(mids) || mids[i] <= 0 {
				continue
			}
			d.mid = mids[i]
			if len(keys) > 1 {
				if _, dup := seen[d.mid]; dup {
					continue
				}
				if seen == nil {
					seen = make(map[int64]struct{})
				}
				seen[d.mid] = struct{}{}
			}
		case protocol.StreamKey:
		default:
			continue
		}
		r.add(d)
	}
}

// add queues d, or drops it (counted) when the queue is full or the
// reporter is stopping.
func (r *reporter) add(d deferral) {
	if r.stopped.Load() {
		r.m.reportDropped.Inc()
		return
	}
	select {
	case r.queue <- d:
	default:
		r.m.reportDropped.Inc()
	}
}

// start starts the sender and, when logic's instances come from
// discovery (disc), their watch in wg, which ends with ctx.
func (r *reporter) start(ctx context.Context, wg *sync.WaitGroup, disc *discovery.Client) {
	if r == nil || !r.started.CompareAndSwap(false, true) {
		return
	}
	if r.follow && disc != nil {
		wg.Go(func() { logicclient.Follow(ctx, disc, r.res, r.log, "job") })
	}
	go r.run()
}

// run sends batches until stop, then what is queued.
func (r *reporter) run() {
	defer close(r.done)
	tick := time.NewTicker(deferFlush)
	defer tick.Stop()
	batch := make([]deferral, 0, deferBatch)
	for {
		select {
		case d := <-r.queue:
			batch = append(batch, d)
			if len(batch) < deferBatch {
				continue
			}
		case <-tick.C:
			if len(batch) == 0 {
				continue
			}
		case <-r.stopc:
			r.drain(batch)
			return
		}
		r.send(batch, true)
		batch = batch[:0]
	}
}

// drain sends batch and then whatever is queued, one attempt per call,
// until the queue is empty or stop's deadline passed (the rest dropped).
func (r *reporter) drain(batch []deferral) {
	for {
	fill:
		for len(batch) < deferBatch {
			select {
			case d := <-r.queue:
				batch = append(batch, d)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		if r.ctx.Err() != nil {
			r.m.reportDropped.Add(float64(len(batch) + len(r.queue)))
			return
		}
		r.send(batch, false)
		batch = batch[:0]
	}
}

// send calls logic's Defer with batch, once more after deferRetryDelay
// when retry is set and the failure may pass, and counts the outcome.
func (r *reporter) send(batch []deferral, retry bool) {
	req := &logicpb.DeferReq{Deferred: make([]*logicpb.Ack, len(batch))}
	for i, d := range batch {
		req.Deferred[i] = &logicpb.Ack{MsgId: d.msgID, Mid: d.mid, Key: d.key}
	}
	err := r.call(req)
	if err != nil && retry && transient(err) {
		t := time.NewTimer(deferRetryDelay)
		select {
		case <-t.C:
			err = r.call(req)
		case <-r.stopc:
			t.Stop()
			err = r.call(req)
		}
	}
	if err == nil {
		r.m.reportSent.Add(float64(len(batch)))
		r.warns.Recover(r.log, "job: reporting deferred deliveries to logic failed", "job: reporting deferred deliveries to logic works again")
		return
	}
	r.m.reportError.Add(float64(len(batch)))
	if status.Code(err) == codes.Unimplemented {
		r.oldLogic.Do(func() {
			r.log.Warn("job: logic has no Defer call (an older logic): receipts of pushes job could not deliver stay pending")
		})
		return
	}
	r.warns.Fail(r.log, "job: reporting deferred deliveries to logic failed; their receipts stay pending", "targets", len(batch), "err", err)
}

// call makes one Defer call within the timeout.
func (r *reporter) call(req *logicpb.DeferReq) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	if _, err := r.client.Defer(ctx, req); err != nil {
		return fmt.Errorf("defer %d targets: %w", len(req.Deferred), err)
	}
	return nil
}

// transient reports whether a failed call may succeed when made again.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.Unimplemented, codes.FailedPrecondition, codes.Canceled:
		return false
	}
	return true
}

// stop sends what is queued (targets added later are dropped) until ctx
// ends, then closes the connection; it waits no longer than ctx.
func (r *reporter) stop(ctx context.Context) {
	if r == nil {
		return
	}
	if r.stopped.CompareAndSwap(false, true) {
		close(r.stopc)
	}
	if !r.started.Load() {
		r.cancel()
		_ = r.conn.Close()
		return
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		r.cancel() // the call in flight ends, the rest is dropped
		<-r.done
	}
	r.cancel()
	_ = r.conn.Close()
}
