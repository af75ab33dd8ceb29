package gather

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestGatherBatches: requests queued while the worker is busy are handled
// together, in order, and Stop handles what is still queued.
func TestGatherBatches(t *testing.T) {
	gate := make(chan struct{})
	var mu sync.Mutex
	var batches [][]int
	g := New(16, 4, func(b []int) {
		if b[0] == 0 {
			<-gate
		}
		mu.Lock()
		batches = append(batches, append([]int(nil), b...))
		mu.Unlock()
	})
	g.Start(1)
	for i := range 9 {
		g.Put(i)
	}
	close(gate)
	g.Stop(context.Background())
	g.Put(9) // after Stop: handled on this goroutine
	mu.Lock()
	defer mu.Unlock()
	var all []int
	for _, b := range batches {
		if len(b) > 4 {
			t.Fatalf("batch %v larger than max 4", b)
		}
		all = append(all, b...)
	}
	for i, v := range all {
		if v != i {
			t.Fatalf("handled %v: want 0..9 in order", all)
		}
	}
	if len(all) != 10 || len(batches) > 5 || len(batches) < 3 {
		t.Fatalf("batches %v: want 0..9 in 3 to 5 batches (1 alone while the rest queue, then at most 4 each, then 9 alone)", batches)
	}
}

// TestGathererOverflow: with overflow set, Put never waits: a request
// that finds the queue full goes to Overflow.
func TestGathererOverflow(t *testing.T) {
	gate := make(chan struct{})
	var mu sync.Mutex
	var handled, overflowed []int
	g := New(2, 1, func(b []int) {
		<-gate
		mu.Lock()
		handled = append(handled, b...)
		mu.Unlock()
	})
	g.Overflow = func(r int) {
		mu.Lock()
		overflowed = append(overflowed, r)
		mu.Unlock()
	}
	g.Start(1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 {
			g.Put(i)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("put waited for a full queue")
	}
	close(gate)
	g.Stop(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if len(handled)+len(overflowed) != 10 || len(overflowed) < 7 {
		t.Fatalf("handled %v, overflowed %v: want all 10, at least 7 overflowed (queue 2, one in the worker)", handled, overflowed)
	}
}

// TestPutContext: a request that finds the queue full waits only until
// its context ends, and is then not queued; with room it is queued, and
// after Stop handled on the caller's goroutine.
func TestPutContext(t *testing.T) {
	gate := make(chan struct{})
	var mu sync.Mutex
	var handled []int
	g := New(1, 1, func(b []int) {
		<-gate
		mu.Lock()
		handled = append(handled, b...)
		mu.Unlock()
	})
	g.Start(1)
	ctx := context.Background()
	live, stop := context.WithCancel(ctx)
	defer stop()
	if err := g.PutContext(live, 0); err != nil { // the worker takes it and waits at the gate
		t.Fatal(err)
	}
	for g.Queued() != 0 {
		time.Sleep(time.Millisecond)
	}
	if err := g.PutContext(live, 1); err != nil { // fills the queue
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := g.PutContext(short, 2); err != context.DeadlineExceeded {
		t.Fatalf("full queue: %v, want DeadlineExceeded", err)
	}
	// A context that has already ended queues nothing, even with room in
	// the queue (a random choice between the two ready cases would queue
	// it about half the time).
	close(gate)
	for g.Queued() != 0 {
		time.Sleep(time.Millisecond)
	}
	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	for range 100 {
		if err := g.PutContext(done, 4); err != context.Canceled {
			t.Fatalf("ended context with room in the queue: %v, want Canceled", err)
		}
	}
	g.Stop(ctx)
	if err := g.PutContext(ctx, 3); err != nil { // after Stop: handled here
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != 3 || handled[0] != 0 || handled[1] != 1 || handled[2] != 3 {
		t.Fatalf("handled %v, want [0 1 3]", handled)
	}
}
