package comet

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
)

// connectBurst holds logic while n TCP clients send their auth frames (the
// last one with a token logic refuses), then lets it answer; every other
// client must be authenticated under its own key and the refused one
// closed as rejected.
func connectBurst(t *testing.T, e *testEnv, n int) {
	t.Helper()
	gate := make(chan struct{})
	_ = e.logic.check(func(l *testLogic) error { l.gate = gate; return nil })
	clients := make([]*client, n)
	seqs := make([]int32, n)
	for i := range clients {
		clients[i] = dial(t, e, "tcp")
		body := fmt.Sprintf(`{"mid":%d,"key":"burst-%d","room_id":"live://burst"}`, i+1, i)
		if i == n-1 {
			body = `{"token":"reject"}`
		}
		seqs[i] = clients[i].send(protocol.OpAuth, []byte(body))
	}
	// Every handshake is queued or held at logic.
	waitFor(t, 10*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			at := l.connects
			for _, b := range l.batches {
				at += b
			}
			if q := e.srv.logic.connects.Queued(); q+at != n {
				return fmt.Errorf("%d handshakes queued and %d at logic, want %d in all", q, at, n)
			}
			return nil
		})
	})
	close(gate)
	var wg sync.WaitGroup
	for i, c := range clients[:n-1] {
		wg.Go(func() {
			p, err := c.read()
			if err != nil || p.Op != protocol.OpAuthReply || p.Seq != seqs[i] {
				t.Errorf("client %d: got %+v, %v; want the auth reply to seq %d", i, p, err, seqs[i])
			}
		})
	}
	wg.Wait()
	clients[n-1].expectClosed()
	for i := range n - 1 {
		key := fmt.Sprintf("burst-%d", i)
		if ch := e.srv.bucket(key).get(key); ch == nil || ch.mid != int64(i+1) {
			t.Fatalf("key %s: channel %v, want mid %d", key, ch, i+1)
		}
	}
	waitFor(t, 5*time.Second, func() error {
		if got := e.closes(ReasonAuthRejected); got != 1 {
			return fmt.Errorf("%d rejected closes, want 1", got)
		}
		return nil
	})
}

// TestConnectBatch: handshakes that queue while calls to logic are in
// flight go to logic together, in ConnectBatch calls; each connection
// gets its own answer.
func TestConnectBatch(t *testing.T) {
	e := startComet(t, unlimited) // 40 handshakes from one IP at once
	const n = 40
	connectBurst(t, e, n)
	_ = e.logic.check(func(l *testLogic) error {
		sum, most := l.connects, 0
		for _, b := range l.batches {
			sum += b
			most = max(most, b)
		}
		if sum != n {
			t.Errorf("logic saw %d connections (%d Connect, batches %v), want %d", sum, l.connects, l.batches, n)
		}
		// Each worker took what was queued when it became free, so the
		// calls are far fewer than the connections.
		if calls := l.connects + len(l.batches); most < 2 || calls > n/2 {
			t.Errorf("%d calls for %d connections (%d Connect, batches %v): the queued handshakes were not gathered", calls, n, l.connects, l.batches)
		}
		return nil
	})
}

// TestConnectBatchUnimplemented: against a logic without ConnectBatch
// (an older version) the comet falls back to one Connect per handshake.
func TestConnectBatchUnimplemented(t *testing.T) {
	e := startComet(t, unlimited)
	_ = e.logic.check(func(l *testLogic) error { l.noBatch = true; return nil })
	const n = 20
	connectBurst(t, e, n)
	if !e.srv.logic.connectOne.Load() {
		t.Error("the comet still tries ConnectBatch")
	}
	_ = e.logic.check(func(l *testLogic) error {
		if l.connects != n || len(l.batches) != 0 {
			t.Errorf("%d Connect calls and batches %v, want %d Connect calls", l.connects, l.batches, n)
		}
		return nil
	})
}

// TestConnectExpiredInQueue: a handshake that waited in the queue past
// the logic timeout is failed without a call to logic.
func TestConnectExpiredInQueue(t *testing.T) {
	e := startComet(t, nil)
	call := &connectCall{deadline: time.Now().Add(-time.Millisecond), done: make(chan struct{})}
	e.srv.logic.connectBatch([]*connectCall{call})
	<-call.done
	if call.err == nil || call.reply != nil {
		t.Fatalf("reply %v, err %v; want a deadline error", call.reply, call.err)
	}
	_ = e.logic.check(func(l *testLogic) error {
		if l.connects != 0 || len(l.batches) != 0 {
			t.Errorf("logic was called: %d Connect, batches %v", l.connects, l.batches)
		}
		return nil
	})
}

// disconnectBurst closes n authenticated clients, with hold while logic is
// held until all are queued or at logic: every key must reach logic once.
func disconnectBurst(t *testing.T, e *testEnv, n int, hold bool) {
	t.Helper()
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, e, "tcp")
		clients[i].auth(fmt.Sprintf(`{"mid":%d,"key":"bye-%d"}`, i+1, i))
	}
	gate := make(chan struct{})
	if hold {
		_ = e.logic.check(func(l *testLogic) error { l.dgate = gate; return nil })
	}
	for _, c := range clients {
		_ = c.conn.Close()
	}
	if hold { // every disconnect is queued or held at logic
		waitFor(t, 10*time.Second, func() error {
			return e.logic.check(func(l *testLogic) error {
				if q := e.srv.logic.disconnects.Queued(); q+l.dheld != n {
					return fmt.Errorf("%d disconnects queued and %d at logic, want %d in all", q, l.dheld, n)
				}
				return nil
			})
		})
	}
	close(gate)
	waitFor(t, 10*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			seen := map[string]int{}
			for _, k := range l.disconnects {
				seen[k]++
			}
			for i := range n {
				if k := fmt.Sprintf("bye-%d", i); seen[k] != 1 {
					return fmt.Errorf("key %s reached logic %d times (%d disconnects)", k, seen[k], len(l.disconnects))
				}
			}
			return nil
		})
	})
}

// TestDisconnectBatch: disconnects that queue while calls are in flight
// go to logic together.
func TestDisconnectBatch(t *testing.T) {
	e := startComet(t, unlimited) // 40 handshakes from one IP in a burst
	const n = 40
	disconnectBurst(t, e, n, true)
	_ = e.logic.check(func(l *testLogic) error {
		most := 0
		for _, b := range l.dbatches {
			most = max(most, b)
		}
		if most < 2 {
			t.Errorf("DisconnectBatch sizes %v: the queued disconnects were not gathered", l.dbatches)
		}
		return nil
	})
}

// TestDisconnectBatchUnimplemented: against an older logic the comet
// falls back to Disconnect for each session.
func TestDisconnectBatchUnimplemented(t *testing.T) {
	e := startComet(t, unlimited)
	_ = e.logic.check(func(l *testLogic) error { l.noBatch = true; return nil })
	disconnectBurst(t, e, 20, false)
	if !e.srv.logic.disconnectOne.Load() {
		t.Error("the comet still tries DisconnectBatch")
	}
}
