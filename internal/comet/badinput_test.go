package comet

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
)

// Each bad input gets a clean close counted by its reason, and the comet
// keeps serving everyone else (checked at the end of every case).

func header(packLen uint32, headerLen uint16, op uint32) []byte {
	b := make([]byte, protocol.HeaderSize)
	binary.BigEndian.PutUint32(b[0:], packLen)
	binary.BigEndian.PutUint16(b[4:], headerLen)
	binary.BigEndian.PutUint16(b[6:], 1)
	binary.BigEndian.PutUint32(b[8:], op)
	return b
}

// stillServes checks that a fresh client can authenticate and heartbeat.
func stillServes(t *testing.T, e *testEnv) {
	t.Helper()
	c := dial(t, e, "tcp")
	c.auth(`{"accepts":[]}`)
	seq := c.send(protocol.OpHeartbeat, nil)
	c.expect(protocol.OpHeartbeatReply, seq)
}

func waitCloses(t *testing.T, e *testEnv, reason CloseReason, n int) {
	t.Helper()
	waitFor(t, 5*time.Second, func() error {
		if got := e.closes(reason); got != n {
			return fmt.Errorf("%d closes for %s, want %d", got, reason, n)
		}
		return nil
	})
}

func TestBadTCPFrames(t *testing.T) {
	cases := []struct {
		name    string
		authed  bool // send the bytes after a successful auth
		bytes   []byte
		reason  CloseReason
		garbage bool
	}{
		{name: "packLen above the limit before auth", bytes: header(17+protocol.MaxBodySize, 16, 7), reason: ReasonBadFrame},
		{name: "packLen above the limit after auth", authed: true, bytes: header(1<<30, 16, 1000), reason: ReasonBadFrame},
		{name: "negative packLen", bytes: header(0xfffffff0, 16, 7), reason: ReasonBadFrame},
		{name: "packLen below the header", authed: true, bytes: header(15, 16, 2), reason: ReasonBadFrame},
		{name: "headerLen 17", bytes: header(16, 17, 7), reason: ReasonBadFrame},
		{name: "headerLen 15", authed: true, bytes: header(16, 15, 2), reason: ReasonBadFrame},
		{name: "garbage before auth", bytes: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), reason: ReasonBadFrame},
		{name: "auth body not JSON", bytes: (&protocol.Proto{Ver: 1, Op: protocol.OpAuth, Body: []byte("mid=1")}).AppendTCP(nil), reason: ReasonBadAuth},
		{name: "auth body of the wrong types", bytes: (&protocol.Proto{Ver: 1, Op: protocol.OpAuth, Body: []byte(`{"mid":"1"}`)}).AppendTCP(nil), reason: ReasonBadAuth},
		{name: "auth refused by logic", bytes: (&protocol.Proto{Ver: 1, Op: protocol.OpAuth, Body: []byte(`{"token":"reject"}`)}).AppendTCP(nil), reason: ReasonAuthRejected},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startComet(t, nil)
			c := dial(t, e, "tcp")
			if tc.authed {
				c.auth(`{"key":"bad","accepts":[]}`)
			}
			c.sendRaw(tc.bytes)
			c.expectClosed()
			waitCloses(t, e, tc.reason, 1)
			stillServes(t, e)
		})
	}
}

func TestSlowloris(t *testing.T) {
	e := startComet(t, func(c *Config) { c.Protocol.HandshakeTimeout = conf.Duration(200 * time.Millisecond) })
	silent := dial(t, e, "tcp")
	partial := dial(t, e, "tcp")
	partial.sendRaw(header(100, 16, 7)[:10]) // a header that never completes
	wsSilent, err := net.Dial("tcp", e.addr("ws"))
	if err != nil {
		t.Fatal(err)
	}
	defer wsSilent.Close()
	_, _ = wsSilent.Write([]byte("GET /sub HTTP/1.1\r\n")) // an upgrade that never completes
	silent.expectClosed()
	partial.expectClosed()
	_ = wsSilent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(wsSilent); err != nil {
		t.Fatalf("ws slowloris: %v", err)
	}
	waitCloses(t, e, ReasonHandshake, 3)
}

func TestHeartbeatTimeout(t *testing.T) {
	e := startComet(t, nil)
	e.logic.mu.Lock()
	e.logic.session = 300 * time.Millisecond
	e.logic.mu.Unlock()
	c := dial(t, e, "ws")
	c.auth(`{"key":"half-open","accepts":[]}`)
	c.expectClosed()
	waitCloses(t, e, ReasonHeartbeat, 1)
}

func TestLogicUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	e := startComet(t, func(c *Config) {
		c.Logic.Addrs = []string{dead}
		c.Logic.Timeout = conf.Duration(300 * time.Millisecond)
	})
	c := dial(t, e, "tcp")
	c.send(protocol.OpAuth, []byte(`{"key":"nobody-home"}`))
	c.expectClosed()
	waitCloses(t, e, ReasonLogicError, 1)
}

func TestMaxConnsPerIP(t *testing.T) {
	e := startComet(t, func(c *Config) { c.Limits.MaxConnsPerIP = 2 })
	a, b := dial(t, e, "tcp"), dial(t, e, "ws")
	a.auth(`{"key":"a","accepts":[]}`)
	b.auth(`{"key":"b","accepts":[]}`)
	third := dial(t, e, "tcp")
	third.expectClosed()
	waitCloses(t, e, ReasonTooManyConn, 1)
}

// wsRaw is a hand-driven WebSocket client for frames a library would not send.
type wsRaw struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialWSRaw(t *testing.T, e *testEnv, path string) (*wsRaw, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", e.addr("ws"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &wsRaw{conn: conn, r: r}, resp
}

// frame writes one client frame (masked unless unmasked is set).
func (w *wsRaw) frame(t *testing.T, fin bool, op ws.OpCode, payload []byte, unmasked bool) {
	t.Helper()
	f := ws.NewFrame(op, fin, append([]byte(nil), payload...))
	if !unmasked {
		f = ws.MaskFrameInPlace(f)
	}
	if err := ws.WriteFrame(w.conn, f); err != nil {
		t.Fatal(err)
	}
}

// next reads one server frame.
func (w *wsRaw) next(t *testing.T) ws.Frame {
	t.Helper()
	h, err := ws.ReadHeader(w.r)
	if err != nil {
		t.Fatalf("read frame header: %v", err)
	}
	if h.Length > 1<<20 {
		t.Fatalf("server frame of %d bytes", h.Length)
	}
	f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
	if _, err := io.ReadFull(w.r, f.Payload); err != nil {
		t.Fatalf("read frame payload: %v", err)
	}
	return f
}

func (w *wsRaw) expectClose(t *testing.T, code ws.StatusCode) {
	t.Helper()
	for {
		f := w.next(t)
		if f.Header.OpCode != ws.OpClose {
			continue
		}
		got, _ := ws.ParseCloseFrameData(f.Payload)
		if got != code {
			t.Fatalf("close status %d, want %d", got, code)
		}
		return
	}
}

func authFrame(key string) []byte {
	return (&protocol.Proto{Ver: 1, Op: protocol.OpAuth, Seq: 1, Body: []byte(`{"key":"` + key + `","accepts":[]}`)}).AppendTCP(nil)
}

func TestWebSocketProtocol(t *testing.T) {
	e := startComet(t, nil)

	t.Run("unknown path gets HTTP 400", func(t *testing.T) {
		_, resp := dialWSRaw(t, e, "/other")
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("bad upgrade headers get HTTP 400", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.addr("ws"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(conn, "GET /sub HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("ping gets pong, text frames carry goim frames, fragments reassemble", func(t *testing.T) {
		w, resp := dialWSRaw(t, e, "/sub?room=1")
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", resp.StatusCode)
		}
		w.frame(t, true, ws.OpText, authFrame("text-client"), false)
		f := w.next(t)
		var p protocol.Proto
		if err := p.DecodeWS(f.Payload, 0); err != nil || p.Op != protocol.OpAuthReply || f.Header.OpCode != ws.OpBinary {
			t.Fatalf("auth reply %v op %d (ws opcode %v)", err, p.Op, f.Header.OpCode)
		}
		w.frame(t, true, ws.OpPing, []byte("are you there"), false)
		if f := w.next(t); f.Header.OpCode != ws.OpPong || string(f.Payload) != "are you there" {
			t.Fatalf("got opcode %v payload %q, want the pong", f.Header.OpCode, f.Payload)
		}
		hb := (&protocol.Proto{Ver: 1, Op: protocol.OpHeartbeat, Seq: 9}).AppendTCP(nil)
		w.frame(t, false, ws.OpBinary, hb[:5], false)
		w.frame(t, true, ws.OpPing, nil, false) // control frames may interleave
		w.frame(t, false, ws.OpContinuation, hb[5:11], false)
		w.frame(t, true, ws.OpContinuation, hb[11:], false)
		if f := w.next(t); f.Header.OpCode != ws.OpPong {
			t.Fatalf("opcode %v, want the pong", f.Header.OpCode)
		}
		f = w.next(t)
		if err := p.DecodeWS(f.Payload, 4); err != nil || p.Op != protocol.OpHeartbeatReply || p.Seq != 9 {
			t.Fatalf("heartbeat reply %v op %d seq %d", err, p.Op, p.Seq)
		}
		w.frame(t, true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusGoingAway, "bye"), false)
		w.expectClose(t, ws.StatusGoingAway)
	})

	t.Run("pings before auth get pongs, then the auth reply", func(t *testing.T) {
		w, resp := dialWSRaw(t, e, "/sub")
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", resp.StatusCode)
		}
		for _, payload := range []string{"one", "two"} {
			w.frame(t, true, ws.OpPing, []byte(payload), false)
		}
		w.frame(t, true, ws.OpBinary, authFrame("ping-first"), false)
		for _, payload := range []string{"one", "two"} {
			if f := w.next(t); f.Header.OpCode != ws.OpPong || string(f.Payload) != payload {
				t.Fatalf("got opcode %v payload %q, want the pong %q", f.Header.OpCode, f.Payload, payload)
			}
		}
		var p protocol.Proto
		if f := w.next(t); p.DecodeWS(f.Payload, 0) != nil || p.Op != protocol.OpAuthReply {
			t.Fatalf("got opcode %v op %d, want the auth reply", f.Header.OpCode, p.Op)
		}
	})

	bad := []struct {
		name   string
		send   func(t *testing.T, w *wsRaw)
		status ws.StatusCode
	}{
		{name: "unmasked client frame", status: ws.StatusProtocolError, send: func(t *testing.T, w *wsRaw) {
			w.frame(t, true, ws.OpBinary, authFrame("x"), true)
		}},
		{name: "message larger than the limit", status: ws.StatusMessageTooBig, send: func(t *testing.T, w *wsRaw) {
			w.frame(t, true, ws.OpBinary, make([]byte, protocol.HeaderSize+protocol.MaxBodySize+1), false)
		}},
		{name: "fragments larger than the limit", status: ws.StatusMessageTooBig, send: func(t *testing.T, w *wsRaw) {
			w.frame(t, false, ws.OpBinary, make([]byte, 4000), false)
			w.frame(t, true, ws.OpContinuation, make([]byte, 4000), false)
		}},
		{name: "continuation without a message", status: ws.StatusProtocolError, send: func(t *testing.T, w *wsRaw) {
			w.frame(t, true, ws.OpContinuation, []byte("x"), false)
		}},
		{name: "goim packLen not the message length", status: ws.StatusProtocolError, send: func(t *testing.T, w *wsRaw) {
			w.frame(t, true, ws.OpBinary, append(authFrame("x"), 0), false)
		}},
		{name: "goim headerLen 15", status: ws.StatusProtocolError, send: func(t *testing.T, w *wsRaw) {
			w.frame(t, true, ws.OpBinary, header(16, 15, 7), false)
		}},
		{name: "oversized control frame", status: ws.StatusProtocolError, send: func(t *testing.T, w *wsRaw) {
			w.frame(t, true, ws.OpPing, bytes.Repeat([]byte("p"), 126), false)
		}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			before := e.closes(ReasonBadFrame)
			w, resp := dialWSRaw(t, e, "/sub")
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d", resp.StatusCode)
			}
			tc.send(t, w)
			w.expectClose(t, tc.status)
			// Then the socket closes: EOF, or a reset when the comet did
			// not read what the client had sent (an oversized message).
			if _, err := io.ReadAll(w.r); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after the close frame: %v", err)
			}
			waitCloses(t, e, ReasonBadFrame, before+1)
			stillServes(t, e)
		})
	}
}

func TestWebSocketOrigin(t *testing.T) {
	e := startComet(t, func(c *Config) { c.WebSocket.Origins = []string{"https://ok.example"} })
	for _, tc := range []struct {
		origin string
		status int
	}{
		{origin: "https://ok.example", status: http.StatusSwitchingProtocols},
		{origin: "https://evil.example", status: http.StatusForbidden},
	} {
		conn, err := net.Dial("tcp", e.addr("ws"))
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /sub HTTP/1.1\r\nHost: t\r\nOrigin: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", tc.origin)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		_ = conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.status {
			t.Fatalf("origin %s: status %d, want %d", tc.origin, resp.StatusCode, tc.status)
		}
	}
}

func TestAuthRatePerIP(t *testing.T) {
	e := startComet(t, func(c *Config) { c.Limits.AuthRatePerIP = 1 })
	first := dial(t, e, "tcp")
	first.auth(`{"key":"first","accepts":[]}`)
	second := dial(t, e, "tcp") // same IP, same second: over the burst of 1
	second.send(protocol.OpAuth, []byte(`{"key":"second","accepts":[]}`))
	second.expectClosed()
	waitCloses(t, e, ReasonAuthRate, 1)
}

// flakyListener fails its first accepts the way a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

func TestAcceptErrorsBackOff(t *testing.T) {
	e := startComet(t, nil)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: inner}
	fl.fails.Store(3)
	if !e.srv.goFunc(func() { e.srv.acceptLoop(listener{Listener: fl, tr: transportTCP}) }) {
		t.Fatal("server refused the accept loop")
	}
	defer inner.Close()
	conn, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, e: e, tr: "tcp", conn: conn, r: bufio.NewReader(conn)}
	defer conn.Close()
	c.auth(`{"key":"after-emfile","accepts":[]}`)
	if n := fl.fails.Load(); n >= 0 {
		t.Fatalf("accept errors left: %d", n+1)
	}
}
