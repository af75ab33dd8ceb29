// Package syncx holds what the services share about their own
// goroutines. The idiom for a goroutine a component owns: start it with
// its sync.WaitGroup's Go method, end it through the component's context
// or a channel it closes, and wait for it at shutdown with Wait, bounded by
// the shutdown deadline.
//
// Two variants, where the idiom does not fit as is:
//   - A component that must refuse new goroutines once its shutdown has
//     begun adds to its WaitGroup under the lock its shutdown takes (the
//     comet's goFunc, the discovery client's reserve), then starts the
//     goroutine, which calls Done.
//   - A lone goroutine whose owner waits for exactly it (an HTTP serve
//     loop, a ticker, a helper the caller blocks on) closes a done channel
//     when it returns, and the owner waits on that channel.
package syncx

import (
	"context"
	"sync"
)

// Wait waits for wg, or until ctx ends. It reports whether wg finished.
// When ctx ends first, one goroutine stays blocked on wg until it does.
func Wait(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
