package comet

import "errors"

// Goroutine stacks of idle connections.
//
// An idle connection parks one goroutine, its reader, and that goroutine's
// stack is most of what the connection costs. The runtime doubles a stack
// when a call chain needs more, and shrinks it again only at a garbage
// collection, by half, and only while the goroutine uses under a quarter of
// it, which a goroutine parked in the poller's wait does not. A reader
// whose stack grew once, for the TLS handshake, a gRPC call to logic or
// the handling of a frame, would so keep the larger stack for as long as
// the connection idles. Three measures keep it at the minimum size, each
// paid for while the connection is busy, never while it idles:
//   - after the handshake the read loop starts on a fresh goroutine
//     (startReadLoop);
//   - a read loop that has handled frames and would now wait for more
//     ends, and continues on a fresh goroutine (waitsNext, errFreshStack);
//   - the deep calls the read loop makes (gRPC calls to logic) run on a
//     short-lived goroutine of their own (offStack).

// errFreshStack ends a read loop (serve) that continues on a fresh
// goroutine.
var errFreshStack = errors.New("comet: read loop continues on a fresh goroutine")

// startReadLoop runs c's read loop (serve) on a fresh goroutine, and again
// on a new one each time it returns errFreshStack; cleanup runs when it
// ends, or at once when shutdown has begun.
func (c *Channel) startReadLoop() {
	s := c.srv
	var loop func()
	loop = func() {
		err := c.serve()
		if err == errFreshStack {
			if s.goFunc(loop) {
				return
			}
			err = fail(ReasonShutdown, ErrServerClosed)
		}
		c.cleanup(true, err)
	}
	if !s.goFunc(loop) {
		c.cleanup(true, fail(ReasonShutdown, ErrServerClosed))
	}
}

// waitsNext reports whether the read loop's next read would wait for data
// in the poller (a plain TCP or WebSocket connection with nothing
// buffered): the moment it moves to a fresh goroutine.
func (c *Channel) waitsNext() bool {
	return c.rc != nil && (c.r == nil || c.r.Buffered() == 0)
}

// offStack runs f, a deep call chain such as a gRPC call, on a short-lived
// goroutine and waits for it, so the calling connection goroutine's stack
// does not grow.
func offStack(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}
