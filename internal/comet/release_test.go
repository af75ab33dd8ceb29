package comet

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDisconnectsQueued: more clients than disconnect workers close at
// once and logic hears of every one; clients still open at Shutdown are
// reported before Shutdown returns (the workers drain the queue first).
func TestDisconnectsQueued(t *testing.T) {
	e := startComet(t, nil)
	const n = 4 * disconnectWorkers
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, e, []string{"tcp", "ws"}[i%2])
		clients[i].auth(fmt.Sprintf(`{"key":"q%d","accepts":[]}`, i))
	}
	for _, c := range clients[:n/2] {
		_ = c.conn.Close()
	}
	waitFor(t, 5*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			if len(l.disconnects) != n/2 {
				return fmt.Errorf("%d disconnects, want %d", len(l.disconnects), n/2)
			}
			return nil
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	err := e.logic.check(func(l *testLogic) error {
		seen := map[string]bool{}
		for _, k := range l.disconnects {
			if seen[k] {
				return fmt.Errorf("key %s reported twice", k)
			}
			seen[k] = true
		}
		for i := range n {
			if !seen[fmt.Sprintf("q%d", i)] {
				return fmt.Errorf("no disconnect for q%d", i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestQueueDisconnectAfterStop: once the workers have stopped, a
// connection that closes late sends its disconnect itself.
func TestQueueDisconnectAfterStop(t *testing.T) {
	e := startComet(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.srv.logic.disconnects.Stop(ctx)
	e.srv.logic.queueDisconnect(7, "late", 1)
	if err := e.logic.check(func(l *testLogic) error {
		if len(l.disconnects) != 1 || l.disconnects[0] != "late" {
			return fmt.Errorf("disconnects %v", l.disconnects)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestShouldRelease(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		free, heap uint64
		want       bool
	}{
		{0, 100 * mb, false},
		{7 * mb, 20 * mb, false}, // a third free, but under the minimum
		{8 * mb, 32 * mb, true},  // a quarter
		{8 * mb, 33 * mb, false}, // under a quarter
		{60 * mb, 100 * mb, true},
	} {
		if got := shouldRelease(c.free, c.heap); got != c.want {
			t.Errorf("shouldRelease(%d MiB free of %d MiB) = %v, want %v", c.free/mb, c.heap/mb, got, c.want)
		}
	}
}

// TestReleaseStep: with the connection count settled and most of the heap
// free (garbage collected, not yet returned), a check returns it; while
// the count moves, it does not; a settled count that moved by a tenth
// since the last release returns memory too.
func TestReleaseStep(t *testing.T) {
	e := startComet(t, nil)
	garbage := func() {
		var keep [][]byte
		for range 64 {
			keep = append(keep, make([]byte, 1<<20))
		}
		runtime.KeepAlive(keep)
		runtime.GC()
	}
	releases := func() float64 { return testutil.ToFloat64(e.srv.metrics.releases) }
	garbage()
	n := e.srv.limits.conns.Load()
	r := releaser{last: n + 1000, base: n}
	r.step(e.srv) // moving: no release
	if got := releases(); got != 0 {
		t.Fatalf("%v releases while the connection count moved", got)
	}
	r.step(e.srv)
	if got := releases(); got != 1 {
		t.Fatalf("%v releases with 64 MiB free, want 1", got)
	}
	r.step(e.srv) // nothing left to return, the count did not move
	if got := releases(); got != 1 {
		t.Fatalf("%v releases right after one, want 1", got)
	}
	// 5,000 connections fewer than at the last release, settled: a
	// release although little is free.
	r = releaser{last: n, base: n + 5000}
	r.step(e.srv)
	if got := releases(); got != 2 || r.base != n {
		t.Fatalf("%v releases (base %d) after the count moved, want 2 (base %d)", got, r.base, n)
	}
}
