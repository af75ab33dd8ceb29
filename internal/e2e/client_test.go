package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/testkit"
)

// The suite's own goim v2 client. internal/testkit/cluster has a recording
// client too, but it dials in-process comets only (it takes a
// *comet.Server) and sends no heartbeats; these clients dial comets by
// address and heart-beat, which the Redis restart relies on: a heartbeat
// is what makes the comet renew a lost session in logic.

// maxFrameBody bounds what a client accepts from a comet: the server may
// write frames above the 4096-byte client limit (docs/protocol.md §5).
const maxFrameBody = 1 << 24

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

	conn net.Conn
	br   *bufio.Reader
	wmu  sync.Mutex // serialises writes to conn: heartbeats and WebSocket pongs
	seq  int32      // last heartbeat seq; wmu guards it

	mu        sync.Mutex // guards pushes, hbReplies and err
	pushes    []push
	hbReplies int
	err       error // why the reader stopped

	done      chan struct{} // closed when the reader has stopped
	stop      chan struct{} // closed by close
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// dial connects to a comet at addr ("host:port") over tr, authenticates
// with the auth JSON and waits for the auth reply (at most 10 s). On
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
	c := &client{name: name, tr: tr, addr: addr, auth: auth, done: make(chan struct{}), stop: make(chan struct{})}
	d := localDialer(src)
	var err error
	switch tr {
	case "tcp":
		c.conn, err = d.Dial("tcp", addr)
		if err == nil {
			c.br = bufio.NewReader(c.conn)
		}
	case "ws":
		var br *bufio.Reader
		c.conn, br, _, err = ws.Dialer{Timeout: 5 * time.Second, NetDial: d.DialContext}.Dial(context.Background(), "ws://"+addr+"/sub")
		c.br = br // data the server sent right after its handshake answer, if any
		if err == nil && c.br == nil {
			c.br = bufio.NewReader(c.conn)
		}
	default:
		return nil, fmt.Errorf("transport %q", tr)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: dial %s %s: %w", name, tr, addr, err)
	}
	if err := c.authenticate(); err != nil {
		c.conn.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c.wg.Add(2)
	go c.readLoop()
	go c.heartbeatLoop(heartbeat)
	t.Cleanup(c.close)
	return c, nil
}

// localDialer dials from src ("" = the system's choice) within 5 s.
func localDialer(src string) *net.Dialer {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return d
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

func (c *client) authenticate() error {
	if err := c.write(protocol.OpAuth, 1, []byte(c.auth)); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	ps, err := c.read()
	if err != nil {
		return fmt.Errorf("auth reply: %w", err)
	}
	_ = c.conn.SetReadDeadline(time.Time{})
	if len(ps) != 1 || ps[0].op != protocol.OpAuthReply || ps[0].seq != 1 {
		return fmt.Errorf("auth reply: got %+v, want one op %d with seq 1", ps, protocol.OpAuthReply)
	}
	return nil
}

// write sends one frame: as is on TCP, as one masked binary message on
// WebSocket.
func (c *client) write(op, seq int32, body []byte) error {
	frame := protocol.AppendFrame(nil, 1, op, seq, body)
	if c.tr == "ws" {
		return c.writeWS(ws.OpBinary, frame)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.conn.Write(frame)
	return err
}

// writeWS writes one masked WebSocket frame in a single Write.
func (c *client) writeWS(op ws.OpCode, payload []byte) error {
	b, err := ws.CompileFrame(ws.MaskFrame(ws.NewFrame(op, true, payload)))
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = c.conn.Write(b)
	return err
}

// frame is one decoded goim frame; body is the client's own copy.
type frame struct {
	op, seq int32
	body    []byte
}

// read returns the frames of the next TCP frame or WebSocket message, an
// op-9 batch unpacked into its inner frames.
func (c *client) read() ([]frame, error) {
	var p protocol.Proto
	if c.tr == "tcp" {
		if err := p.ReadTCP(c.br, maxFrameBody); err != nil {
			return nil, err
		}
	} else {
		msg, err := c.readWSMessage()
		if err != nil {
			return nil, err
		}
		if err := p.DecodeWS(msg, maxFrameBody); err != nil {
			return nil, err
		}
	}
	if p.Op != protocol.OpRaw { // TCP batches come without their carrier
		return []frame{{op: p.Op, seq: p.Seq, body: append([]byte(nil), p.Body...)}}, nil
	}
	var out []frame
	for b := p.Body; len(b) > 0; {
		var in protocol.Proto
		n, err := in.Decode(b, maxFrameBody)
		if err != nil {
			return nil, fmt.Errorf("op-9 body: %w", err)
		}
		out = append(out, frame{op: in.Op, seq: in.Seq, body: append([]byte(nil), in.Body...)})
		b = b[n:]
	}
	return out, nil
}

// errWSClosed is a close frame from the server; the error that wraps it
// is a *wsCloseError.
var errWSClosed = errors.New("websocket close frame")

// wsCloseError is the close frame a server sent: its status code and
// reason (RFC 6455 §5.5.1).
type wsCloseError struct {
	code    uint16 // 0: the frame had no status code
	reason  string
	payload []byte
}

func (e *wsCloseError) Error() string {
	return fmt.Sprintf("%v: status %d, reason %q (payload %x)", errWSClosed, e.code, e.reason, e.payload)
}

func (e *wsCloseError) Unwrap() error { return errWSClosed }

// readWSMessage reads one data message (fragments joined), answering
// pings; the payload is the client's own.
func (c *client) readWSMessage() ([]byte, error) {
	var msg []byte
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return nil, err
		}
		if h.Length > maxFrameBody+protocol.HeaderSize {
			return nil, fmt.Errorf("websocket frame of %d bytes", h.Length)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, payload); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(payload, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpPing:
			if err := c.writeWS(ws.OpPong, payload); err != nil {
				return nil, err
			}
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			e := &wsCloseError{payload: payload}
			if len(payload) >= 2 {
				e.code, e.reason = uint16(payload[0])<<8|uint16(payload[1]), string(payload[2:])
			}
			return nil, e
		}
		msg = append(msg, payload...)
		if h.Fin {
			return msg, nil
		}
	}
}

func (c *client) readLoop() {
	defer c.wg.Done()
	defer close(c.done)
	for {
		ps, err := c.read()
		c.mu.Lock()
		if err != nil {
			c.err = err
			c.mu.Unlock()
			return
		}
		for _, p := range ps {
			if p.op == protocol.OpHeartbeatReply {
				c.hbReplies++
				continue
			}
			c.pushes = append(c.pushes, push{op: p.op, body: string(p.body)})
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
			c.wmu.Lock()
			c.seq++
			seq := c.seq
			c.wmu.Unlock()
			if err := c.write(protocol.OpHeartbeat, seq, nil); err != nil {
				return // the reader sees the connection end
			}
		}
	}
}

// close closes the connection and waits for the client's goroutines.
func (c *client) close() {
	c.closeOnce.Do(func() {
		close(c.stop)
		c.conn.Close()
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
