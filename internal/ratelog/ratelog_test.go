package ratelog

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTest(burst int, every time.Duration) (*Limiter, *clock) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(burst, every)
	l.now = c.now
	return l, c
}

func TestAllowBurstThenSuppressed(t *testing.T) {
	l, c := newTest(3, 10*time.Second)
	for i := range 3 {
		if ok, n := l.Allow("a"); !ok || n != 0 {
			t.Fatalf("line %d: ok %v suppressed %d, want true 0", i, ok, n)
		}
	}
	for i := range 5 {
		if ok, _ := l.Allow("a"); ok {
			t.Fatalf("line %d over the burst let through", 3+i)
		}
	}
	// Another message has its own budget.
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another message held back")
	}
	c.t = c.t.Add(9 * time.Second)
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("let through before the interval passed")
	}
	c.t = c.t.Add(time.Second)
	if ok, n := l.Allow("a"); !ok || n != 6 {
		t.Fatalf("next interval: ok %v suppressed %d, want true 6", ok, n)
	}
	if ok, n := l.Allow("a"); !ok || n != 0 {
		t.Fatalf("second line of the interval: ok %v suppressed %d, want true 0", ok, n)
	}
}

func TestNewRaisesBounds(t *testing.T) {
	l, _ := newTest(0, 0)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("burst 0 let nothing through")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("burst 0 let a second line through")
	}
	if l.every != time.Second {
		t.Fatalf("every %v, want 1s", l.every)
	}
}

// TestKeysBounded: past maxKeys messages, the rest share one budget, so
// the map stays bounded.
func TestKeysBounded(t *testing.T) {
	l, _ := newTest(1, time.Minute)
	for i := range maxKeys + 100 {
		l.Allow(fmt.Sprint("msg ", i))
	}
	if len(l.m) > maxKeys+1 {
		t.Fatalf("%d keys tracked, at most %d", len(l.m), maxKeys+1)
	}
	if ok, _ := l.Allow("yet another"); ok {
		t.Fatal("an untracked message got a budget of its own")
	}
}

func TestWarn(t *testing.T) {
	l, c := newTest(1, time.Second)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l.Warn(log, "logic down", "err", "x")
	l.Warn(log, "logic down", "err", "x")
	l.Warn(log, "logic down", "err", "x")
	c.t = c.t.Add(time.Second)
	l.Warn(log, "logic down", "err", "x")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	if strings.Contains(lines[0], "suppressed") || !strings.Contains(lines[1], "suppressed=2") {
		t.Fatalf("suppressed counts wrong:\n%s", buf.String())
	}
}

func TestConcurrent(t *testing.T) {
	l := New(5, time.Hour)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if ok, _ := l.Allow("m"); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed != 5 {
		t.Fatalf("%d lines let through, want 5", allowed)
	}
}
