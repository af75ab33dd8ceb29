package comet

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/goim/goim/internal/conf"
)

// fakeLogic is a send function for a bare retrier: it fails the first
// fail calls (all when fail < 0) and records what it delivered.
type fakeLogic struct {
	mu        sync.Mutex
	fail      int
	calls     int
	delivered map[disconnectReq]int
	retried   int
	abandoned int
}

func (f *fakeLogic) send(reqs []disconnectReq) []disconnectReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != 0 {
		if f.fail > 0 {
			f.fail--
		}
		return reqs
	}
	if f.delivered == nil {
		f.delivered = map[disconnectReq]int{}
	}
	for _, q := range reqs {
		f.delivered[q]++
	}
	return nil
}

func (f *fakeLogic) countRetried(n int)   { f.mu.Lock(); f.retried += n; f.mu.Unlock() }
func (f *fakeLogic) countAbandoned(n int) { f.mu.Lock(); f.abandoned += n; f.mu.Unlock() }

func (f *fakeLogic) check(fn func(*fakeLogic) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fn(f)
}

// newTestRetrier is a retrier on f with a fast backoff (10 ms doubling to
// 40 ms), started and stopped at cleanup.
func newTestRetrier(t *testing.T, f *fakeLogic, window time.Duration) *disconnectRetrier {
	t.Helper()
	r := newDisconnectRetrier(window, f.send, f.countRetried, f.countAbandoned)
	r.first, r.maxWait, r.batch = 10*time.Millisecond, 40*time.Millisecond, 4
	r.start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.stop(ctx)
	})
	return r
}

func reqs(n int) []disconnectReq {
	out := make([]disconnectReq, n)
	for i := range out {
		out[i] = disconnectReq{mid: int64(i + 1), key: "k" + strconv.Itoa(i), connID: uint64(i + 1)}
	}
	return out
}

// TestDisconnectRetrierRecovers: disconnects that failed are sent again,
// in batches, until logic answers, and each is delivered once.
func TestDisconnectRetrierRecovers(t *testing.T) {
	f := &fakeLogic{fail: 3}
	r := newTestRetrier(t, f, time.Minute)
	r.failed(reqs(10))
	waitFor(t, 5*time.Second, func() error {
		return f.check(func(f *fakeLogic) error {
			if len(f.delivered) != 10 {
				return fmt.Errorf("%d of 10 delivered", len(f.delivered))
			}
			return nil
		})
	})
	_ = f.check(func(f *fakeLogic) error {
		for q, n := range f.delivered {
			if n != 1 {
				t.Errorf("%+v delivered %d times", q, n)
			}
		}
		if f.abandoned != 0 || f.retried < 10 {
			t.Errorf("abandoned %d, retried %d; want 0 and at least 10", f.abandoned, f.retried)
		}
		return nil
	})
	if n := r.pending(); n != 0 {
		t.Errorf("%d still pending", n)
	}
}

// TestDisconnectRetrierGivesUp: a logic that never answers gets each
// disconnect a bounded number of times, within the window, then they are
// given up and counted.
func TestDisconnectRetrierGivesUp(t *testing.T) {
	f := &fakeLogic{fail: -1}
	r := newTestRetrier(t, f, 150*time.Millisecond)
	r.failed(reqs(6))
	waitFor(t, 5*time.Second, func() error {
		return f.check(func(f *fakeLogic) error {
			if f.abandoned != 6 {
				return fmt.Errorf("%d of 6 abandoned", f.abandoned)
			}
			return nil
		})
	})
	// Backoff 10, 20, 40, 40 ms... from entering: at most 150/10 sends each
	// however slow the machine; at least one.
	_ = f.check(func(f *fakeLogic) error {
		if f.retried < 6 || f.retried > 6*15 {
			t.Errorf("retried %d, want 6..90", f.retried)
		}
		return nil
	})
	if n := r.pending(); n != 0 {
		t.Errorf("%d still pending", n)
	}
}

// TestDisconnectRetrierBounds: retries off gives up at once; beyond max
// held, the excess is given up at once.
func TestDisconnectRetrierBounds(t *testing.T) {
	t.Run("retries off", func(t *testing.T) {
		f := &fakeLogic{}
		r := newTestRetrier(t, f, 0)
		r.failed(reqs(3))
		if f.abandoned != 3 || r.pending() != 0 {
			t.Fatalf("abandoned %d, pending %d; want 3, 0", f.abandoned, r.pending())
		}
	})
	t.Run("full", func(t *testing.T) {
		f := &fakeLogic{fail: -1}
		r := newDisconnectRetrier(time.Minute, f.send, f.countRetried, f.countAbandoned)
		r.max = 3 // not started: nothing is sent
		r.failed(reqs(5))
		r.overflow(disconnectReq{key: "late"})
		if f.abandoned != 3 || r.pending() != 3 {
			t.Fatalf("abandoned %d, pending %d; want 3, 3", f.abandoned, r.pending())
		}
		r.stop(context.Background()) // never started: what it held is given up
		if f.abandoned != 6 || r.pending() != 0 {
			t.Fatalf("after stop: abandoned %d, pending %d; want 6, 0", f.abandoned, r.pending())
		}
	})
}

// TestDisconnectRetrierStop: stop sends what is held once more, and
// disconnects that fail after it are given up.
func TestDisconnectRetrierStop(t *testing.T) {
	for _, tc := range []struct {
		name          string
		fail          int
		wantDelivered int
	}{
		{name: "logic back", fail: 0, wantDelivered: 5},
		{name: "logic still down", fail: -1, wantDelivered: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeLogic{fail: tc.fail}
			r := newDisconnectRetrier(time.Minute, f.send, f.countRetried, f.countAbandoned)
			r.first = time.Hour // held until stop
			r.start()
			r.failed(reqs(5))
			r.stop(context.Background())
			_ = f.check(func(f *fakeLogic) error {
				if len(f.delivered) != tc.wantDelivered || f.abandoned != 5-tc.wantDelivered {
					t.Errorf("delivered %d, abandoned %d; want %d, %d", len(f.delivered), f.abandoned, tc.wantDelivered, 5-tc.wantDelivered)
				}
				return nil
			})
			r.failed(reqs(2))
			if f.abandoned != 5-tc.wantDelivered+2 {
				t.Errorf("failed after stop: abandoned %d", f.abandoned)
			}
		})
	}
}

// TestDisconnectRetry: a logic whose disconnects fail (Unavailable, as
// when its Redis times out) and then recover gets every session's
// disconnect once; nothing is given up.
func TestDisconnectRetry(t *testing.T) {
	e := startComet(t, unlimited)
	_ = e.logic.check(func(l *testLogic) error { l.dfail = 2; return nil })
	const n = 20
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, e, "tcp")
		clients[i].auth(fmt.Sprintf(`{"mid":%d,"key":"retry-%d"}`, i+1, i))
	}
	for _, c := range clients {
		_ = c.conn.Close()
	}
	waitFor(t, 20*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			seen := map[string]int{}
			for _, k := range l.disconnects {
				seen[k]++
			}
			for i := range n {
				if k := fmt.Sprintf("retry-%d", i); seen[k] != 1 {
					return fmt.Errorf("key %s reached logic %d times (failed calls %d)", k, seen[k], l.dfailed)
				}
			}
			return nil
		})
	})
	if got := testutil.ToFloat64(e.srv.metrics.disconnectsRetried); got < 1 {
		t.Errorf("disconnects_retried_total = %v, want > 0", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.disconnectsAbandoned); got != 0 {
		t.Errorf("disconnects_abandoned_total = %v, want 0", got)
	}
}

// TestDisconnectRetryGivesUp: against a logic that keeps failing, each
// disconnect is retried for logic.disconnect_retry, then given up and
// counted; the connections themselves close at once.
func TestDisconnectRetryGivesUp(t *testing.T) {
	e := startComet(t, func(c *Config) {
		unlimited(c)
		c.Logic.DisconnectRetry = conf.Duration(time.Second)
	})
	_ = e.logic.check(func(l *testLogic) error { l.dfail = -1; return nil })
	const n = 10
	for i := range n {
		c := dial(t, e, "tcp")
		c.auth(fmt.Sprintf(`{"mid":%d,"key":"lost-%d"}`, i+1, i))
		_ = c.conn.Close()
	}
	waitFor(t, 10*time.Second, func() error {
		if got := e.closes(ReasonClientClosed); got != n {
			return fmt.Errorf("%d connections closed, want %d", got, n)
		}
		return nil
	})
	waitFor(t, 20*time.Second, func() error {
		if got := testutil.ToFloat64(e.srv.metrics.disconnectsAbandoned); got != n {
			return fmt.Errorf("disconnects_abandoned_total = %v, want %d", got, n)
		}
		return nil
	})
	if got := testutil.ToFloat64(e.srv.metrics.disconnectsRetried); got < n {
		t.Errorf("disconnects_retried_total = %v, want at least %d", got, n)
	}
	if e.srv.logic.retrier.pending() != 0 {
		t.Errorf("%d disconnects still held", e.srv.logic.retrier.pending())
	}
	_ = e.logic.check(func(l *testLogic) error {
		if len(l.disconnects) != 0 {
			t.Errorf("logic served %d disconnects", len(l.disconnects))
		}
		return nil
	})
}
