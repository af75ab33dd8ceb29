// Package ratelog rate-limits repeated log lines. A failure that repeats
// for every connection or every call (logic unreachable, a flood of bad
// input) would otherwise write a line each time: the log then costs more
// than the work, and the first lines scroll away. A Limiter lets the first
// few lines of each message through per interval and counts the rest; the
// next line let through carries that count as "suppressed". For an
// operation that keeps failing and then recovers, Fail counts the failures
// instead and Recover logs the recovery once.
package ratelog

import (
	"log/slog"
	"sync"
	"time"
)

// maxKeys bounds the messages a Limiter tracks one by one. Messages are
// constants in the code, so a few dozen at most; past the bound, the
// untracked messages share one budget.
const maxKeys = 1024

// overflowKey is the shared budget of the messages past maxKeys.
const overflowKey = "\x00overflow"

// Limiter lets at most burst lines of each message through per interval.
// The zero value is not usable; see New. Safe for concurrent use.
type Limiter struct {
	burst int
	every time.Duration
	now   func() time.Time

	mu sync.Mutex
	m  map[string]*window // guarded by mu; by message
}

// window is one message's current interval.
type window struct {
	start      time.Time
	n          int // lines let through since start
	suppressed int // lines held back since the last one let through
	failures   int // Fail calls since the last Recover
}

// New returns a Limiter letting burst lines of each message through per
// interval every (burst at least 1, every > 0; smaller values are raised
// to 1 and 1 s).
func New(burst int, every time.Duration) *Limiter {
	if every <= 0 {
		every = time.Second
	}
	return &Limiter{burst: max(burst, 1), every: every, now: time.Now, m: make(map[string]*window)}
}

// Allow reports whether a line of msg may be written now and, when it may,
// how many lines of msg were held back since the previous one written.
func (l *Limiter) Allow(msg string) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.take(l.window(msg, now), now)
}

// window returns msg's window, creating it (or, past maxKeys, using the
// shared one). l.mu is held.
func (l *Limiter) window(msg string, now time.Time) *window {
	w := l.m[msg]
	if w == nil {
		if len(l.m) >= maxKeys {
			msg = overflowKey
			w = l.m[msg]
		}
		if w == nil {
			w = &window{start: now}
			l.m[msg] = w
		}
	}
	return w
}

// take is Allow for w at now. l.mu is held.
func (l *Limiter) take(w *window, now time.Time) (ok bool, suppressed int) {
	if now.Sub(w.start) >= l.every {
		w.start, w.n = now, 0
	}
	if w.n >= l.burst {
		w.suppressed++
		return false, 0
	}
	w.n++
	suppressed, w.suppressed = w.suppressed, 0
	return true, suppressed
}

// Warn logs msg with args at Warn level when Allow lets it, adding
// "suppressed" (the lines held back since the previous one) when not 0.
func (l *Limiter) Warn(log *slog.Logger, msg string, args ...any) {
	ok, n := l.Allow(msg)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Warn(msg, args...)
}
