package comet

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	cometpb "github.com/goim/goim/api/comet"
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

// TestAuthReplyThenEveryPush authenticates clients while a room receives a
// numbered push every few hundred microseconds: each client's first frame
// is the op-8 reply (pushes that race the reply queue behind it), it
// receives every push that started after the reply arrived, and from its
// first push on it sees every later one without a gap. (The window this
// guards, between the reply and joining the room, was microseconds wide
// before the channel joined first: too narrow to hit reliably here.)
func TestAuthReplyThenEveryPush(t *testing.T) {
	e := startComet(t, nil)
	ctx := context.Background()
	stop := make(chan struct{})
	pushed := make(chan int, 1)
	var sent, started atomic.Int64 // pushes done; the number of the one in progress
	go func() {
		n := 0
		defer func() { pushed <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			started.Store(int64(n))
			if _, err := e.push.BroadcastRoom(ctx, &cometpb.BroadcastRoomReq{
				RoomID: "live://race", Proto: &protocol.Proto{Ver: 1, Op: 1000, Body: []byte(strconv.Itoa(n))},
			}); err != nil {
				t.Error(err)
				return
			}
			n++
			sent.Store(int64(n))
			time.Sleep(200 * time.Microsecond)
		}
	}()
	var clients []*client
	var joined []int // per client: every push from this number on started after its op 8
	for i := range 20 {
		c := dial(t, e, []string{"tcp", "ws"}[i%2])
		c.auth(fmt.Sprintf(`{"mid":%d,"key":"race-%d","room_id":"live://race","accepts":[1000]}`, i, i))
		clients = append(clients, c)
		joined = append(joined, int(started.Load())+1)
	}
	// A few pushes after the last client joined, so every client sees some.
	after := sent.Load() + 5
	waitFor(t, 10*time.Second, func() error {
		if sent.Load() < after {
			return fmt.Errorf("%d pushes sent, want %d", sent.Load(), after)
		}
		return nil
	})
	close(stop)
	last := <-pushed - 1
	for i, c := range clients {
		first := -1
		for {
			p := c.expect(1000, 0)
			n, err := strconv.Atoi(string(p.Body))
			if err != nil {
				t.Fatalf("body %q", p.Body)
			}
			if first < 0 && n > joined[i] {
				t.Fatalf("%s: first push %d, but push %d started after op 8 arrived", c.tr, n, joined[i])
			}
			if first >= 0 && n != first {
				t.Fatalf("%s: push %d after %d: a gap", c.tr, n, first-1)
			}
			first = n + 1
			if n == last {
				break
			}
		}
	}
}
