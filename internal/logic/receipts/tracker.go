package receipts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logging"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/ratelog"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrInvalidArgument is wrapped by the errors of calls with a malformed
// msg id or target; nothing was recorded.
var ErrInvalidArgument = errors.New("receipts: invalid argument")

// Target prefixes: a push's targets are "user:<mid>" and "key:<key>".
const (
	UserTarget = "user:"
	KeyTarget  = "key:"
)

// Status is one target's delivery status of a push.
type Status struct {
	Target string
	// Status is "pending", "deferred", "delivered" or "expired" (a pending
	// or deferred target past its deadline is expired, swept or not).
	Status string
	// At is when the target got its status: the push (pending, and
	// deferred at the push), job's report (deferred later), the ack
	// (delivered) or the deadline (expired).
	At time.Time
}

// Tracker records delivery receipts in Redis (dao's rcpt_ keys), sweeps
// the expired ones and feeds the webhook. It is safe for concurrent use;
// its goroutines run between Start and Close.
type Tracker struct {
	cfg   Config
	store *dao.Redis
	log   *slog.Logger
	m     *metrics
	hook  *webhook // nil without a webhook url
	warns *ratelog.Limiter

	// now is the clock (tests move it); ttl is how long a target stays
	// pending, keep how long a record lives.
	now       func() time.Time
	ttl, keep time.Duration

	mu      sync.Mutex // guards started, closed and cancel
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the sweeper and the webhook sender
}

// New validates cfg and returns a tracker on store; it starts nothing
// (Start). A nil logger discards; the metrics go to reg.
func New(cfg Config, store *dao.Redis, reg prometheus.Registerer, logger *slog.Logger) (*Tracker, error) {
	var p conf.Problems
	cfg.Validate(&p)
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("receipts: config: %w", err)
	}
	if store == nil {
		return nil, errors.New("receipts: no Redis")
	}
	t := &Tracker{
		cfg:   cfg,
		store: store,
		log:   logging.OrDiscard(logger),
		warns: ratelog.New(1, time.Minute),
		now:   time.Now,
		ttl:   cfg.TTL.D(),
		keep:  2 * cfg.TTL.D(),
	}
	var err error
	if cfg.Webhook.URL != "" {
		if t.hook, err = newWebhook(cfg.Webhook, t.log); err != nil {
			return nil, err
		}
	}
	if t.m, err = newMetrics(reg, t.queueLen); err != nil {
		return nil, err
	}
	if t.hook != nil {
		t.hook.m = t.m
	}
	return t, nil
}

func (t *Tracker) queueLen() float64 {
	if t.hook == nil {
		return 0
	}
	return float64(len(t.hook.queue))
}

// Start starts the sweeper and the webhook sender. It does nothing after
// Close or a first Start.
func (t *Tracker) Start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started || t.closed {
		return
	}
	t.started = true
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	t.wg.Go(func() { t.sweepLoop(ctx) })
	if t.hook != nil {
		t.wg.Go(t.hook.run)
	}
	t.log.Info("receipts: started", "ttl", t.ttl, "webhook", t.hook != nil)
}

// Close stops the sweeper, sends the webhook events still queued (one
// attempt per batch) until ctx ends or a POST fails, and waits for both
// goroutines; events left then are counted failed. It is idempotent; it returns ctx's error when
// ctx ended first.
func (t *Tracker) Close(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	started, cancel := t.started, t.cancel
	t.mu.Unlock()
	if !started {
		if t.hook != nil {
			t.hook.abortCancel()
		}
		return nil
	}
	cancel()
	var err error
	if t.hook != nil {
		err = t.hook.close(ctx)
	}
	t.wg.Wait()
	return err
}

// Pending records that push msgID (32 hex digits) awaits an ack from each
// of targets ("user:<mid>" with mid > 0, or "key:<key>" with a key passing
// protocol.CheckKey), until the receipts' ttl. Repeated targets count
// once; beyond max_targets they are not recorded (counted untracked). No
// target: nothing to do.
func (t *Tracker) Pending(ctx context.Context, msgID string, targets []string) error {
	return t.Record(ctx, msgID, targets, nil)
}

// Record is Pending for the targets of live, and records those of
// deferred as deferred: targets that had no connection when the push was
// accepted, so the push waits in their stream for their client's next
// connect. Both await an ack, and expire, alike. max_targets bounds them
// together, live first.
func (t *Tracker) Record(ctx context.Context, msgID string, live, deferred []string) error {
	if len(live)+len(deferred) == 0 {
		return nil
	}
	id, err := checkMsgID(msgID)
	if err != nil {
		return err
	}
	for _, list := range [][]string{live, deferred} {
		for _, tg := range list {
			if err := checkTarget(tg); err != nil {
				return err
			}
		}
	}
	if len(live) > 1 {
		live = unique(live)
	}
	if len(deferred) > 1 {
		deferred = unique(deferred)
	}
	if n := len(live) - t.cfg.MaxTargets; n > 0 {
		t.m.untracked.Add(float64(n))
		live = live[:t.cfg.MaxTargets]
	}
	if n := len(live) + len(deferred) - t.cfg.MaxTargets; n > 0 {
		t.m.untracked.Add(float64(n))
		deferred = deferred[:len(deferred)-n]
	}
	now := t.now()
	if err := t.store.AddReceipts(ctx, id, live, deferred, now, now.Add(t.ttl), t.keep); err != nil {
		return fmt.Errorf("receipts: pending: %w", err)
	}
	t.m.pending.Add(float64(len(live)))
	t.m.deferred.Add(float64(len(deferred)))
	return nil
}

// Acked records acks of reliable connections: the connection's user
// target turns delivered when the push targeted it, else its key target,
// if that target is still pending. Acks of pushes without a record
// (untracked, unknown, or past their keep time), of targets the push did
// not have, and repeated or late acks change nothing and are counted. An
// ack with a malformed msg id or key fails the call (ErrInvalidArgument)
// and nothing is recorded; the error otherwise is Redis's.
func (t *Tracker) Acked(ctx context.Context, acks []*logicpb.Ack) error {
	if len(acks) == 0 {
		return nil
	}
	batch, err := receiptAcks(acks)
	if err != nil {
		return err
	}
	now := t.now()
	out, err := t.store.AckReceipts(ctx, batch, now)
	if err != nil {
		return fmt.Errorf("receipts: acked: %w", err)
	}
	at := now.UnixMilli()
	for i, o := range out {
		if int(o.Result) < len(t.m.ackBy) {
			t.m.ackBy[o.Result].Inc()
		}
		if o.Result != dao.AckDelivered {
			continue
		}
		t.m.delivered.Inc()
		if t.hook != nil {
			t.hook.enqueue(Event{MsgID: batch[i].MsgID, Target: o.Target, Status: dao.ReceiptDelivered, At: at})
		}
	}
	return nil
}

// Deferred records that job could not deliver pushes to their targets'
// comets while each target has the push in its stream: the target of
// each of defers (chosen as Acked chooses it: the user target when the
// push targeted it, else the key target) turns deferred if it is still
// pending, keeping its deadline. Delivered, expired and deferred targets,
// pushes without a record and targets the push did not have change
// nothing; each outcome is counted. A malformed msg id or key fails the
// call (ErrInvalidArgument) and nothing is recorded; the error otherwise
// is Redis's. No webhook event: the webhook reports deliveries and
// expiries only.
func (t *Tracker) Deferred(ctx context.Context, defers []*logicpb.Ack) error {
	if len(defers) == 0 {
		return nil
	}
	batch, err := receiptAcks(defers)
	if err != nil {
		return err
	}
	out, err := t.store.DeferReceipts(ctx, batch, t.now())
	if err != nil {
		return fmt.Errorf("receipts: deferred: %w", err)
	}
	for _, o := range out {
		if int(o.Result) < len(t.m.deferBy) {
			t.m.deferBy[o.Result].Inc()
		}
	}
	return nil
}

// receiptAcks checks acks (or deferrals) and names their targets: the
// user target ("user:<mid>") when mid > 0, and the key target.
func receiptAcks(acks []*logicpb.Ack) ([]dao.ReceiptAck, error) {
	batch := make([]dao.ReceiptAck, len(acks))
	for i, a := range acks {
		id, err := checkMsgID(a.GetMsgId())
		if err != nil {
			return nil, fmt.Errorf("acks[%d]: %w", i, err)
		}
		if err := protocol.CheckKey(a.GetKey()); err != nil {
			return nil, fmt.Errorf("%w: acks[%d]: key: %w", ErrInvalidArgument, i, err)
		}
		batch[i] = dao.ReceiptAck{MsgID: id, KeyTarget: KeyTarget + a.GetKey()}
		if a.GetMid() > 0 {
			batch[i].UserTarget = UserTarget + strconv.FormatInt(a.GetMid(), 10)
		}
	}
	return batch, nil
}

// Status returns the targets of push msgID with their status, sorted by
// target; found is false when there is no record (unknown, not tracked,
// or past its keep time). A pending target past its deadline is answered
// expired.
func (t *Tracker) Status(ctx context.Context, msgID string) (targets []Status, found bool, err error) {
	id, err := checkMsgID(msgID)
	if err != nil {
		return nil, false, err
	}
	rs, err := t.store.Receipts(ctx, id)
	if err != nil {
		return nil, false, fmt.Errorf("receipts: status: %w", err)
	}
	if len(rs) == 0 {
		return nil, false, nil
	}
	now := t.now()
	out := make([]Status, len(rs))
	for i, r := range rs {
		out[i] = Status{Target: r.Target, Status: r.Status, At: r.At}
		if (r.Status == dao.ReceiptPending || r.Status == dao.ReceiptDeferred) && !r.Deadline.After(now) {
			out[i].Status, out[i].At = dao.ReceiptExpired, r.Deadline
		}
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Target, b.Target) })
	return out, true, nil
}

// sweepLoop sweeps every sweep_interval until ctx ends.
func (t *Tracker) sweepLoop(ctx context.Context) {
	tick := time.NewTicker(t.cfg.SweepInterval.D())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := t.sweep(ctx); err != nil && ctx.Err() == nil {
			t.m.sweepErrors.Inc()
			t.warns.Fail(t.log, "receipts: sweep failed", "err", err)
		} else if err == nil {
			t.warns.Recover(t.log, "receipts: sweep failed", "receipts: sweep works again")
		}
	}
}

// sweep turns the pending targets of at most sweep_batch pushes past their
// deadline into expired, and returns how many targets it expired.
func (t *Tracker) sweep(ctx context.Context) (int, error) {
	now := t.now()
	ids, err := t.store.DueReceipts(ctx, now, t.cfg.SweepBatch)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	expired, err := t.store.ExpireReceipts(ctx, ids, now)
	t.m.expired.Add(float64(len(expired)))
	if t.hook != nil {
		for _, e := range expired {
			t.hook.enqueue(Event{MsgID: e.MsgID, Target: e.Target, Status: dao.ReceiptExpired, At: e.At.UnixMilli()})
		}
	}
	return len(expired), err
}

// checkMsgID returns id in lowercase, or an error unless it is 32 hex
// digits.
func checkMsgID(id string) (string, error) {
	if _, ok := protocol.ParseMsgID(id); !ok {
		return "", fmt.Errorf("%w: msg id %s is not 32 hex digits", ErrInvalidArgument, quote(id))
	}
	return strings.ToLower(id), nil
}

// checkTarget checks a target's shape: "user:<mid>" (mid > 0, decimal) or
// "key:<key>" (protocol.CheckKey).
func checkTarget(tg string) error {
	if mid, ok := strings.CutPrefix(tg, UserTarget); ok {
		if n, err := strconv.ParseInt(mid, 10, 64); err == nil && n > 0 && strconv.FormatInt(n, 10) == mid {
			return nil
		}
		return fmt.Errorf("%w: target %s: want user:<mid> with a mid > 0", ErrInvalidArgument, quote(tg))
	}
	if key, ok := strings.CutPrefix(tg, KeyTarget); ok {
		if err := protocol.CheckKey(key); err != nil {
			return fmt.Errorf("%w: target key: %w", ErrInvalidArgument, err)
		}
		return nil
	}
	return fmt.Errorf("%w: target %s: want user:<mid> or key:<key>", ErrInvalidArgument, quote(tg))
}

// quote quotes s for an error message, cut to 64 bytes.
func quote(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "..."
	}
	return strconv.Quote(s)
}

// unique returns s without repeats, keeping the first of each in order.
func unique(s []string) []string {
	seen := make(map[string]struct{}, len(s))
	out := make([]string, 0, len(s))
	for _, v := range s {
		if _, dup := seen[v]; !dup {
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}
