package receipts

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/testkit"
)

// msgID returns a push id (32 lowercase hex digits).
func msgID() string { return dao.NewMsgID() }

// status reads msgID's status and wants a record.
func (e *env) status(id string) []Status {
	e.t.Helper()
	st, found, err := e.tr.Status(context.Background(), id)
	if err != nil || !found {
		e.t.Fatalf("Status(%s) = %v, found %v, %v", id, st, found, err)
	}
	return st
}

// wantStatus compares a status with "target=status@at" strings, at in ms
// relative to base.
func wantStatus(t *testing.T, got []Status, base time.Time, want ...string) {
	t.Helper()
	var g []string
	for _, s := range got {
		g = append(g, fmt.Sprintf("%s=%s@%d", s.Target, s.Status, s.At.Sub(base).Milliseconds()))
	}
	if !slices.Equal(g, want) {
		t.Fatalf("status = %q, want %q", g, want)
	}
}

func (e *env) pending(id string, targets ...string) {
	e.t.Helper()
	if err := e.tr.Pending(context.Background(), id, targets); err != nil {
		e.t.Fatalf("Pending(%s, %q): %v", id, targets, err)
	}
}

func (e *env) acked(acks ...*logicpb.Ack) {
	e.t.Helper()
	if err := e.tr.Acked(context.Background(), acks); err != nil {
		e.t.Fatalf("Acked: %v", err)
	}
}

func TestPendingThenDelivered(t *testing.T) {
	e := newEnv(t, false, nil)
	t0 := e.clock.now()
	id := msgID()
	e.pending(id, "user:1001", "key:k-2", "user:1001")
	wantStatus(t, e.status(id), t0, "key:k-2=pending@0", "user:1001=pending@0")

	// An ack of user 1001's connection (any key) delivers user:1001.
	e.clock.add(1500 * time.Millisecond)
	e.acked(&logicpb.Ack{MsgId: id, Mid: 1001, Key: "k-other"})
	// An anonymous connection with key k-2 delivers key:k-2.
	e.clock.add(time.Second)
	e.acked(&logicpb.Ack{MsgId: strings.ToUpper(id), Key: "k-2"})
	wantStatus(t, e.status(id), t0, "key:k-2=delivered@2500", "user:1001=delivered@1500")

	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{name: "goim_logic_receipts_total", label: "status", value: "pending", want: 2},
		{name: "goim_logic_receipts_total", label: "status", value: "delivered", want: 2},
		{name: "goim_logic_receipt_acks_total", label: "result", value: "delivered", want: 2},
	} {
		if got := e.metric(c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
	// The record lives ttl past the deadline.
	ms, err := redis.Int64(e.raw.Do("PTTL", e.prefix+"rcpt_"+id))
	if err != nil || ms <= int64(24*time.Hour/time.Millisecond) || ms > int64(48*time.Hour/time.Millisecond) {
		t.Fatalf("PTTL rcpt_ = %d, %v; want in (24h, 48h]", ms, err)
	}
}

// TestDeferred: a target recorded as deferred (no connection when the
// push was accepted) is answered deferred, turns delivered by an ack and
// expired past its deadline, like a pending one; max_targets bounds the
// live and deferred targets together.
func TestDeferred(t *testing.T) {
	e := newEnv(t, false, nil)
	t0 := e.clock.now()
	id := msgID()
	if err := e.tr.Record(context.Background(), id, []string{"user:1"}, []string{"user:2", "key:k3", "user:2"}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.status(id), t0, "key:k3=deferred@0", "user:1=pending@0", "user:2=deferred@0")
	if got := e.metric("goim_logic_receipts_total", "status", "deferred"); got != 2 {
		t.Errorf("deferred receipts = %v, want 2", got)
	}
	e.clock.add(time.Second)
	e.acked(&logicpb.Ack{MsgId: id, Mid: 2, Key: "k2"})
	wantStatus(t, e.status(id), t0, "key:k3=deferred@0", "user:1=pending@0", "user:2=delivered@1000")
	e.clock.add(24 * time.Hour)
	wantStatus(t, e.status(id), t0, "key:k3=expired@86400000", "user:1=expired@86400000", "user:2=delivered@1000")

	small := newEnv(t, false, func(c *Config) { c.MaxTargets = 2 })
	id = msgID()
	if err := small.tr.Record(context.Background(), id, []string{"user:1"}, []string{"user:2", "user:3"}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, small.status(id), small.clock.now(), "user:1=pending@0", "user:2=deferred@0")
	if got := small.metric("goim_logic_receipts_total", "status", "untracked"); got != 1 {
		t.Errorf("untracked = %v, want 1", got)
	}
}

// TestAckPrefersUser: a push to both a user and one of its keys is
// delivered to the user by an ack of that user's connection; the key
// target stays pending until an ack names only the key.
func TestAckPrefersUser(t *testing.T) {
	e := newEnv(t, false, nil)
	t0 := e.clock.now()
	id := msgID()
	e.pending(id, "user:7", "key:k7")
	e.acked(&logicpb.Ack{MsgId: id, Mid: 7, Key: "k7"})
	wantStatus(t, e.status(id), t0, "key:k7=pending@0", "user:7=delivered@0")
	e.acked(&logicpb.Ack{MsgId: id, Mid: 8, Key: "k7"})
	wantStatus(t, e.status(id), t0, "key:k7=delivered@0", "user:7=delivered@0")
}

// TestDeferredByJob: job's deferral turns a pending target deferred at
// the time of the report, picking the user target over the key target as
// an ack does; it keeps the deadline (the target expires at it), leaves
// delivered and expired targets alone, ignores unknown pushes and targets,
// and counts each outcome. An ack still delivers a deferred target.
func TestDeferredByJob(t *testing.T) {
	e := newEnv(t, false, nil)
	ctx := context.Background()
	t0 := e.clock.now()
	id := msgID()
	e.pending(id, "user:7", "key:k7", "key:k8", "key:k9")
	e.clock.add(time.Second)
	e.acked(&logicpb.Ack{MsgId: id, Key: "k8"})
	e.clock.add(time.Second)
	if err := e.tr.Deferred(ctx, []*logicpb.Ack{
		{MsgId: id, Mid: 7, Key: "k7"},          // user:7
		{MsgId: strings.ToUpper(id), Key: "k9"}, // key:k9
		{MsgId: id, Key: "k8"},                  // delivered: unchanged
		{MsgId: id, Mid: 7, Key: "k7"},          // deferred already: unchanged
		{MsgId: id, Mid: 70, Key: "k70"},        // not a target
		{MsgId: msgID(), Mid: 7, Key: "k7"},     // unknown push
	}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.status(id), t0, "key:k7=pending@0", "key:k8=delivered@1000", "key:k9=deferred@2000", "user:7=deferred@2000")
	for result, want := range map[string]float64{"deferred": 2, "unchanged": 2, "not_target": 1, "unknown": 1} {
		if got := e.metric("goim_logic_receipt_deferrals_total", "result", result); got != want {
			t.Errorf("deferrals{result=%s} = %v, want %v", result, got, want)
		}
	}
	e.clock.add(time.Second)
	e.acked(&logicpb.Ack{MsgId: id, Mid: 7, Key: "k7"})
	wantStatus(t, e.status(id), t0, "key:k7=pending@0", "key:k8=delivered@1000", "key:k9=deferred@2000", "user:7=delivered@3000")

	// The deadline stays the push's: past it the deferred target is
	// expired (answered so, and swept), and a deferral changes nothing.
	e.clock.add(24*time.Hour - 3*time.Second)
	wantStatus(t, e.status(id), t0, "key:k7=expired@86400000", "key:k8=delivered@1000", "key:k9=expired@86400000", "user:7=delivered@3000")
	if n, err := e.tr.sweep(ctx); err != nil || n != 2 {
		t.Fatalf("sweep = %d, %v; want 2", n, err)
	}
	if err := e.tr.Deferred(ctx, []*logicpb.Ack{{MsgId: id, Key: "k7"}}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.status(id), t0, "key:k7=expired@86400000", "key:k8=delivered@1000", "key:k9=expired@86400000", "user:7=delivered@3000")

	// A malformed deferral records nothing.
	other := msgID()
	e.pending(other, "key:k1")
	for _, bad := range [][]*logicpb.Ack{
		{{MsgId: other, Key: "k1"}, {MsgId: "x", Key: "k1"}},
		{{MsgId: other, Key: "k1"}, {MsgId: other, Key: "a b"}},
	} {
		if err := e.tr.Deferred(ctx, bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Deferred(%v) = %v, want ErrInvalidArgument", bad, err)
		}
	}
	wantStatus(t, e.status(other), e.clock.now(), "key:k1=pending@0")
}

// TestAckIgnored: acks that change nothing are counted, not errors.
func TestAckIgnored(t *testing.T) {
	e := newEnv(t, false, nil)
	t0 := e.clock.now()
	id := msgID()
	e.pending(id, "user:1")
	e.acked(
		&logicpb.Ack{MsgId: msgID(), Mid: 1, Key: "k1"}, // unknown push
		&logicpb.Ack{MsgId: id, Mid: 2, Key: "k2"},      // not a target
		&logicpb.Ack{MsgId: id, Mid: 1, Key: "k1"},      // delivered
		&logicpb.Ack{MsgId: id, Mid: 1, Key: "k1"},      // duplicate
	)
	wantStatus(t, e.status(id), t0, "user:1=delivered@0")
	for result, want := range map[string]float64{"unknown": 1, "not_target": 1, "delivered": 1, "duplicate": 1, "late": 0} {
		if got := e.metric("goim_logic_receipt_acks_total", "result", result); got != want {
			t.Errorf("acks{result=%s} = %v, want %v", result, got, want)
		}
	}
	if _, found, err := e.tr.Status(context.Background(), msgID()); found || err != nil {
		t.Fatalf("Status of an unknown push: found %v, %v", found, err)
	}
}

func TestInvalidArguments(t *testing.T) {
	e := newEnv(t, false, nil)
	ctx := context.Background()
	id := msgID()
	for _, c := range []struct {
		name string
		err  error
	}{
		{name: "short id", err: e.tr.Pending(ctx, id[:31], []string{"user:1"})},
		{name: "non-hex id", err: e.tr.Pending(ctx, strings.Repeat("g", 32), []string{"user:1"})},
		{name: "no prefix", err: e.tr.Pending(ctx, id, []string{"1001"})},
		{name: "mid 0", err: e.tr.Pending(ctx, id, []string{"user:0"})},
		{name: "mid with sign", err: e.tr.Pending(ctx, id, []string{"user:+5"})},
		{name: "empty key", err: e.tr.Pending(ctx, id, []string{"key:"})},
		{name: "bad key", err: e.tr.Pending(ctx, id, []string{"key:a b"})},
		{name: "ack id", err: e.tr.Acked(ctx, []*logicpb.Ack{{MsgId: "x", Key: "k"}})},
		{name: "ack key", err: e.tr.Acked(ctx, []*logicpb.Ack{{MsgId: id, Key: ""}})},
		{name: "status id", err: func() error { _, _, err := e.tr.Status(ctx, "nope"); return err }()},
	} {
		if !errors.Is(c.err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", c.name, c.err)
		}
	}
	if _, found, _ := e.tr.Status(ctx, id); found {
		t.Fatal("a refused Pending recorded something")
	}
	if err := e.tr.Pending(ctx, "not even checked", nil); err != nil {
		t.Fatalf("Pending without targets: %v", err)
	}
}

// TestMaxTargets: targets beyond max_targets are not tracked, and counted.
func TestMaxTargets(t *testing.T) {
	e := newEnv(t, false, func(c *Config) { c.MaxTargets = 2 })
	id := msgID()
	e.pending(id, "user:1", "user:2", "user:3", "user:1")
	wantStatus(t, e.status(id), e.clock.now(), "user:1=pending@0", "user:2=pending@0")
	if got := e.metric("goim_logic_receipts_total", "status", "untracked"); got != 1 {
		t.Fatalf("untracked = %v, want 1", got)
	}
}

// TestExpiry: a pending target past its deadline reads expired at once,
// the sweep stores it so (once), and a late ack changes nothing. The
// clock is moved, not waited for.
func TestExpiry(t *testing.T) {
	e := newEnv(t, false, nil)
	ctx := context.Background()
	ttl := e.tr.ttl
	t0 := e.clock.now()
	a, b := msgID(), msgID()
	e.pending(a, "user:1", "key:ka")
	e.clock.add(time.Hour)
	e.pending(b, "user:2")
	e.acked(&logicpb.Ack{MsgId: a, Mid: 1, Key: "ka"})

	e.clock.add(ttl - time.Hour - time.Millisecond)
	wantStatus(t, e.status(a), t0, "key:ka=pending@0", "user:1=delivered@3600000")
	e.clock.add(time.Millisecond) // a's deadline
	deadline := ttl.Milliseconds()
	wantStatus(t, e.status(a), t0, fmt.Sprintf("key:ka=expired@%d", deadline), "user:1=delivered@3600000")

	n, err := e.tr.sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v; want 1 expired", n, err)
	}
	if v, _ := redis.String(e.raw.Do("HGET", e.prefix+"rcpt_"+a, "key:ka")); v != fmt.Sprintf("e %d", t0.UnixMilli()+deadline) {
		t.Fatalf("stored key:ka = %q, want expired at the deadline", v)
	}
	if n, err := e.tr.sweep(ctx); err != nil || n != 0 {
		t.Fatalf("second sweep = %d, %v; want nothing", n, err)
	}
	// b is not due yet: it stays in the index.
	if ids, _ := redis.Strings(e.raw.Do("ZRANGE", e.prefix+"rcpt_due", 0, -1)); !slices.Equal(ids, []string{b}) {
		t.Fatalf("index = %q, want only %s", ids, b)
	}
	e.acked(&logicpb.Ack{MsgId: a, Key: "ka"})
	wantStatus(t, e.status(a), t0, fmt.Sprintf("key:ka=expired@%d", deadline), "user:1=delivered@3600000")
	if got := e.metric("goim_logic_receipt_acks_total", "result", "late"); got != 1 {
		t.Fatalf("late acks = %v, want 1", got)
	}
	e.clock.add(time.Hour)
	if n, err := e.tr.sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep of b = %d, %v; want 1", n, err)
	}
	if got := e.metric("goim_logic_receipts_total", "status", "expired"); got != 2 {
		t.Fatalf("expired = %v, want 2", got)
	}
	if n, _ := redis.Int(e.raw.Do("ZCARD", e.prefix+"rcpt_due")); n != 0 {
		t.Fatalf("index holds %d pushes after every target expired", n)
	}
}

// TestSweepBatch: one sweep handles at most sweep_batch pushes.
func TestSweepBatch(t *testing.T) {
	e := newEnv(t, false, func(c *Config) { c.SweepBatch = 2 })
	for i := range 5 {
		e.pending(msgID(), fmt.Sprintf("user:%d", i+1))
	}
	e.clock.add(e.tr.ttl)
	for i, want := range []int{2, 2, 1, 0} {
		if n, err := e.tr.sweep(context.Background()); err != nil || n != want {
			t.Fatalf("sweep %d = %d, %v; want %d", i, n, err, want)
		}
	}
}

// TestSweeper: the started tracker's sweeper expires what is due.
func TestSweeper(t *testing.T) {
	e := newEnv(t, true, func(c *Config) { c.SweepInterval = conf.Duration(10 * time.Millisecond) })
	id := msgID()
	e.pending(id, "user:1")
	e.clock.add(e.tr.ttl)
	testkit.WaitFor(t, 5*time.Second, func() error {
		v, err := redis.String(e.raw.Do("HGET", e.prefix+"rcpt_"+id, "user:1"))
		if err != nil || !strings.HasPrefix(v, "e ") {
			return fmt.Errorf("user:1 stored as %q, %v", v, err)
		}
		return nil
	})
}
