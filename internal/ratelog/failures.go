package ratelog

import "log/slog"

// Fail logs one failure of an operation that keeps failing, as Warn does,
// but its line carries "failures", the failures of msg since it last
// recovered (Recover), instead of "suppressed". With New(1, every) the
// first failure is logged, then at most one line per every.
func (l *Limiter) Fail(log *slog.Logger, msg string, args ...any) {
	now := l.now()
	l.mu.Lock()
	w := l.window(msg, now)
	w.failures++
	n := w.failures
	ok, _ := l.take(w, now)
	l.mu.Unlock()
	if ok {
		log.Warn(msg, append(args, "failures", n)...)
	}
}

// Recover ends the failures of failMsg's operation: when Fail counted any
// since the last Recover, it logs msg once at Info level with
// "after_failures" (their number), and forgets them and failMsg's
// interval, so that the next failure is logged at once.
func (l *Limiter) Recover(log *slog.Logger, failMsg, msg string) {
	l.mu.Lock()
	n := 0
	if w := l.m[failMsg]; w != nil && w.failures > 0 {
		n = w.failures
		delete(l.m, failMsg)
	}
	l.mu.Unlock()
	if n > 0 {
		log.Info(msg, "after_failures", n)
	}
}
