package dao_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/testkit"
)

// TestAddSessionConcurrent: 500 concurrent AddSession calls (coalesced into
// shared pipelines) each store their own routing, and a session whose mid_
// key holds the wrong type fails alone, not the others sharing its
// pipeline.
func TestAddSessionConcurrent(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	ctx := context.Background()
	const bad = 13
	raw.must("SET", raw.key("mid_"+strconv.Itoa(bad)), "not a hash")
	var wg sync.WaitGroup
	errs := make([]error, 500)
	for i := range errs {
		wg.Go(func() {
			errs[i] = r.AddSession(ctx, dao.Session{Mid: int64(i + 1), Key: "k" + strconv.Itoa(i+1), Server: "comet-" + strconv.Itoa(i%4), ConnID: uint64(i + 1)})
		})
	}
	wg.Wait()
	for i, err := range errs {
		mid := i + 1
		if mid == bad {
			if !errors.Is(err, dao.ErrRedis) {
				t.Errorf("mid %d (wrong type): %v, want ErrRedis", mid, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("mid %d: %v", mid, err)
		}
		want := "comet-" + strconv.Itoa(i%4)
		if got, _ := raw.get("key_k" + strconv.Itoa(mid)); got != want {
			t.Fatalf("key_k%d = %q, want %q", mid, got, want)
		}
		if got := raw.hgetall("mid_" + strconv.Itoa(mid)); got["k"+strconv.Itoa(mid)] != want {
			t.Fatalf("mid_%d = %v", mid, got)
		}
		if got, _ := raw.get("conn_k" + strconv.Itoa(mid)); got != strconv.Itoa(mid) {
			t.Fatalf("conn_k%d = %q, want %d", mid, got, mid)
		}
	}
}

// TestAddSessionClose: Close lets queued sessions finish, stops the
// coalescing workers, and later calls fail with ErrClosed; a cancelled
// context answers at once.
func TestAddSessionClose(t *testing.T) {
	before := runtime.NumGoroutine()
	r, _ := newTestRedis(t, nil)
	ctx := context.Background()
	if err := r.AddSession(ctx, dao.Session{Mid: 1, Key: "c1", Server: "s"}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.AddSession(cctx, dao.Session{Mid: 2, Key: "c2", Server: "s"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.AddSession(ctx, dao.Session{Mid: 3, Key: "c3", Server: "s"}); !errors.Is(err, dao.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
}

// TestAddSessionsBatch: a batch, written as one pipeline without the
// coalescing workers, stores each session's routing; a session whose mid_
// key holds the wrong type fails alone, and a cancelled context fails
// every session with the context's error.
func TestAddSessionsBatch(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	ctx := context.Background()
	const bad = 5
	raw.must("SET", raw.key("mid_"+strconv.Itoa(bad)), "not a hash")
	sessions := make([]dao.Session, 300)
	for i := range sessions {
		sessions[i] = dao.Session{Mid: int64(i + 1), Key: "b" + strconv.Itoa(i+1), Server: "comet-" + strconv.Itoa(i%3), ConnID: uint64(i + 1)}
	}
	for i, err := range r.AddSessions(ctx, sessions) {
		mid := i + 1
		if mid == bad {
			if !errors.Is(err, dao.ErrRedis) {
				t.Errorf("mid %d (wrong type): %v, want ErrRedis", mid, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("mid %d: %v", mid, err)
		}
		if got, _ := raw.get("key_b" + strconv.Itoa(mid)); got != sessions[i].Server {
			t.Fatalf("key_b%d = %q, want %q", mid, got, sessions[i].Server)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for i, err := range r.AddSessions(cctx, sessions[:3]) {
		if !errors.Is(err, context.Canceled) || !errors.Is(err, dao.ErrRedis) {
			t.Errorf("cancelled context, session %d: %v", i, err)
		}
	}
}
