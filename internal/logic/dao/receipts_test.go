package dao_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/goim/goim/internal/logic/dao"
)

// receiptStrings renders receipts as sorted "target=status@at" strings,
// at in ms relative to base.
func receiptStrings(rs []dao.Receipt, base time.Time) []string {
	var out []string
	for _, r := range rs {
		s := fmt.Sprintf("%s=%s@%d", r.Target, r.Status, r.At.Sub(base).Milliseconds())
		if !r.Deadline.IsZero() {
			s += fmt.Sprintf("..%d", r.Deadline.Sub(base).Milliseconds())
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// TestReceipts: the receipts' operations, in single and (under
// TestRedisCluster) cluster mode: record, ack, sweep, read.
func TestReceipts(t *testing.T) {
	r, _ := newTestRedis(t, nil)
	ctx := context.Background()
	t0 := time.UnixMilli(time.Now().UnixMilli())
	ttl, keep := time.Hour, 2*time.Hour
	a, b := dao.NewMsgID(), dao.NewMsgID()
	if err := r.AddReceipts(ctx, a, []string{"user:1", "key:k1"}, []string{"key:k2"}, t0, t0.Add(ttl), keep); err != nil {
		t.Fatal(err)
	}
	if err := r.AddReceipts(ctx, b, []string{"user:2"}, nil, t0.Add(time.Minute), t0.Add(time.Minute+ttl), keep); err != nil {
		t.Fatal(err)
	}
	got, err := r.Receipts(ctx, a)
	if want := []string{"key:k1=pending@0..3600000", "key:k2=deferred@0..3600000", "user:1=pending@0..3600000"}; err != nil || !slices.Equal(receiptStrings(got, t0), want) {
		t.Fatalf("Receipts = %q, %v; want %q", receiptStrings(got, t0), err, want)
	}

	out, err := r.AckReceipts(ctx, []dao.ReceiptAck{
		{MsgID: a, UserTarget: "user:1", KeyTarget: "key:k1"}, // user:1 delivered
		{MsgID: a, UserTarget: "", KeyTarget: "key:k1"},       // key:k1 delivered
		{MsgID: a, UserTarget: "user:1", KeyTarget: "key:zz"}, // duplicate
		{MsgID: a, UserTarget: "user:9", KeyTarget: "key:zz"}, // not a target
		{MsgID: dao.NewMsgID(), KeyTarget: "key:k1"},          // unknown
	}, t0.Add(time.Second))
	want := []dao.AckOutcome{
		{Result: dao.AckDelivered, Target: "user:1"},
		{Result: dao.AckDelivered, Target: "key:k1"},
		{Result: dao.AckDuplicate, Target: "user:1"},
		{Result: dao.AckNotTarget},
		{Result: dao.AckUnknown},
	}
	if err != nil || !slices.Equal(out, want) {
		t.Fatalf("AckReceipts = %+v, %v; want %+v", out, err, want)
	}

	// A deferred target (no connection when the push was recorded) is
	// acked like a pending one.
	c := dao.NewMsgID()
	if err := r.AddReceipts(ctx, c, nil, []string{"user:3"}, t0, t0.Add(ttl), keep); err != nil {
		t.Fatal(err)
	}
	if out, err := r.AckReceipts(ctx, []dao.ReceiptAck{{MsgID: c, UserTarget: "user:3", KeyTarget: "key:k3"}}, t0.Add(2*time.Second)); err != nil || out[0] != (dao.AckOutcome{Result: dao.AckDelivered, Target: "user:3"}) {
		t.Fatalf("ack of a deferred target = %+v, %v", out, err)
	}
	if got, err := r.Receipts(ctx, c); err != nil || !slices.Equal(receiptStrings(got, t0), []string{"user:3=delivered@2000"}) {
		t.Fatalf("Receipts of c = %q, %v", receiptStrings(got, t0), err)
	}

	// Nothing is due before a's deadline; then a, not b.
	if ids, err := r.DueReceipts(ctx, t0.Add(ttl-time.Millisecond), 10); err != nil || len(ids) != 0 {
		t.Fatalf("DueReceipts before the deadline = %q, %v", ids, err)
	}
	ids, err := r.DueReceipts(ctx, t0.Add(ttl), 10)
	slices.Sort(ids)
	if wantIDs := slices.Sorted(slices.Values([]string{a, c})); err != nil || !slices.Equal(ids, wantIDs) {
		t.Fatalf("DueReceipts = %q, %v; want [%s]", ids, err, a)
	}
	// A late ack of a target past its deadline changes nothing.
	out, err = r.AckReceipts(ctx, []dao.ReceiptAck{{MsgID: a, KeyTarget: "key:k2"}}, t0.Add(ttl))
	if err != nil || out[0] != (dao.AckOutcome{Result: dao.AckLate, Target: "key:k2"}) {
		t.Fatalf("late ack = %+v, %v", out, err)
	}
	exp, err := r.ExpireReceipts(ctx, append(ids, b), t0.Add(ttl))
	if err != nil || len(exp) != 1 || exp[0] != (dao.ExpiredReceipt{MsgID: a, Target: "key:k2", At: t0.Add(ttl)}) {
		t.Fatalf("ExpireReceipts = %+v, %v", exp, err)
	}
	got, _ = r.Receipts(ctx, a)
	if want := []string{"key:k1=delivered@1000", "key:k2=expired@3600000", "user:1=delivered@1000"}; !slices.Equal(receiptStrings(got, t0), want) {
		t.Fatalf("after the sweep: %q, want %q", receiptStrings(got, t0), want)
	}
	// a left the index; b stays until its own deadline.
	if ids, err := r.DueReceipts(ctx, t0.Add(ttl+time.Minute-time.Millisecond), 10); err != nil || len(ids) != 0 {
		t.Fatalf("DueReceipts after the sweep = %q, %v", ids, err)
	}
	if ids, err := r.DueReceipts(ctx, t0.Add(ttl+time.Minute), 10); err != nil || !slices.Equal(ids, []string{b}) {
		t.Fatalf("DueReceipts of b = %q, %v", ids, err)
	}
	if rs, err := r.Receipts(ctx, dao.NewMsgID()); err != nil || len(rs) != 0 {
		t.Fatalf("Receipts of an unknown push = %v, %v", rs, err)
	}
	if err := r.AddReceipts(ctx, a, nil, nil, t0, t0, keep); !errors.Is(err, dao.ErrInvalidArgument) {
		t.Fatalf("AddReceipts without targets: %v", err)
	}
}

// TestDeferReceipts: a deferral turns a pending target deferred, keeping
// its deadline (and the sweep's index); it picks the user target over the
// key target as an ack does, and changes nothing else: a delivered,
// expired, already deferred or overdue target, a target the push did not
// have, a push without a record.
func TestDeferReceipts(t *testing.T) {
	r, _ := newTestRedis(t, nil)
	ctx := context.Background()
	t0 := time.UnixMilli(time.Now().UnixMilli())
	ttl, keep := time.Hour, 2*time.Hour
	a := dao.NewMsgID()
	if err := r.AddReceipts(ctx, a, []string{"user:1", "key:k1", "key:k2", "key:k3"}, []string{"key:k4"}, t0, t0.Add(ttl), keep); err != nil {
		t.Fatal(err)
	}
	if out, err := r.AckReceipts(ctx, []dao.ReceiptAck{{MsgID: a, KeyTarget: "key:k2"}}, t0.Add(time.Second)); err != nil || out[0].Result != dao.AckDelivered {
		t.Fatalf("ack = %+v, %v", out, err)
	}
	out, err := r.DeferReceipts(ctx, []dao.ReceiptAck{
		{MsgID: a, UserTarget: "user:1", KeyTarget: "key:k3"}, // user:1, not key:k3
		{MsgID: a, KeyTarget: "key:k1"},                       // deferred
		{MsgID: a, KeyTarget: "key:k2"},                       // delivered: unchanged
		{MsgID: a, KeyTarget: "key:k4"},                       // deferred already: unchanged
		{MsgID: a, KeyTarget: "key:k1"},                       // again: unchanged
		{MsgID: a, UserTarget: "user:9", KeyTarget: "key:zz"}, // not a target
		{MsgID: dao.NewMsgID(), KeyTarget: "key:k1"},          // unknown
	}, t0.Add(2*time.Second))
	want := []dao.DeferOutcome{
		{Result: dao.DeferDeferred, Target: "user:1"},
		{Result: dao.DeferDeferred, Target: "key:k1"},
		{Result: dao.DeferUnchanged, Target: "key:k2"},
		{Result: dao.DeferUnchanged, Target: "key:k4"},
		{Result: dao.DeferUnchanged, Target: "key:k1"},
		{Result: dao.DeferNotTarget},
		{Result: dao.DeferUnknown},
	}
	if err != nil || !slices.Equal(out, want) {
		t.Fatalf("DeferReceipts = %+v, %v; want %+v", out, err, want)
	}
	got, err := r.Receipts(ctx, a)
	wantRs := []string{"key:k1=deferred@2000..3600000", "key:k2=delivered@1000", "key:k3=pending@0..3600000",
		"key:k4=deferred@0..3600000", "user:1=deferred@2000..3600000"}
	if err != nil || !slices.Equal(receiptStrings(got, t0), wantRs) {
		t.Fatalf("Receipts = %q, %v; want %q", receiptStrings(got, t0), err, wantRs)
	}

	// The deadline stays: the sweep expires the deferred targets at it,
	// and an overdue pending target is not deferred.
	if ids, err := r.DueReceipts(ctx, t0.Add(ttl), 10); err != nil || !slices.Equal(ids, []string{a}) {
		t.Fatalf("DueReceipts at the deadline = %v, %v", ids, err)
	}
	if out, err := r.DeferReceipts(ctx, []dao.ReceiptAck{{MsgID: a, KeyTarget: "key:k3"}}, t0.Add(ttl)); err != nil || out[0] != (dao.DeferOutcome{Result: dao.DeferUnchanged, Target: "key:k3"}) {
		t.Fatalf("deferral past the deadline = %+v, %v", out, err)
	}
	expired, err := r.ExpireReceipts(ctx, []string{a}, t0.Add(ttl))
	if err != nil || len(expired) != 4 {
		t.Fatalf("ExpireReceipts = %+v, %v; want 4 targets", expired, err)
	}
	if out, err := r.DeferReceipts(ctx, []dao.ReceiptAck{{MsgID: a, UserTarget: "user:1", KeyTarget: "key:k1"}}, t0.Add(ttl+time.Second)); err != nil || out[0] != (dao.DeferOutcome{Result: dao.DeferUnchanged, Target: "user:1"}) {
		t.Fatalf("deferral of an expired target = %+v, %v", out, err)
	}
	if out, err := r.DeferReceipts(ctx, nil, t0); err != nil || len(out) != 0 {
		t.Fatalf("no deferral = %+v, %v", out, err)
	}
}
