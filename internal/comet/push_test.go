package comet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
)

// TestPacer: a pacer never releases more than its rate allows. The check is
// a lower bound on elapsed time, which a slow machine only makes longer.
func TestPacer(t *testing.T) {
	const speed, tokens = 1000, 300
	p := newPacer(speed)
	start := time.Now()
	for range tokens {
		if !p.wait(nil) {
			t.Fatal("wait refused")
		}
	}
	// The burst (speed/10) is free; the rest comes at speed per second.
	least := time.Duration(tokens-speed/10) * time.Second / speed
	if elapsed := time.Since(start); elapsed < least*9/10 {
		t.Fatalf("%d tokens at %d/s took %v, want at least %v", tokens, speed, elapsed, least)
	}
	if !newPacer(0).wait(nil) {
		t.Fatal("unpaced wait refused")
	}
	done := make(chan struct{})
	close(done)
	slow := newPacer(1)
	slow.wait(done) // the burst token
	if slow.wait(done) {
		t.Fatal("wait did not give up when done closed")
	}
}

// TestPacedBroadcast: a broadcast with a speed reaches every watcher.
func TestPacedBroadcast(t *testing.T) {
	e := startComet(t, nil)
	var clients []*client
	for i := range 12 {
		c := dial(t, e, transports[i%len(transports)])
		c.auth(fmt.Sprintf(`{"key":"pb%d","accepts":[3000]}`, i))
		clients = append(clients, c)
	}
	if err := e.srv.Broadcast(context.Background(), 3000, 50, &protocol.Proto{Ver: 1, Op: 3000, Body: []byte("paced")}); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if p := c.expect(3000, 0); string(p.Body) != "paced" {
			t.Fatalf("%s got %q", c.tr, p.Body)
		}
	}
}
