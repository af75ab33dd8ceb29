package syncx

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestWaitDone(t *testing.T) {
	var wg sync.WaitGroup
	release := make(chan struct{})
	wg.Go(func() { <-release })
	close(release)
	if !Wait(context.Background(), &wg) {
		t.Fatal("Wait = false for a group that finished, with no deadline")
	}
}

func TestWaitDeadline(t *testing.T) {
	var wg sync.WaitGroup
	release := make(chan struct{})
	wg.Go(func() { <-release })
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if Wait(ctx, &wg) {
		t.Fatal("Wait = true while a goroutine of the group still runs")
	}
	if ctx.Err() == nil {
		t.Fatal("Wait returned before its context ended")
	}
}
