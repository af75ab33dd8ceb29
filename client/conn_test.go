package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/cluster"
	"github.com/goim/goim/internal/testkit/jobtest"
)

// env is a cluster with one comet listening on every transport, and a job.
type env struct {
	c    *cluster.Cluster
	srv  *comet.Server
	tls  *tls.Config // trusts the comet's certificate
	next int         // for unique mids and keys
	mu   sync.Mutex
}

// startEnv starts logic (insecure auth, auth.reply_key, node hints the
// tests check), a comet with TCP, TLS, WS and WSS listeners, and a job.
func startEnv(t *testing.T) *env {
	t.Helper()
	c := cluster.StartWith(t, 0, cluster.Options{Logic: func(lc *logic.Config) {
		lc.Auth.ReplyKey = true
		lc.Node.TCPPort, lc.Node.WSPort, lc.Node.WSSPort = 4101, 4102, 4103
		lc.Node.HeartbeatMax = 3
		lc.Backoff = logic.BackoffConfig{MaxDelay: 20, BaseDelay: 1, Factor: 2, Jitter: 0.25}
	}})
	ca := testkit.NewCA(t, "client-test")
	cert := ca.Server("comet", "127.0.0.1", "localhost")
	srv := c.StartCometWith("comet-1", func(cfg *comet.Config) {
		cfg.TCP.TLSBind = []string{"127.0.0.1:0"}
		cfg.WebSocket.TLSBind = []string{"127.0.0.1:0"}
		cfg.TLS = comet.TLSConfig{CertFile: cert.CertFile, KeyFile: cert.KeyFile}
	})
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	jobtest.Start(t, c, "job-client-test")
	return &env{c: c, srv: srv, tls: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
}

func (e *env) addr(tr client.Transport) string { return e.srv.Addrs(string(tr))[0].String() }

func (e *env) opts(tr client.Transport) client.DialOptions {
	return client.DialOptions{Transport: tr, TLSConfig: e.tls, HandshakeTimeout: 5 * time.Second}
}

// id returns a fresh mid.
func (e *env) id() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.next++
	return 7000 + int64(e.next)
}

var transports = []client.Transport{client.TCP, client.TLS, client.WS, client.WSS}

// reader reads a Conn on a goroutine of its own, keeping every frame.
type reader struct {
	t      *testing.T
	conn   *client.Conn
	mu     sync.Mutex
	frames []client.Frame
	units  []int // frames per ReadFrames call
	err    error
	done   chan struct{}
}

func read(t *testing.T, c *client.Conn) *reader {
	r := &reader{t: t, conn: c, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			n := 0
			err := c.ReadFrames(func(f client.Frame) {
				n++
				r.mu.Lock()
				r.frames = append(r.frames, client.Frame{Op: f.Op, Seq: f.Seq, Body: slices.Clone(f.Body)})
				r.mu.Unlock()
			})
			r.mu.Lock()
			r.units = append(r.units, n)
			r.err = err
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = c.Close()
		<-r.done
	})
	return r
}

// wait waits until the frames of op number n and returns them.
func (r *reader) wait(op int32, n int) []client.Frame {
	r.t.Helper()
	var out []client.Frame
	testkit.WaitFor(r.t, 10*time.Second, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		out = out[:0]
		for _, f := range r.frames {
			if f.Op == op {
				out = append(out, f)
			}
		}
		if len(out) < n {
			return fmt.Errorf("%d of %d frames of op %d (read error %v)", len(out), n, op, r.err)
		}
		return nil
	})
	return out
}

// end waits for the reader to stop and returns its error.
func (r *reader) end() error {
	r.t.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.t.Fatal("reader did not end")
	}
	return r.err
}

func TestComet(t *testing.T) {
	e := startEnv(t)
	t.Run("transports", func(t *testing.T) { testTransports(t, e) })
	t.Run("batch", func(t *testing.T) { testBatch(t, e) })
	t.Run("close frame", func(t *testing.T) { testCloseFrame(t, e) })
	t.Run("auth refused", func(t *testing.T) { testAuthRefused(t, e) })
	t.Run("dial errors", func(t *testing.T) { testDialErrors(t, e) })
	t.Run("close", func(t *testing.T) { testClose(t, e) })
	t.Run("nodes", func(t *testing.T) { testNodes(t, e) })
}

// testTransports: on every transport, auth (with the key in the reply),
// heartbeat reply, and pushes by key, mid and room arrive.
func testTransports(t *testing.T, e *env) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			mid := e.id()
			key := "client-" + string(tr) + "-" + strconv.FormatInt(mid, 10)
			room := "client-" + string(tr)
			auth := client.Auth{Mid: mid, Key: key, RoomID: "live://" + room, Platform: "web", Accepts: []int32{1000}}
			c, err := client.Dial(t.Context(), e.addr(tr), auth, e.opts(tr))
			if err != nil {
				t.Fatal(err)
			}
			if c.Key() != key || !strings.Contains(string(c.AuthReply()), key) {
				t.Fatalf("auth reply %q, key %q", c.AuthReply(), c.Key())
			}
			if c.RemoteAddr().String() != e.addr(tr) || c.LocalAddr() == nil || c.NetConn() == nil {
				t.Fatalf("addresses %v %v", c.RemoteAddr(), c.LocalAddr())
			}
			r := read(t, c)
			if err := c.Heartbeat(); err != nil {
				t.Fatal(err)
			}
			if hb := r.wait(protocol.OpHeartbeatReply, 1); hb[0].Seq != 1 || len(hb[0].Body) != 4 {
				t.Fatalf("heartbeat reply %+v", hb[0])
			}
			if err := c.Heartbeat(); err != nil {
				t.Fatal(err)
			}
			if hb := r.wait(protocol.OpHeartbeatReply, 2); hb[1].Seq != 2 {
				t.Fatalf("second heartbeat reply %+v", hb[1])
			}
			e.c.Push("/goim/push/keys?operation=1000&keys="+key, "by-key")
			r.wait(1000, 1)
			e.c.Push("/goim/push/mids?operation=1000&mids="+strconv.FormatInt(mid, 10), "by-mid")
			r.wait(1000, 2)
			e.c.Push("/goim/push/room?operation=1001&type=live&room="+room, "by-room")
			got := r.wait(1001, 1)
			if string(got[0].Body) != "by-room" {
				t.Fatalf("room push %q", got[0].Body)
			}
			if f := r.wait(1000, 2); string(f[0].Body) != "by-key" || string(f[1].Body) != "by-mid" {
				t.Fatalf("pushes %q %q", f[0].Body, f[1].Body)
			}
		})
	}
}

// testBatch: room pushes sent quickly reach the client whole and in
// order; on WebSocket the job's room batches arrive as op-9 messages,
// unpacked by ReadFrames (several frames from one read).
func testBatch(t *testing.T, e *env) {
	const n = 40
	room := "client-batch"
	var readers []*reader
	for _, tr := range []client.Transport{client.TCP, client.WS} {
		// A small read buffer: batches stream through it.
		o := e.opts(tr)
		o.ReadBufferSize = 64
		c, err := client.Dial(t.Context(), e.addr(tr), client.Auth{Mid: e.id(), RoomID: "live://" + room}, o)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, read(t, c))
	}
	e.c.WaitOnline(len(readers) + 0) // the comet reported them
	for i := range n {
		e.c.Push("/goim/push/room?operation=1000&type=live&room="+room, "m"+strconv.Itoa(i)+strings.Repeat("x", 30))
	}
	for i, r := range readers {
		got := r.wait(1000, n)
		for j, f := range got {
			if want := "m" + strconv.Itoa(j) + strings.Repeat("x", 30); string(f.Body) != want {
				t.Fatalf("reader %d: push %d is %q, want %q", i, j, f.Body, want)
			}
		}
	}
	ws := readers[1]
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if slices.Max(ws.units) < 2 {
		t.Fatalf("no WebSocket message held more than one frame: %v", ws.units)
	}
	t.Logf("frames per WebSocket message: %v", ws.units)
}

// testCloseFrame: an op 12 to an invalid room makes the comet close a
// WebSocket with 1008 "bad_room": a *CloseError.
func testCloseFrame(t *testing.T, e *env) {
	for _, tr := range []client.Transport{client.WS, client.WSS} {
		c, err := client.Dial(t.Context(), e.addr(tr), client.Auth{Mid: e.id()}, e.opts(tr))
		if err != nil {
			t.Fatal(err)
		}
		r := read(t, c)
		if err := c.WriteFrame(protocol.OpChangeRoom, 1, []byte("no room id")); err != nil {
			t.Fatal(err)
		}
		var ce *client.CloseError
		if err := r.end(); !errors.As(err, &ce) || ce.Code != 1008 || ce.Reason != "bad_room" {
			t.Fatalf("%s: read ended with %v, want close 1008 bad_room", tr, err)
		}
	}
	// TCP: the comet just closes.
	c, err := client.Dial(t.Context(), e.addr(client.TCP), client.Auth{Mid: e.id()}, e.opts(client.TCP))
	if err != nil {
		t.Fatal(err)
	}
	r := read(t, c)
	if err := c.WriteFrame(protocol.OpChangeRoom, 1, []byte("no room id")); err != nil {
		t.Fatal(err)
	}
	if err := r.end(); !errors.Is(err, io.EOF) {
		t.Fatalf("tcp: read ended with %v, want EOF", err)
	}
}

// testAuthRefused: a body logic refuses is an *AuthError on every
// transport.
func testAuthRefused(t *testing.T, e *env) {
	for _, tr := range transports {
		_, err := client.DialBody(t.Context(), e.addr(tr), []byte("not json"), e.opts(tr))
		var ae *client.AuthError
		if !errors.As(err, &ae) || ae.Addr != e.addr(tr) {
			t.Fatalf("%s: %v, want an AuthError", tr, err)
		}
		t.Logf("%s: %v", tr, err)
	}
}

// testDialErrors: nothing listening, an untrusted certificate, an
// unknown transport are *DialErrors.
func testDialErrors(t *testing.T, e *env) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	var de *client.DialError
	if _, err := client.Dial(t.Context(), dead, client.Auth{}, client.DialOptions{}); !errors.As(err, &de) || de.Addr != dead {
		t.Fatalf("closed port: %v", err)
	}
	if _, err := client.Dial(t.Context(), e.addr(client.WSS), client.Auth{}, client.DialOptions{Transport: client.WSS}); !errors.As(err, &de) {
		t.Fatalf("untrusted certificate: %v", err)
	}
	if _, err := client.Dial(t.Context(), e.addr(client.TCP), client.Auth{}, client.DialOptions{Transport: "quic"}); !errors.As(err, &de) {
		t.Fatalf("unknown transport: %v", err)
	}
	// A WebSocket upgrade to the TCP listener fails.
	_, err = client.Dial(t.Context(), e.addr(client.TCP), client.Auth{}, client.DialOptions{Transport: client.WS, HandshakeTimeout: time.Second})
	if !errors.As(err, &de) {
		t.Fatalf("upgrade at a TCP port: %v", err)
	}
}

// testClose: Close interrupts a blocked read (ErrClosed), a second Close
// and later writes say ErrClosed; the comet sees the connection go.
func testClose(t *testing.T, e *env) {
	for _, tr := range transports {
		c, err := client.Dial(t.Context(), e.addr(tr), client.Auth{Mid: e.id()}, e.opts(tr))
		if err != nil {
			t.Fatal(err)
		}
		r := read(t, c)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.end(); !errors.Is(err, client.ErrClosed) {
			t.Fatalf("%s: read after Close: %v", tr, err)
		}
		if err := c.Close(); !errors.Is(err, client.ErrClosed) {
			t.Fatalf("%s: second Close: %v", tr, err)
		}
		if err := c.Heartbeat(); !errors.Is(err, client.ErrClosed) {
			t.Fatalf("%s: heartbeat after Close: %v", tr, err)
		}
		if err := c.ReadFrames(func(client.Frame) {}); !errors.Is(err, client.ErrClosed) {
			t.Fatalf("%s: ReadFrames after Close: %v", tr, err)
		}
	}
}

// testNodes: FetchNodes reads logic's real answer.
func testNodes(t *testing.T, e *env) {
	n, err := client.FetchNodes(t.Context(), nil, e.c.API, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(n.TCP) == 0 || len(n.TCP) != len(n.WS) || len(n.WS) != len(n.WSS) {
		t.Fatalf("nodes %+v", n)
	}
	for i := range n.TCP {
		h, _, _ := net.SplitHostPort(n.TCP[i])
		if n.TCP[i] != net.JoinHostPort(h, "4101") || n.WS[i] != net.JoinHostPort(h, "4102") || n.WSS[i] != net.JoinHostPort(h, "4103") {
			t.Fatalf("addresses %v %v %v", n.TCP, n.WS, n.WSS)
		}
	}
	want := client.Backoff{Base: time.Second, Max: 20 * time.Second, Factor: 2, Jitter: 0.25}
	if n.Heartbeat != 4*time.Minute || n.HeartbeatMax != 3 || n.Backoff != want {
		t.Fatalf("hints %v %d %+v", n.Heartbeat, n.HeartbeatMax, n.Backoff)
	}
	if !slices.Equal(n.Addrs(client.WS), n.WS) || n.Addrs(client.TLS) != nil || !slices.Equal(n.Addrs(""), n.TCP) {
		t.Fatal("Addrs by transport")
	}
	// An unknown path is logic's JSON error: a NodesError.
	_, err = client.FetchNodes(t.Context(), nil, e.c.API+"/nope", "web")
	var ne *client.NodesError
	if !errors.As(err, &ne) || ne.Status != 404 {
		t.Fatalf("404: %v", err)
	}
}

// fakeComet accepts one connection, reads the auth frame and answers with
// script's bytes (TCP), then holds the connection until the test ends.
func fakeComet(t *testing.T, script func(nc net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		var h [protocol.HeaderSize]byte
		if _, err := io.ReadFull(nc, h[:]); err != nil {
			return
		}
		if _, err := io.CopyN(io.Discard, nc, int64(binary.BigEndian.Uint32(h[:]))-protocol.HeaderSize); err != nil {
			return
		}
		script(nc)
		_, _ = io.Copy(io.Discard, nc) // until the client closes
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// TestProtocolErrors: malformed frames from a fake comet, before and
// after the auth reply, and frames over MaxBody.
func TestProtocolErrors(t *testing.T) {
	authReply := protocol.AppendFrame(nil, 1, protocol.OpAuthReply, 1, nil)
	badHeader := protocol.AppendFrame(nil, 1, 1000, 0, []byte("x"))
	badHeader[5] = 15 // headerLen 15
	cases := []struct {
		name    string
		send    []byte
		maxBody int
		auth    bool // the error comes at auth
		want    error
	}{
		{name: "bad headerLen after auth", send: append(slices.Clone(authReply), badHeader...), want: protocol.ErrHeaderLen},
		{name: "body over MaxBody", send: append(slices.Clone(authReply), protocol.AppendFrame(nil, 1, 1000, 0, make([]byte, 33))...), maxBody: 32, want: protocol.ErrBodyTooLarge},
		{name: "packLen below the header", send: append(slices.Clone(authReply), 0, 0, 0, 3, 0, 16, 0, 1, 0, 0, 3, 0xe8, 0, 0, 0, 0), want: protocol.ErrPackLen},
		{name: "first frame not the auth reply", send: protocol.AppendFrame(nil, 1, 1000, 0, nil), auth: true},
		{name: "bad frame at auth", send: badHeader, auth: true, want: protocol.ErrHeaderLen},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeComet(t, func(nc net.Conn) { _, _ = nc.Write(tc.send) })
			c, err := client.Dial(t.Context(), addr, client.Auth{}, client.DialOptions{MaxBody: tc.maxBody})
			var pe *client.ProtocolError
			if tc.auth {
				var ae *client.AuthError
				if !errors.As(err, &ae) || !errors.As(err, &pe) || (tc.want != nil && !errors.Is(err, tc.want)) {
					t.Fatalf("dial: %v, want an AuthError with a ProtocolError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.ReadFrames(func(f client.Frame) { t.Fatalf("frame %+v delivered", f) })
			if !errors.As(err, &pe) || !errors.Is(err, tc.want) {
				t.Fatalf("read: %v, want a ProtocolError with %v", err, tc.want)
			}
		})
	}
}

// TestDialContext: ctx ending cuts a handshake short (a comet that never
// answers the auth frame); so does HandshakeTimeout.
func TestDialContext(t *testing.T) {
	addr := fakeComet(t, func(net.Conn) {})
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := client.Dial(ctx, addr, client.Auth{}, client.DialOptions{})
	var ae *client.AuthError
	if !errors.As(err, &ae) || !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Fatalf("canceled dial: %v after %v", err, time.Since(start))
	}
	addr = fakeComet(t, func(net.Conn) {})
	_, err = client.Dial(t.Context(), addr, client.Auth{}, client.DialOptions{HandshakeTimeout: 100 * time.Millisecond})
	if !errors.As(err, &ae) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("timed-out dial: %v", err)
	}
}
