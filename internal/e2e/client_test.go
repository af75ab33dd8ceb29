package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	goimclient "github.com/goim/goim/client"
	"github.com/goim/goim/internal/testkit"
)

// The suite's recording client, on the client package's connection
// (client.Conn). internal/testkit/cluster has a recording client too, but
// it dials in-process comets only (it takes a *comet.Server) and sends no
// heartbeats; these clients dial comets by address and heart-beat, which
// the Redis restart relies on: a heartbeat is what makes the comet renew
// a lost session in logic.

// push is one frame a client received that is not a reply to its own
// frames (heartbeat replies are counted apart).
type push struct {
	op   int32
	body string
}

// client is a goim v2 client over TCP or WebSocket. A reader goroutine
// records every push (op-9 batches unpacked); a heartbeat goroutine sends
// op 2 every heartbeat period.
type client struct {
	name string
	tr   string // "tcp" or "ws"
	addr string // host:port dialled
	auth string // the auth body

	conn *goimclient.Conn

	mu        sync.Mutex // guards pushes, hbReplies and err
	pushes    []push
	hbReplies int
	err       error // why the reader stopped

	done      chan struct{} // closed when the reader has stopped
	stop      chan struct{} // closed by close
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// handshakeTimeout bounds a client's dial, upgrade and auth reply.
const handshakeTimeout = 15 * time.Second

// dial connects to a comet at addr ("host:port") over tr, authenticates
// with the auth JSON and waits for the auth reply (at most 15 s). On
// success the client heart-beats every heartbeat until closed; the test
// closes it at cleanup. An error means no authenticated connection.
func dial(t testing.TB, name, tr, addr, auth string, heartbeat time.Duration) (*client, error) {
	return dialFrom(t, "", name, tr, addr, auth, heartbeat)
}

// dialFrom is dial from the local address src (an IP such as
// "127.0.0.10"; "" lets the system choose, 127.0.0.1 on loopback). Comets
// keep state per client IP (connection counts, handshake rate), so tests
// that make many handshakes dial from addresses of their own: on Linux
// every 127.0.0.0/8 address is local without any setup.
func dialFrom(t testing.TB, src, name, tr, addr, auth string, heartbeat time.Duration) (*client, error) {
	if tr != "tcp" && tr != "ws" {
		return nil, fmt.Errorf("%s: transport %q", name, tr)
	}
	conn, err := goimclient.DialBody(context.Background(), addr, []byte(auth), dialOptions(src, tr))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, tr, err)
	}
	c := &client{name: name, tr: tr, addr: addr, auth: auth, conn: conn, done: make(chan struct{}), stop: make(chan struct{})}
	c.wg.Add(2)
	go c.readLoop()
	go c.heartbeatLoop(heartbeat)
	t.Cleanup(c.close)
	return c, nil
}

// dialOptions dials over tr from src ("" = the system's choice).
func dialOptions(src, tr string) goimclient.DialOptions {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return goimclient.DialOptions{Transport: goimclient.Transport(tr), NetDial: d.DialContext, HandshakeTimeout: handshakeTimeout}
}

// mustDial is dial failing the test on error.
func mustDial(t *testing.T, owner testing.TB, name, tr, addr, auth string, heartbeat time.Duration) *client {
	t.Helper()
	c, err := dial(owner, name, tr, addr, auth, heartbeat)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// write sends one frame: as is on TCP, as one masked binary message on
// WebSocket.
func (c *client) write(op, seq int32, body []byte) error {
	return c.conn.WriteFrame(op, seq, body)
}

func (c *client) readLoop() {
	defer c.wg.Done()
	defer close(c.done)
	for {
		var got []push
		hb := 0
		err := c.conn.ReadFrames(func(f goimclient.Frame) {
			if f.Op == protocol.OpHeartbeatReply {
				hb++
				return
			}
			got = append(got, push{op: f.Op, body: string(f.Body)})
		})
		c.mu.Lock()
		c.hbReplies += hb
		c.pushes = append(c.pushes, got...)
		if err != nil {
			c.err = err
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}

func (c *client) heartbeatLoop(period time.Duration) {
	defer c.wg.Done()
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.done:
			return
		case <-tick.C:
			if err := c.conn.Heartbeat(); err != nil {
				return // the reader sees the connection end
			}
		}
	}
}

// close closes the connection and waits for the client's goroutines.
func (c *client) close() {
	c.closeOnce.Do(func() {
		close(c.stop)
		_ = c.conn.Close()
		c.wg.Wait()
	})
}

// closed reports whether the connection has ended, and why.
func (c *client) closed() (bool, error) {
	select {
	case <-c.done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return true, c.err
	default:
		return false, nil
	}
}

// received returns a copy of every push so far.
func (c *client) received() []push {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]push(nil), c.pushes...)
}

// since returns the pushes received after the first n.
func (c *client) since(n int) []push {
	all := c.received()
	if n > len(all) {
		return nil
	}
	return all[n:]
}

// heartbeats is how many heartbeat replies arrived.
func (c *client) heartbeats() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hbReplies
}

// bodies returns the bodies received so far that start with prefix, in
// arrival order.
func (c *client) bodies(prefix string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, p := range c.pushes {
		if strings.HasPrefix(p.body, prefix) {
			out = append(out, p.body)
		}
	}
	return out
}

// waitBodies waits until n bodies with prefix arrived and returns them
// (all of them, if more came).
func (c *client) waitBodies(t *testing.T, prefix string, n int, timeout time.Duration) []string {
	t.Helper()
	testkit.WaitFor(t, timeout, func() error {
		if got := len(c.bodies(prefix)); got < n {
			_, err := c.closed()
			return fmt.Errorf("%s: %d of %d pushes %q... (connection error: %v)", c.name, got, n, prefix, err)
		}
		return nil
	})
	return c.bodies(prefix)
}
