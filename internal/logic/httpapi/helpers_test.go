package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/discovery"
)

// call is one Service call the fake recorded.
type call struct {
	Method   string
	Op       int32
	Keys     []string
	Mids     []int64
	Room     string
	Speed    int32
	Msg      []byte
	Type     string
	Limit    int
	Rooms    []string
	Platform string
	ClientIP string
	MsgID    string
}

// fakeMsgID is the msg_id of every push fakeService accepts, unless its
// msgID says otherwise.
const fakeMsgID = "0123456789abcdef0123456789abcdef"

// fakeService records every call and answers with its fields. Push calls
// fail with pushErr, or return msgID (fakeMsgID when empty); when block is
// set they first wait for it to close (or their context to end) after
// signalling entered.
type fakeService struct {
	pushErr       error
	msgID         string
	block         chan struct{}
	entered       chan struct{}
	panicOn       string // method name that panics
	top           []RoomCount
	rooms         map[string]int32
	conns         int64
	ips           int64
	nodes         *logicpb.NodesReply
	instances     []discovery.Instance
	comets        []Comet
	withDiscovery bool
	// status and statusErr answer PushStatus.
	status    []TargetStatus
	statusErr error

	mu    sync.Mutex
	calls []call
}

func (f *fakeService) record(c call) {
	if f.panicOn == c.Method {
		panic("fake: " + c.Method)
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

func (f *fakeService) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeService) push(ctx context.Context, c call) (string, error) {
	f.record(c)
	if f.block != nil {
		if f.entered != nil {
			f.entered <- struct{}{}
		}
		select {
		case <-f.block:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	switch {
	case f.pushErr != nil:
		return "", f.pushErr
	case f.msgID != "":
		return f.msgID, nil
	}
	return fakeMsgID, nil
}

func (f *fakeService) PushKeys(ctx context.Context, op int32, keys []string, msg []byte) (string, error) {
	return f.push(ctx, call{Method: "PushKeys", Op: op, Keys: keys, Msg: msg})
}

func (f *fakeService) PushMids(ctx context.Context, op int32, mids []int64, msg []byte) (string, error) {
	return f.push(ctx, call{Method: "PushMids", Op: op, Mids: mids, Msg: msg})
}

func (f *fakeService) PushRoom(ctx context.Context, op int32, room string, msg []byte) (string, error) {
	return f.push(ctx, call{Method: "PushRoom", Op: op, Room: room, Msg: msg})
}

func (f *fakeService) PushAll(ctx context.Context, op, speed int32, msg []byte) (string, error) {
	return f.push(ctx, call{Method: "PushAll", Op: op, Speed: speed, Msg: msg})
}

func (f *fakeService) OnlineTop(typ string, limit int) []RoomCount {
	f.record(call{Method: "OnlineTop", Type: typ, Limit: limit})
	return f.top
}

func (f *fakeService) OnlineRoom(typ string, rooms []string) map[string]int32 {
	f.record(call{Method: "OnlineRoom", Type: typ, Rooms: rooms})
	return f.rooms
}

func (f *fakeService) OnlineTotal() (int64, int64) {
	f.record(call{Method: "OnlineTotal"})
	return f.conns, f.ips
}

func (f *fakeService) Nodes(platform, clientIP string) *logicpb.NodesReply {
	f.record(call{Method: "Nodes", Platform: platform, ClientIP: clientIP})
	if f.nodes == nil {
		return &logicpb.NodesReply{}
	}
	return f.nodes
}

func (f *fakeService) Instances() []discovery.Instance {
	f.record(call{Method: "Instances"})
	return f.instances
}

func (f *fakeService) Comets() ([]Comet, bool) {
	f.record(call{Method: "Comets"})
	return f.comets, f.withDiscovery
}

func (f *fakeService) PushStatus(_ context.Context, msgID string) ([]TargetStatus, error) {
	f.record(call{Method: "PushStatus", MsgID: msgID})
	return f.status, f.statusErr
}

// testToken is the full-scope bearer token of testConfig; serve and
// bearer send it unless told otherwise.
const testToken = "0123456789abcdef-test"

// testConfig is the default config on a loopback port chosen by the OS,
// with testToken as its only credential.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Bind = "127.0.0.1:0"
	cfg.Tokens = []string{testToken}
	return cfg
}

// bearer is the Authorization header value carrying testToken.
const bearer = "Bearer " + testToken

// newTestServer returns a server, not started, serving svc with cfg, on a
// private registry; its log goes to t.Log at debug level.
func newTestServer(t testing.TB, cfg Config, svc Service) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(cfg, svc, Deps{Logger: testLogger(t), Registry: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A test that made Shutdown run out of time gets that result again.
		if err := s.Shutdown(ctx); err != nil && (ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded)) {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s, reg
}

// startServer is newTestServer, started; the address is s.Addr().
func startServer(t testing.TB, cfg Config, svc Service) *Server {
	t.Helper()
	s, _ := newTestServer(t, cfg, svc)
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return s
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tWriter sends log lines to t.Log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// response is what a request got.
type response struct {
	status int
	header http.Header
	body   string
}

// serve runs one request through h without a socket. body nil means no
// body; header pairs are name, value. The request carries
// "Authorization: Bearer testToken" unless header names Authorization: a
// pair ("Authorization", "") sends none.
func serve(t testing.TB, h http.Handler, method, target string, body []byte, header ...string) response {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	auth := bearer
	for i := 0; i+1 < len(header); i += 2 {
		if http.CanonicalHeaderKey(header[i]) == "Authorization" {
			auth = header[i+1]
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

// waitFor polls f until it returns nil or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkResponse compares a response's status and exact body.
func checkResponse(t *testing.T, got response, wantStatus int, wantBody string) {
	t.Helper()
	if got.status != wantStatus {
		t.Errorf("status = %d, want %d (body %s)", got.status, wantStatus, got.body)
	}
	if got.body != wantBody {
		t.Errorf("body:\n got %s\nwant %s", got.body, wantBody)
	}
	if ct := got.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
}
