package bench

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/goim/goim/client"
)

// Reconnect mode (ConnsConfig.Reconnect): a connection that the server or
// the network ends comes back as a goim client would. It asks logic's
// /goim/nodes/weighted for the nodes and the backoff hint, waits the
// hint's delay for its attempt, asks again, and dials the nodes in turn
// until one handshake succeeds; if none does, the next attempt waits
// longer. What it cost is counted: attempts, errors by phase and kind
// (phases prefixed "reconnect_"; "nodes" for logic's answer), the time
// from the drop to the new auth reply, and the first delay drawn.

// nodesMaxAge is how long one nodes answer serves a process's
// reconnecting connections: thousands of them dropped together ask logic
// once a second, not thousands of times.
const nodesMaxAge = time.Second

// nodesSource answers the reconnecting connections' nodes questions for
// the whole process: one request at a time, cached for nodesMaxAge,
// alternating between the logic URLs and going on to the next one when a
// request fails.
type nodesSource struct {
	apis                []string
	transport, platform string
	hc                  *http.Client
	onErr               func(error)

	mu       sync.Mutex  // guards the fields below
	cur      nodesAnswer // the last answer; client.DefaultBackoff and no nodes before the first
	at       time.Time   // when cur was asked for (answered or not); zero: never
	next     int         // index in apis of the next URL to ask
	fetching chan struct{}
}

func newNodesSource(cfg *ConnsConfig, onErr func(error)) *nodesSource {
	return &nodesSource{
		apis: cfg.APIs, transport: cfg.Transport, platform: cfg.Platform,
		hc: &http.Client{Timeout: 10 * time.Second}, onErr: onErr,
		cur: nodesAnswer{Backoff: client.DefaultBackoff},
	}
}

// get returns the latest answer, asking logic when it is older than
// nodesMaxAge. A failed request is remembered for as long as an answer
// (logic down is asked once a second, not by every connection), and the
// last good answer stays in force.
func (s *nodesSource) get(ctx context.Context) nodesAnswer {
	s.mu.Lock()
	for {
		if !s.at.IsZero() && time.Since(s.at) < nodesMaxAge {
			n := s.cur
			s.mu.Unlock()
			return n
		}
		if s.fetching == nil {
			break
		}
		ch := s.fetching
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			s.mu.Lock()
			n := s.cur
			s.mu.Unlock()
			return n
		}
		s.mu.Lock()
	}
	ch := make(chan struct{})
	s.fetching = ch
	start := s.next
	s.mu.Unlock()

	var got nodesAnswer
	ok, used := false, start
	for i := range s.apis {
		used = (start + i) % len(s.apis)
		n, err := fetchNodes(ctx, s.hc, s.apis[used], s.transport, s.platform)
		if err == nil {
			got, ok = n, true
			break
		}
		if ctx.Err() != nil {
			break
		}
		s.onErr(err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.cur = got
	}
	s.next = (used + 1) % len(s.apis)
	s.at = time.Now()
	s.fetching = nil
	close(ch)
	return s.cur
}

// close drops the idle HTTP connections.
func (s *nodesSource) close() { s.hc.CloseIdleConnections() }

// reconnect brings cn back after the drop at down. It returns true with
// cn authenticated again on a comet, false when the tool is closing.
func (cn *conn) reconnect(down time.Time) bool {
	c := cn.o
	for n := 0; ; n++ {
		wait := c.nodes.get(c.ctx).Backoff.Delay(n, rand.Float64())
		if n == 0 {
			c.firstWait.Record(int64(wait))
		}
		if !c.sleep(wait) {
			return false
		}
		nodes := c.nodes.get(c.ctx)
		c.reconnectAttempts.Add(1)
		// Start at the connection's own place in the list: a process's
		// connections share one answer a second, and should spread over
		// the nodes as clients asking one by one would.
		for k := range nodes.Addrs {
			addr := nodes.Addrs[(cn.idx+k)%len(nodes.Addrs)]
			phase, err := cn.handshake(c.ctx, addr, c.source(cn.idx-c.cfg.First))
			if c.ctx.Err() != nil {
				cn.closeLink() // a handshake that succeeded as the tool closed
				return false
			}
			if err == nil {
				cn.down.Store(0)
				cn.reconnects.Add(1)
				c.reconnects.Add(1)
				c.reconnectTime.Record(int64(time.Since(down)))
				return true
			}
			c.countErr("reconnect_"+phase, err)
		}
	}
}

// sleep waits d, or less when the tool closes; it reports whether the
// tool is still running.
func (c *Conns) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}
