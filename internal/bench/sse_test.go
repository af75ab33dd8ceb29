package bench

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
	"github.com/goim/goim/internal/testkit"
)

// fakeSSE is an SSE server on loopback that answers every request with
// answer(query) as raw bytes, then holds the connection until the client
// closes it or the test ends (an answer ending in "\x00close" is written
// without it and the connection closed).
type fakeSSE struct {
	ln      net.Listener
	wg      sync.WaitGroup
	answer  func(q url.Values) string
	mu      sync.Mutex
	conns   []net.Conn
	queries []url.Values
	paths   []string
}

func startFakeSSE(t *testing.T, answer func(q url.Values) string) *fakeSSE {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSSE{ln: ln, answer: answer}
	f.wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, nc)
			f.mu.Unlock()
			f.wg.Go(func() {
				defer nc.Close()
				req, err := http.ReadRequest(bufio.NewReader(nc))
				if err != nil {
					return
				}
				f.mu.Lock()
				f.queries = append(f.queries, req.URL.Query())
				f.paths = append(f.paths, req.URL.Path)
				f.mu.Unlock()
				a := f.answer(req.URL.Query())
				a, closeNow := strings.CutSuffix(a, "\x00close")
				if _, err := io.WriteString(nc, a); err != nil || closeNow {
					return
				}
				_, _ = io.Copy(io.Discard, nc) // until the client closes
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, nc := range f.conns {
			nc.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

const sseHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Accel-Buffering: no\r\n\r\nretry: 2874\n\nevent: auth\ndata: \n\n"

// TestSSEReader: the reader decodes text (one and several lines, empty),
// base64 and long events and heartbeat comments, as the comet writes them.
func TestSSEReader(t *testing.T) {
	long := strings.Repeat("y", 3000) // longer than the read buffer
	bin := []byte{0, 1, 2, '\r', 0xff}
	srv := startFakeSSE(t, func(url.Values) string {
		return sseHead + "event: 1000\ndata: one\n\n" + ":\n" +
			"event: 1001\ndata: two\ndata: lines\n\n" +
			"event: 1000\ndata: \n\n" +
			"event: 1002.base64\ndata: " + base64.StdEncoding.EncodeToString(bin) + "\n\n" +
			"event: 1000\r\ndata:" + long + "\r\n\r\n" +
			"event: 2147483647\ndata: max\n\n" + "event: auth.base64\ndata: AAE=\n\n" +
			"\x00close"
	})
	s, err := dialSSE(t.Context(), srv.ln.Addr().String(), "/sse?room=live%3A%2F%2F1", client.DialOptions{
		NetDial: (&net.Dialer{}).DialContext, HandshakeTimeout: 5 * time.Second, ReadBufferSize: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var frames []got
	for {
		err = s.ReadFrames(func(f client.Frame) { frames = append(frames, got{f.Op, string(f.Body)}) })
		if err != nil {
			break
		}
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("ended with %v, want EOF", err)
	}
	want := []got{{1000, "one"}, {protocol.OpHeartbeatReply, ""}, {1001, "two\nlines"}, {1000, ""}, {1002, string(bin)}, {1000, long}, {2147483647, "max"}, {protocol.OpAuthReply, "\x00\x01"}}
	if !slices.Equal(frames, want) {
		t.Fatalf("frames %.200q\nwant %.200q", frames, want)
	}
	if s.Close() != nil || !errors.Is(s.ReadFrames(func(client.Frame) {}), client.ErrClosed) {
		t.Fatal("read after Close")
	}
	if srv.paths[0] != "/sse" || srv.queries[0].Get("room") != "live://1" {
		t.Fatalf("request %s %v", srv.paths[0], srv.queries[0])
	}
}

// got is a frame a reader delivered.
type got struct {
	op   int32
	body string
}

// TestSSEErrors: refusals and malformed streams are typed and counted
// with the phases and kinds of the other transports.
func TestSSEErrors(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		phase, kind  string
	}{
		{name: "refused", answer: "HTTP/1.1 401 Unauthorized\r\nContent-Length: 13\r\nConnection: close\r\n\r\nauth_refused\n\x00close",
			phase: phaseUpgrade, kind: "refused_upgrade"},
		{name: "not an event stream", answer: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\x00close",
			phase: phaseUpgrade, kind: "protocol"},
		{name: "not HTTP", answer: "SSH-2.0-x\r\n\x00close", phase: phaseUpgrade, kind: "protocol"},
		{name: "head too long", answer: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", sseMaxHead) + "\r\n\r\n", phase: phaseUpgrade, kind: "protocol"},
		{name: "headers too long", answer: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X: a\r\n", sseMaxHead/5) + "\r\n", phase: phaseUpgrade, kind: "protocol"},
		{name: "closed before the auth event", answer: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nretry: 1\n\n\x00close",
			phase: phaseAuth, kind: "eof"},
		{name: "push before the auth event", answer: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nevent: 1000\ndata: x\n\n",
			phase: phaseAuth, kind: "protocol"},
		{name: "silent", answer: "", phase: phaseUpgrade, kind: "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startFakeSSE(t, func(url.Values) string { return tc.answer })
			_, err := dialSSE(t.Context(), srv.ln.Addr().String(), "/sse", client.DialOptions{
				NetDial: (&net.Dialer{}).DialContext, HandshakeTimeout: 300 * time.Millisecond, ReadBufferSize: 64})
			if p, k := dialPhase(err), errKind(err); p != tc.phase || k != tc.kind {
				t.Fatalf("error %v: %s/%s, want %s/%s", err, p, k, tc.phase, tc.kind)
			}
			var se *httpStatusError
			if errors.As(err, &se) && (se.Status != 401 || se.Text != "auth_refused") {
				t.Fatalf("status error %+v", se)
			}
		})
	}
	// A stream that breaks after the auth event: the read errors.
	for _, tc := range []struct{ name, events, kind string }{
		{name: "unknown event", events: "event: hello\ndata: x\n\n", kind: "protocol"},
		{name: "op over int32", events: "event: 2147483648\ndata: x\n\n", kind: "protocol"},
		{name: "signed op", events: "event: -1\ndata: x\n\n", kind: "protocol"},
		{name: "event name too long", events: "event: " + strings.Repeat("1", 30) + "\ndata: x\n\n", kind: "protocol"},
		{name: "bad base64", events: "event: 1000.base64\ndata: !!\n\n", kind: "protocol"},
		{name: "cut mid-line", events: "event: 10\x00close", kind: "eof"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startFakeSSE(t, func(url.Values) string { return sseHead + tc.events })
			s, err := dialSSE(t.Context(), srv.ln.Addr().String(), "/sse", client.DialOptions{
				NetDial: (&net.Dialer{}).DialContext, HandshakeTimeout: 5 * time.Second, ReadBufferSize: 64})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.ReadFrames(func(client.Frame) {})
			if k := errKind(err); k != tc.kind {
				t.Fatalf("error %v: kind %s, want %s", err, k, tc.kind)
			}
		})
	}
}

// TestConnsSSE: SSE connections send their auth in the query, record the
// pushes (text and base64 bodies) and heartbeat comments, send no
// heartbeats, and count a dropped stream.
func TestConnsSSE(t *testing.T) {
	const run = "sse1"
	now := time.Now().UnixNano()
	body := func(seq uint64) string { return string(AppendBody(nil, run, "room:live://1", seq, now, 100)) }
	srv := startFakeSSE(t, func(q url.Values) string {
		events := "event: 1000\ndata: " + body(1) + "\n\n:\n" +
			"event: 1000.base64\ndata: " + base64.StdEncoding.EncodeToString([]byte(body(2))) + "\n\n"
		if q.Get("key") == "k2" {
			return sseHead + events + "\x00close" // dropped
		}
		return sseHead + events
	})
	c, err := NewConns(ConnsConfig{Run: run, N: 3, Transport: TransportSSE, Addrs: []string{srv.ln.Addr().String()},
		DialConcurrency: 3, HandshakeTimeout: 5 * time.Second, Heartbeat: 100 * time.Millisecond, Rooms: []string{"live://1"},
		MidStart: 7, KeyPrefix: "k", Accepts: []int32{1000, 1001}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Open(t.Context())
	testkit.WaitFor(t, 5*time.Second, func() error {
		if d, dr, hb := c.delivered.Load(), c.dropped.Load(), c.hbReplies.Load(); d != 6 || dr != 1 || hb != 3 {
			return fmt.Errorf("delivered %d, dropped %d, heartbeat comments %d", d, dr, hb)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // heartbeat periods: none is sent
	c.Close()
	r := c.Record()
	if r.Transport != TransportSSE || r.Failed != 0 || len(r.Conns) != 3 || r.HeartbeatsSent != 0 || r.Foreign != 0 ||
		r.Errors["read/eof"] != 1 || r.Reads == 0 || r.Latency.N != 6 {
		t.Fatalf("record %+v", r)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, q := range srv.queries {
		if !strings.HasPrefix(q.Get("key"), "k") || q.Get("mid") == "" || q.Get("room") != "live://1" || q.Get("accepts") != "1000,1001" ||
			q.Get("platform") != "web" || q.Has("token") {
			t.Fatalf("query %v", q)
		}
	}
	for _, p := range srv.paths {
		if p != "/sse" {
			t.Fatalf("path %q", p)
		}
	}
}

// TestSSETarget: with an HMAC key the query carries a token instead of
// mid and key.
func TestSSETarget(t *testing.T) {
	cn := &conn{mid: 42, key: "k42", room: "live://1"}
	cfg := &ConnsConfig{HMACKey: []byte("0123456789abcdef0123456789abcdef"), Platform: "ios", SSEPath: "/events"}
	target, err := cn.sseTarget(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Path != "/events" || q.Get("token") == "" || q.Has("mid") || q.Has("key") || q.Has("accepts") || q.Get("platform") != "ios" ||
		q.Get("room") != "live://1" {
		t.Fatalf("target %s", target)
	}
}

// cycleReader repeats b forever.
type cycleReader struct {
	b   []byte
	off int
}

func (r *cycleReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

// TestSSEReadAllocs: reading events allocates nothing once the
// connection's event buffer has grown (the reader is on every
// connection's hot path).
func TestSSEReadAllocs(t *testing.T) {
	body := AppendBody(nil, "r", "room:live://1", 1, 1, 64)
	stream := "event: 1000\ndata: " + string(body) + "\n\n:\n" + "event: 1000.base64\ndata: " + base64.StdEncoding.EncodeToString(body) + "\n\n"
	s := &sseConn{br: bufio.NewReaderSize(&cycleReader{b: []byte(stream)}, 256)}
	frames := 0
	fn := func(f client.Frame) {
		if f.Op == 1000 && string(f.Body) == string(body) {
			frames++
		}
	}
	for range 10 {
		if err := s.ReadFrames(fn); err != nil {
			t.Fatal(err)
		}
	}
	if a := testing.AllocsPerRun(300, func() { _ = s.ReadFrames(fn) }); a != 0 {
		t.Fatalf("%v allocations per event", a)
	}
	if frames < 200 {
		t.Fatalf("%d frames decoded", frames)
	}
}
