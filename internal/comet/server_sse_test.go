package comet

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// sseEvent is what an EventSource would see of one block of a stream: its
// event name and data (the "data:" lines joined with "\n"), the retry
// value, or a comment.
type sseEvent struct {
	name, data, retry string
	comment           bool
}

// sseStream is an open SSE response read line by line.
type sseStream struct {
	t    testing.TB
	resp *http.Response
	br   *bufio.Reader
}

// sseGet sends GET path?query to the comet's listener of tr (ws or wss)
// with header and returns the response (the body open).
func sseGet(t testing.TB, e *testEnv, tr, query string, header http.Header) *http.Response {
	t.Helper()
	scheme := "http"
	if tr == "wss" {
		scheme = "https"
	}
	req, err := http.NewRequest(http.MethodGet, scheme+"://"+e.addr(tr)+e.srv.cfg.SSE.Path+"?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	cl := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the test's self-signed certificate
	}}
	ctx, cancel := context.WithCancel(context.Background())
	req = req.WithContext(ctx)
	resp, err := cl.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	return resp
}

// readAllWithin reads a refusal's body, which ends within 5 s.
func readAllWithin(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	timer := time.AfterFunc(5*time.Second, func() { resp.Body.Close() })
	defer timer.Stop()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v (status %d)", err, resp.StatusCode)
	}
	return b
}

// openSSE opens a stream that must be accepted, and reads its retry line
// and auth event.
func openSSE(t testing.TB, e *testEnv, tr, query string) *sseStream {
	t.Helper()
	resp := sseGet(t, e, tr, query, nil)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET ?%s: %d %q", query, resp.StatusCode, b)
	}
	s := &sseStream{t: t, resp: resp, br: bufio.NewReader(resp.Body)}
	if ev := s.next(); ev.retry == "" {
		t.Fatalf("first block %+v, want retry", ev)
	}
	if ev := s.next(); ev.name != "auth" {
		t.Fatalf("second block %+v, want the auth event", ev)
	}
	return s
}

// next reads the next block (an event, a retry line or a comment), within
// 5 s.
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	ev, err := s.read(5 * time.Second)
	if err != nil {
		s.t.Fatalf("read: %v", err)
	}
	return ev
}

// nextEvent skips comments and returns the next event.
func (s *sseStream) nextEvent() sseEvent {
	s.t.Helper()
	for {
		if ev := s.next(); !ev.comment {
			return ev
		}
	}
}

// read parses the stream as EventSource does (LF line ends: the comet
// writes no CR), for at most timeout.
func (s *sseStream) read(timeout time.Duration) (sseEvent, error) {
	timer := time.AfterFunc(timeout, func() { s.resp.Body.Close() })
	defer timer.Stop()
	var ev sseEvent
	var data []string
	seen := false
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if !seen {
				continue
			}
			ev.data = strings.Join(data, "\n")
			return ev, nil
		case strings.HasPrefix(line, ":"):
			if !seen {
				return sseEvent{comment: true}, nil
			}
			continue
		}
		seen = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			ev.name = value
		case "data":
			data = append(data, value)
		case "retry":
			ev.retry = value
		}
	}
}

// expectEOF waits for the stream's end.
func (s *sseStream) expectEOF() {
	s.t.Helper()
	for {
		ev, err := s.read(5 * time.Second)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				s.t.Fatalf("stream ended with %v, want EOF", err)
			}
			return
		}
		if !ev.comment {
			s.t.Fatalf("got %+v, want the end of the stream", ev)
		}
	}
}

// sseOn is the config of the SSE tests: no limits, a 1 s heartbeat.
func sseOn(c *Config) {
	unlimited(c)
	c.SSE.Heartbeat = conf.Duration(time.Second)
}

func TestSSEAccepted(t *testing.T) {
	e := startComet(t, sseOn)
	for _, tr := range []string{"ws", "wss"} {
		t.Run(tr, func(t *testing.T) {
			resp := sseGet(t, e, tr, "key=acc-"+tr+"&room=live://sse&accepts=1000,1001", http.Header{"Origin": {"http://page.example"}})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			for name, want := range map[string]string{
				"Content-Type":                "text/event-stream",
				"Cache-Control":               "no-store",
				"X-Accel-Buffering":           "no",
				"Access-Control-Allow-Origin": "http://page.example",
				"Vary":                        "Origin",
			} {
				if got := resp.Header.Get(name); got != want {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
			if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
				t.Errorf("Content-Length %d", resp.ContentLength)
			}
			s := &sseStream{t: t, resp: resp, br: bufio.NewReader(resp.Body)}
			ev := s.next()
			ms, err := strconv.Atoi(ev.retry)
			if err != nil || ms < 2100 || ms > 3900 { // 3s ± 30 %
				t.Fatalf("retry %q, want 2100..3900", ev.retry)
			}
			if ev := s.next(); ev.name != "auth" || ev.data != "" {
				t.Fatalf("auth event %+v", ev)
			}
			if got := testutil.ToFloat64(e.srv.metrics.conns.WithLabelValues("sse")); got != 1 {
				t.Errorf("connections{transport=sse} %v, want 1", got)
			}
			if got := testutil.ToFloat64(e.srv.metrics.conns.WithLabelValues(tr)); got != 0 {
				t.Errorf("connections{transport=%s} %v, want 0", tr, got)
			}
			if e.srv.bucket("acc-"+tr).get("acc-"+tr) == nil {
				t.Fatal("not published")
			}
			resp.Body.Close()
			waitFor(t, 5*time.Second, func() error {
				if n := e.closes(ReasonClientClosed); n == 0 {
					return errors.New("no client_closed")
				}
				return nil
			})
			e.logic.mu.Lock()
			got := e.logic.connIDs["acc-"+tr]
			e.logic.mu.Unlock()
			if len(got) != 1 {
				t.Fatalf("logic saw %d connects", len(got))
			}
		})
	}
	// The WebSocket upgrade still works on the same listener.
	c := dial(t, e, "ws")
	c.auth(`{"key":"ws-after-sse"}`)
}

func TestSSERefused(t *testing.T) {
	e := startComet(t, func(c *Config) {
		sseOn(c)
		c.WebSocket.Origins = []string{"http://good.example"}
	})
	long := strings.Repeat("x", maxSSEQuery)
	for _, tc := range []struct {
		name, query, origin string
		status              int
		body                string
	}{
		{"rejected", "token=reject", "", 401, "auth_rejected\n"},
		{"denied room", "token=rooms=live://a&room=live://b", "", 403, "room_denied\n"},
		{"bad room", "room=live://a%20b", "", 400, "bad_auth_body\n"},
		{"bad accepts", "accepts=1,x", "", 400, "bad_auth_body\n"},
		{"bad encoding", "encoding=hex", "", 400, "bad_auth_body\n"},
		{"twice", "room=live://a&room=live://b", "", 400, "bad_auth_body\n"},
		{"long query", "token=" + long, "", 400, "bad_auth_body\n"},
		{"origin", "key=o1", "http://evil.example", 403, "bad_frame\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			resp := sseGet(t, e, "ws", tc.query, h)
			b := readAllWithin(t, resp)
			if resp.StatusCode != tc.status || string(b) != tc.body {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, b, tc.status, tc.body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
	// An allowed origin gets the CORS headers on a refusal too, so a
	// browser sees the status.
	resp := sseGet(t, e, "ws", "token=reject", http.Header{"Origin": {"http://good.example"}})
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("Access-Control-Allow-Origin") != "http://good.example" {
		t.Fatalf("%d, Access-Control-Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	// The refused connections' cleanup, which uncounts them, may end just
	// after their clients saw the connection close.
	waitFor(t, 5*time.Second, func() error {
		if n := int(testutil.ToFloat64(e.srv.metrics.conns.WithLabelValues("sse"))); n != 0 {
			return fmt.Errorf("%d sse connections counted after refusals", n)
		}
		return nil
	})
}

func TestSSEAuthRate(t *testing.T) {
	e := startComet(t, func(c *Config) {
		sseOn(c)
		c.Limits.AuthRatePerIP = 1 // a burst of 1, then one a second
	})
	openSSE(t, e, "ws", "key=rate1")
	resp := sseGet(t, e, "ws", "key=rate2", nil)
	b := readAllWithin(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || string(b) != "auth_rate\n" {
		t.Fatalf("%d %q, want 429", resp.StatusCode, b)
	}
}

func TestSSELogicDown(t *testing.T) {
	e := startComet(t, func(c *Config) {
		sseOn(c)
		c.Logic.Timeout = conf.Duration(300 * time.Millisecond)
	})
	e.logic.mu.Lock()
	e.logic.gate = make(chan struct{}) // logic never answers
	e.logic.mu.Unlock()
	defer close(e.logic.gate)
	resp := sseGet(t, e, "ws", "key=down", nil)
	b := readAllWithin(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || string(b) != "logic_error\n" {
		t.Fatalf("%d %q, want 503", resp.StatusCode, b)
	}
}

// TestSSEDraining: a request a draining comet still reads is answered
// 503 (the drain closes the listeners first; this is one accepted before).
func TestSSEDraining(t *testing.T) {
	e := startComet(t, sseOn)
	e.srv.draining.Store(true) // draining, the listeners still open
	resp := sseGet(t, e, "ws", "key=late", nil)
	b := readAllWithin(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || string(b) != "drain\n" {
		t.Fatalf("%d %q, want 503", resp.StatusCode, b)
	}
}

func TestSSEPushes(t *testing.T) {
	e := startComet(t, sseOn)
	text := openSSE(t, e, "ws", "key=p-text&room=live://sp&accepts=1000")
	b64 := openSSE(t, e, "wss", "key=p-b64&room=live://sp&accepts=1000&encoding=base64")
	ctx := context.Background()
	push := func(op int32, body string) {
		t.Helper()
		if err := e.srv.BroadcastRoom(ctx, "live://sp", &protocol.Proto{Ver: 1, Op: op, Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	b64of := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	// Room pushes, text and binary bodies.
	for _, body := range []string{"hello", "", "two\nlines\n", "\nlead", "naïve ✓", "nul\x00", "cr\r\n", "\xff\xfe"} {
		push(1000, body)
		wantName, wantData := "1000", body
		if !sseText([]byte(body)) {
			wantName, wantData = "1000.base64", b64of(body)
		}
		if ev := text.nextEvent(); ev.name != wantName || ev.data != wantData {
			t.Fatalf("text stream, body %q: %+v, want %s %q", body, ev, wantName, wantData)
		}
		if ev := b64.nextEvent(); ev.name != "1000" || ev.data != b64of(body) {
			t.Fatalf("base64 stream, body %q: %+v", body, ev)
		}
	}

	// An op-9 batch: one event per inner frame, in order.
	batch := protocol.NewBatch(256)
	for i, op := range []int32{1000, 1001, 1002} {
		if err := batch.Append(op, []byte("inner-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.srv.BroadcastRoom(ctx, "live://sp", &protocol.Proto{Ver: 1, Op: protocol.OpRaw, Body: batch.Frames()}); err != nil {
		t.Fatal(err)
	}
	for i, op := range []string{"1000", "1001", "1002"} {
		if ev := text.nextEvent(); ev.name != op || ev.data != "inner-"+strconv.Itoa(i) {
			t.Fatalf("batch event %d: %+v", i, ev)
		}
		if ev := b64.nextEvent(); ev.name != op || ev.data != b64of("inner-"+strconv.Itoa(i)) {
			t.Fatalf("batch event %d, base64: %+v", i, ev)
		}
	}

	// Key pushes follow accepts: 1001 is filtered, 1000 delivered.
	res := e.srv.PushKeys([]string{"p-text"}, 1001, &protocol.Proto{Ver: 1, Op: 1001, Body: []byte("filtered")})
	if res.Filtered != 1 {
		t.Fatalf("push of an op not accepted: %+v", res)
	}
	res = e.srv.PushKeys([]string{"p-text"}, 1000, &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("to-key")})
	if res.Delivered != 1 {
		t.Fatalf("key push: %+v", res)
	}
	if ev := text.nextEvent(); ev.name != "1000" || ev.data != "to-key" {
		t.Fatalf("key push: %+v", ev)
	}
	// Broadcasts follow accepts too.
	if err := e.srv.Broadcast(ctx, 1000, 0, &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("to-all")}); err != nil {
		t.Fatal(err)
	}
	if ev := text.nextEvent(); ev.name != "1000" || ev.data != "to-all" {
		t.Fatalf("broadcast: %+v", ev)
	}
	if ev := b64.nextEvent(); ev.name != "1000" || ev.data != b64of("to-all") {
		t.Fatalf("broadcast, base64: %+v", ev)
	}
}

// TestSSEHeartbeat: an idle stream gets a comment every sse.heartbeat,
// and its session is renewed in logic on that cadence once due.
func TestSSEHeartbeat(t *testing.T) {
	e := startComet(t, func(c *Config) {
		sseOn(c)
		c.Protocol.SessionRenew = conf.Duration(time.Millisecond) // due at every heartbeat
	})
	s := openSSE(t, e, "ws", "key=hb")
	start := time.Now()
	for i := range 2 {
		if ev := s.next(); !ev.comment {
			t.Fatalf("heartbeat %d: %+v, want a comment", i, ev)
		}
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("two heartbeats in %v, want about 2s", d)
	}
	waitFor(t, 5*time.Second, func() error {
		e.logic.mu.Lock()
		defer e.logic.mu.Unlock()
		if len(e.logic.hbConnIDs["hb"]) < 1 {
			return errors.New("no session renewal reached logic")
		}
		return nil
	})
	// The stream outlives logic's session timeout (a minute here only
	// because the test logic says so): no heartbeat_timeout close.
	if n := e.closes(ReasonHeartbeat); n != 0 {
		t.Fatalf("%d heartbeat timeouts", n)
	}
}

// TestSSEPeriod: the heartbeat period is sse.heartbeat, at most half the
// session timeout.
func TestSSEPeriod(t *testing.T) {
	s := &Server{cfg: Default()}
	for _, tc := range []struct{ session, want time.Duration }{
		{time.Minute, 30 * time.Second},
		{8 * time.Minute, 30 * time.Second},
		{20 * time.Second, 10 * time.Second},
		{time.Second, time.Second},
	} {
		c := &Channel{srv: s, session: tc.session}
		if got := c.ssePeriod(); got != tc.want {
			t.Errorf("session %v: period %v, want %v", tc.session, got, tc.want)
		}
	}
}

func TestSSELimits(t *testing.T) {
	t.Run("per-ip", func(t *testing.T) {
		e := startComet(t, func(c *Config) {
			sseOn(c)
			c.Limits.MaxConnsPerIP = 1
		})
		openSSE(t, e, "ws", "key=ip1")
		cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := cl.Get("http://" + e.addr("ws") + "/sse?key=ip2")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("second stream from one IP: %d, want the connection closed", resp.StatusCode)
		}
		waitFor(t, 5*time.Second, func() error { // counted just after the close
			if n := e.closes(ReasonTooManyConn); n != 1 {
				return fmt.Errorf("too_many_conns %d", n)
			}
			return nil
		})
	})
	t.Run("handshake-timeout", func(t *testing.T) {
		e := startComet(t, func(c *Config) {
			sseOn(c)
			c.Protocol.HandshakeTimeout = conf.Duration(300 * time.Millisecond)
		})
		conn, err := net.Dial("tcp", e.addr("ws"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// The request line, and no end of the head.
		if _, err := conn.Write([]byte("GET /sse?key=slow HTTP/1.1\r\nHost: x\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(conn)
		if err != nil || len(b) != 0 {
			t.Fatalf("read %q, %v; want the connection closed", b, err)
		}
		waitFor(t, 5*time.Second, func() error {
			if e.closes(ReasonHandshake) != 1 {
				return errors.New("no handshake_timeout close")
			}
			return nil
		})
	})
	t.Run("data-after-request", func(t *testing.T) {
		e := startComet(t, sseOn)
		conn, err := net.Dial("tcp", e.addr("ws"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("GET /sse?key=chatty HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := br.ReadString('\n'); err != nil || line != "HTTP/1.1 200 OK\r\n" {
			t.Fatalf("%q, %v", line, err)
		}
		if _, err := conn.Write([]byte("more")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(br); err != nil {
			t.Fatalf("read: %v", err)
		}
		waitFor(t, 5*time.Second, func() error {
			if e.closes(ReasonBadFrame) != 1 {
				return errors.New("no bad_frame close")
			}
			return nil
		})
	})
}

// TestSSEDrain: a drain ends the stream (EventSource reconnects after
// retry).
func TestSSEDrain(t *testing.T) {
	e := startComet(t, sseOn)
	s := openSSE(t, e, "ws", "key=dr&room=live://dr")
	e.srv.Drain(context.Background(), 0)
	s.expectEOF()
	waitFor(t, 5*time.Second, func() error {
		if e.closes(ReasonDrain) != 1 {
			return errors.New("no drain close")
		}
		return nil
	})
}

// TestSSESlow: a stream whose queue is full closes as a slow consumer.
func TestSSESlow(t *testing.T) {
	e := startComet(t, func(c *Config) {
		sseOn(c)
		c.Protocol.QueueFrames = 4
		c.Protocol.QueueBytes = 1 << 20
	})
	conn, err := net.Dial("tcp", e.addr("ws"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /sse?key=slow&accepts=1000 HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		if e.srv.bucket("slow").get("slow") == nil {
			return errors.New("not published")
		}
		return nil
	})
	big := &protocol.Proto{Ver: 1, Op: 1000, Body: []byte(strings.Repeat("x", 64<<10))}
	waitFor(t, 10*time.Second, func() error {
		e.srv.PushKeys([]string{"slow"}, 1000, big) // never read: the socket buffers fill, then the queue
		if e.closes(ReasonSlow) != 1 {
			return errors.New("not closed as slow")
		}
		return nil
	})
}

func TestParseSSEQuery(t *testing.T) {
	for _, tc := range []struct {
		query, body string
		b64         bool
		err         bool
	}{
		{"", `{"mid":0,"key":"","room_id":"","platform":"web","accepts":[]}`, false, false},
		{"token=t.k&room=live://1&accepts=1000,1001&platform=ios&mid=7&key=k-1&encoding=base64&_=123",
			`{"mid":7,"key":"k-1","room_id":"live://1","platform":"ios","accepts":[1000,1001],"token":"t.k"}`, true, false},
		{"encoding=text&token=%3C%22%3E", `{"mid":0,"key":"","room_id":"","platform":"web","accepts":[],"token":"<\">"}`, false, false},
		{"accepts=-5,2147483647", `{"mid":0,"key":"","room_id":"","platform":"web","accepts":[-5,2147483647]}`, false, false},
		{"accepts=2147483648", "", false, true},
		{"accepts=1,,2", "", false, true},
		{"accepts=" + strings.Repeat("1,", maxWatched) + "1", "", false, true},
		{"accepts=" + strings.Repeat("1,", maxWatched-1) + "1", "", false, false},
		{"room=" + "live://" + strings.Repeat("r", protocol.MaxRoomIDLen), "", false, true},
		{"room=live://a%3Cb", "", false, true},
		{"mid=x", "", false, true},
		{"mid=9223372036854775808", "", false, true},
		{"key=a,b", "", false, true},
		{"platform=" + strings.Repeat("p", maxSSEPlatform+1), "", false, true},
		{"token=%ff", "", false, true},
		{"token=%zz", "", false, true},
		{"encoding=hex", "", false, true},
		{"token=a&token=b", "", false, true},
		{"token=" + strings.Repeat("t", maxSSEQuery), "", false, true},
		{"token=" + strings.Repeat("t", 5000), "", false, true}, // over protocol.max_body
	} {
		q, err := parseSSEQuery(tc.query, protocol.MaxBodySize)
		switch {
		case tc.err && err == nil:
			t.Errorf("%.60q: no error", tc.query)
		case !tc.err && err != nil:
			t.Errorf("%.60q: %v", tc.query, err)
		case err != nil && !errors.Is(err, errSSEBadQuery):
			t.Errorf("%.60q: %v does not wrap errSSEBadQuery", tc.query, err)
		case !tc.err && tc.body != "" && (string(q.body) != tc.body || q.base64 != tc.b64):
			t.Errorf("%.60q: %s base64=%v, want %s base64=%v", tc.query, q.body, q.base64, tc.body, tc.b64)
		}
	}
}

// FuzzParseSSEQuery: whatever the query, the result is an error or an
// auth body that parses and respects every bound.
func FuzzParseSSEQuery(f *testing.F) {
	for _, s := range []string{"", "token=a&room=live://1&accepts=1,2", "mid=-1&key=k&encoding=base64", "accepts=,", "room=%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseSSEQuery(raw, protocol.MaxBodySize)
		if err != nil {
			return
		}
		if len(q.body) > protocol.MaxBodySize {
			t.Fatalf("body of %d bytes", len(q.body))
		}
		a, err := protocol.ParseAuthBody(q.body)
		if err != nil {
			t.Fatalf("body %s: %v", q.body, err)
		}
		if a.RoomID != "" && protocol.CheckRoomID(a.RoomID) != nil {
			t.Fatalf("room %q", a.RoomID)
		}
		if len(a.Accepts) > maxWatched || len(a.Platform) > maxSSEPlatform {
			t.Fatalf("unbounded: %d accepts, platform %d bytes", len(a.Accepts), len(a.Platform))
		}
	})
}

// FuzzSSEEvent: every body round-trips through an event as EventSource
// parses it: as text when the rule allows, else base64.
func FuzzSSEEvent(f *testing.F) {
	for _, s := range []string{"", "a", "a\nb", "\n", "\n\n", "x\r", "\x00", "\xff", "data: x\n\nevent: y"} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, b64 bool) {
		out := appendSSEEvent(nil, []byte("1000"), body, b64)
		s := &sseStream{t: t, resp: &http.Response{Body: io.NopCloser(nil)}, br: bufio.NewReader(strings.NewReader(string(out)))}
		ev, err := s.read(time.Minute)
		if err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		got := []byte(ev.data)
		switch ev.name {
		case "1000.base64":
			if b64 {
				t.Fatalf("base64 mode named %q", ev.name)
			}
			fallthrough
		case "1000":
			if ev.name == "1000.base64" || b64 {
				if got, err = base64.StdEncoding.DecodeString(ev.data); err != nil {
					t.Fatal(err)
				}
			}
		default:
			t.Fatalf("event %q", ev.name)
		}
		if string(got) != string(body) {
			t.Fatalf("%q came back %q (stream %q)", body, got, out)
		}
		if rest, _ := io.ReadAll(s.br); len(rest) != 0 {
			t.Fatalf("one event left %q", rest)
		}
	})
}

func TestSSEConfig(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		ok   bool
	}{
		{func(c *Config) {}, true},
		{func(c *Config) { c.SSE.Path = "" }, true},
		{func(c *Config) { c.SSE.Path = "sse" }, false},
		{func(c *Config) { c.SSE.Path = "/sub" }, false},
		{func(c *Config) { c.SSE.Path = "/a?b" }, false},
		{func(c *Config) { c.SSE.Path = "/" + strings.Repeat("a", maxSSEPath) }, false},
		{func(c *Config) { c.SSE.Retry = 0 }, false},
		{func(c *Config) { c.SSE.RetryJitter = 1.5 }, false},
		{func(c *Config) { c.SSE.Heartbeat = conf.Duration(time.Millisecond) }, false},
	} {
		c := Default()
		c.Host = "h"
		c.RPC.Insecure = true
		tc.edit(&c)
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", c.SSE, err)
		}
	}
}

// TestSSEOff: with sse.path empty the path is a WebSocket path like any
// other, refused by the upgrade.
func TestSSEOff(t *testing.T) {
	e := startComet(t, func(c *Config) {
		sseOn(c)
		c.SSE.Path = ""
	})
	resp, err := http.Get("http://" + e.addr("ws") + "/sse?key=off")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
