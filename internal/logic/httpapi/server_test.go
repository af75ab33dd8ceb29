package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/goim/goim/internal/conf"
)

func TestConfigValidate(t *testing.T) {
	var p conf.Problems
	DefaultConfig().Validate(&p)
	if err := p.Err(); err != nil {
		t.Fatalf("DefaultConfig invalid: %v", err)
	}

	cfg := Config{
		Bind:           "localhost",
		MaxBody:        MaxBodyLimit + 1,
		MaxHeaderBytes: 10,
		Tokens:         []string{testToken, "", "short", "with space 0123456789"},
		ReadTokens:     []string{"read\x00token-0123456789"},
		MaxKeys:        0,
		MaxMids:        MaxListLimit + 1,
		TrustedProxies: []string{"10.0.0.1", "fd00::/8", "nope", "10.0.0.0/33"},
	}
	var q conf.Problems
	cfg.Validate(q.Sub("http"))
	err := q.Err()
	if !errors.Is(err, conf.ErrInvalid) {
		t.Fatalf("Validate: %v, want conf.ErrInvalid", err)
	}
	want := []string{
		`http.bind: "localhost" is not host:port: address localhost: missing port in address`,
		"http.max_body: must be 1..16777216 bytes, got 16777217",
		"http.read_header_timeout: must be > 0, got 0s",
		"http.read_timeout: must be > 0, got 0s",
		"http.write_timeout: must be > 0, got 0s",
		"http.idle_timeout: must be > 0, got 0s",
		"http.max_header_bytes: must be 1024..16777216 bytes, got 10",
		"http.max_keys: must be 1..100000, got 0",
		"http.max_mids: must be 1..100000, got 100001",
		"http.tokens[1]: must not be empty",
		"http.tokens[2]: must be at least 16 bytes, got 5",
		"http.tokens[3]: must be visible ASCII without spaces",
		"http.read_tokens[0]: must be visible ASCII without spaces",
		"http.trusted_proxies[2]: invalid IP address: nope",
		"http.trusted_proxies[3]: invalid CIDR address: 10.0.0.0/33",
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Validate:\n got %q\nwant %q", got, want)
	}
	if _, err := New(cfg, &fakeService{}, Deps{}); !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("New with invalid config: %v", err)
	}
	if _, err := New(testConfig(), nil, Deps{}); err == nil {
		t.Errorf("New with nil Service succeeded")
	}
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	s, _ := newTestServer(t, testConfig(), &fakeService{})
	tests := []struct {
		name       string
		method     string
		target     string
		wantStatus int
		wantAllow  string
		wantBody   string
	}{
		{name: "unknown path", method: http.MethodGet, target: "/x", wantStatus: 404,
			wantBody: `{"code":-404,"message":"no such endpoint: GET /x"}`},
		{name: "root", method: http.MethodPost, target: "/?operation=1", wantStatus: 404,
			wantBody: `{"code":-404,"message":"no such endpoint: POST /"}`},
		{name: "trailing slash not redirected", method: http.MethodPost, target: "/goim/push/keys/?operation=1&keys=a", wantStatus: 404,
			wantBody: `{"code":-404,"message":"no such endpoint: POST /goim/push/keys/"}`},
		{name: "other prefix", method: http.MethodGet, target: "/goim/nodes/weighted/x", wantStatus: 404,
			wantBody: `{"code":-404,"message":"no such endpoint: GET /goim/nodes/weighted/x"}`},
		{name: "GET on push", method: http.MethodGet, target: "/goim/push/keys", wantStatus: 405, wantAllow: "POST",
			wantBody: `{"code":-405,"message":"method GET not allowed on /goim/push/keys; use POST"}`},
		{name: "PUT on push", method: http.MethodPut, target: "/goim/push/all?operation=1", wantStatus: 405, wantAllow: "POST",
			wantBody: `{"code":-405,"message":"method PUT not allowed on /goim/push/all; use POST"}`},
		{name: "POST on online", method: http.MethodPost, target: "/goim/online/total", wantStatus: 405, wantAllow: "GET",
			wantBody: `{"code":-405,"message":"method POST not allowed on /goim/online/total; use GET"}`},
		{name: "HEAD not served", method: http.MethodHead, target: "/goim/nodes/weighted", wantStatus: 405, wantAllow: "GET",
			wantBody: `{"code":-405,"message":"method HEAD not allowed on /goim/nodes/weighted; use GET"}`},
		{name: "DELETE on alias", method: http.MethodDelete, target: "/nodes/instances", wantStatus: 405, wantAllow: "GET",
			wantBody: `{"code":-405,"message":"method DELETE not allowed on /nodes/instances; use GET"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := serve(t, s.Handler(), tt.method, tt.target, nil)
			checkResponse(t, got, tt.wantStatus, tt.wantBody)
			if allow := got.header.Get("Allow"); allow != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", allow, tt.wantAllow)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	const (
		other     = "another-token-0123456789"
		readToken = "read-only-token-0123456789"
		missing   = `{"code":-401,"message":"missing bearer token: send \"Authorization: Bearer \u003ctoken\u003e\""}`
		invalid   = `{"code":-401,"message":"invalid bearer token"}`
		forbidden = `{"code":-403,"message":"the bearer token has read scope only; pushes need a full-scope token"}`
		empty     = `{"code":0,"message":"","data":[]}`
		total     = `{"code":0,"message":"","data":{"conn_count":0,"ip_count":0}}`
	)
	cfg := testConfig()
	cfg.Tokens = []string{testToken, other}
	cfg.ReadTokens = []string{readToken}
	svc := &fakeService{}
	s, reg := newTestServer(t, cfg, svc)
	tests := []struct {
		name       string
		method     string
		target     string
		auth       string // Authorization header; "" for none
		wantStatus int
		wantBody   string
		challenge  string // WWW-Authenticate; "" for none
	}{
		{name: "push without token", method: http.MethodPost, target: "/goim/push/keys?operation=1&keys=a",
			wantStatus: 401, wantBody: missing, challenge: `Bearer realm="goim"`},
		{name: "auth before params", method: http.MethodPost, target: "/goim/push/keys",
			wantStatus: 401, wantBody: missing, challenge: `Bearer realm="goim"`},
		{name: "push wrong token", method: http.MethodPost, target: "/goim/push/keys?operation=1&keys=a", auth: "Bearer " + testToken + "x",
			wantStatus: 401, wantBody: invalid, challenge: `Bearer realm="goim", error="invalid_token"`},
		{name: "token prefix", method: http.MethodPost, target: "/goim/push/keys?operation=1&keys=a", auth: "Bearer " + testToken[:16],
			wantStatus: 401, wantBody: invalid, challenge: `Bearer realm="goim", error="invalid_token"`},
		{name: "basic scheme", method: http.MethodPost, target: "/goim/push/keys?operation=1&keys=a", auth: "Basic " + testToken,
			wantStatus: 401, wantBody: invalid, challenge: `Bearer realm="goim", error="invalid_token"`},
		{name: "bare token", method: http.MethodPost, target: "/goim/push/keys?operation=1&keys=a", auth: testToken,
			wantStatus: 401, wantBody: invalid, challenge: `Bearer realm="goim", error="invalid_token"`},
		{name: "bearer without token", method: http.MethodPost, target: "/goim/push/keys?operation=1&keys=a", auth: "Bearer",
			wantStatus: 401, wantBody: invalid, challenge: `Bearer realm="goim", error="invalid_token"`},
		{name: "online without token", method: http.MethodGet, target: "/goim/online/total",
			wantStatus: 401, wantBody: missing, challenge: `Bearer realm="goim"`},
		{name: "instances without token", method: http.MethodGet, target: "/goim/nodes/instances",
			wantStatus: 401, wantBody: missing, challenge: `Bearer realm="goim"`},
		{name: "instances alias without token", method: http.MethodGet, target: "/nodes/instances",
			wantStatus: 401, wantBody: missing, challenge: `Bearer realm="goim"`},
		{name: "instances wrong token", method: http.MethodGet, target: "/goim/nodes/instances", auth: "Bearer " + readToken + "x",
			wantStatus: 401, wantBody: invalid, challenge: `Bearer realm="goim", error="invalid_token"`},
		{name: "push with token", method: http.MethodPost, target: "/goim/push/keys?operation=1&keys=a", auth: "Bearer " + testToken,
			wantStatus: 200, wantBody: okJSON},
		{name: "second token, scheme case-insensitive", method: http.MethodPost, target: "/goim/push/all?operation=1", auth: "bearer " + other,
			wantStatus: 200, wantBody: okJSON},
		{name: "online with full token", method: http.MethodGet, target: "/goim/online/total", auth: "Bearer " + other,
			wantStatus: 200, wantBody: total},
		{name: "online with read token", method: http.MethodGet, target: "/goim/online/total", auth: "Bearer " + readToken,
			wantStatus: 200, wantBody: total},
		{name: "instances with read token", method: http.MethodGet, target: "/goim/nodes/instances", auth: "Bearer " + readToken,
			wantStatus: 200, wantBody: empty},
		{name: "instances alias with full token", method: http.MethodGet, target: "/nodes/instances", auth: "Bearer " + testToken,
			wantStatus: 200, wantBody: empty},
		{name: "push with read token", method: http.MethodPost, target: "/goim/push/room?operation=1&type=live&room=1", auth: "Bearer " + readToken,
			wantStatus: 403, wantBody: forbidden, challenge: `Bearer realm="goim", error="insufficient_scope"`},
		{name: "scope before params", method: http.MethodPost, target: "/goim/push/mids", auth: "Bearer " + readToken,
			wantStatus: 403, wantBody: forbidden, challenge: `Bearer realm="goim", error="insufficient_scope"`},
		{name: "bad params with token", method: http.MethodPost, target: "/goim/push/keys", auth: "Bearer " + testToken,
			wantStatus: 400, wantBody: badJSON("operation: required")},
		{name: "weighted public", method: http.MethodGet, target: "/goim/nodes/weighted", wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"domain":"","tcp_port":0,"ws_port":0,"wss_port":0,"heartbeat":0,"heartbeat_max":0,` +
				`"nodes":[],"backoff":{"max_delay":0,"base_delay":0,"factor":0,"jitter":0}}}`},
		{name: "not found without token", method: http.MethodGet, target: "/x", wantStatus: 404,
			wantBody: `{"code":-404,"message":"no such endpoint: GET /x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := serve(t, s.Handler(), tt.method, tt.target, []byte("m"), "Authorization", tt.auth)
			checkResponse(t, got, tt.wantStatus, tt.wantBody)
			if c := got.header.Get("WWW-Authenticate"); c != tt.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", c, tt.challenge)
			}
		})
	}
	for _, c := range svc.Calls() {
		if c.Method == "PushRoom" || c.Method == "PushMids" {
			t.Errorf("refused push reached the service: %+v", c)
		}
	}
	// Two Authorization headers are refused, whatever they hold.
	req := httptest.NewRequest(http.MethodGet, "/goim/online/total", nil)
	req.Header.Add("Authorization", "Bearer "+testToken)
	req.Header.Add("Authorization", "Bearer "+other)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != 401 || rec.Body.String() != invalid {
		t.Errorf("two Authorization headers: %d %s", rec.Code, rec.Body.String())
	}
	const want = `
# HELP goim_logic_http_auth_failures_total Requests refused for their credential, by reason: missing (no Authorization header, 401), invalid (not a configured bearer token, 401), forbidden (a read-scope token on a push endpoint, 403).
# TYPE goim_logic_http_auth_failures_total counter
goim_logic_http_auth_failures_total{reason="forbidden"} 2
goim_logic_http_auth_failures_total{reason="invalid"} 7
goim_logic_http_auth_failures_total{reason="missing"} 5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "goim_logic_http_auth_failures_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.ToFloat64(s.metrics.requests.WithLabelValues("/goim/push/room", "-403")); n != 1 {
		t.Errorf("requests_total{/goim/push/room,-403} = %v, want 1", n)
	}
}

// TestAnonymous: with allow_anonymous and no credential every endpoint is
// open, and Start warns loudly; with a credential configured too, it is
// still required.
func TestAnonymous(t *testing.T) {
	var logs syncBuffer
	cfg := testConfig()
	cfg.Tokens, cfg.AllowAnonymous = nil, true
	s, err := New(cfg, &fakeService{}, Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	for _, target := range []string{"/goim/online/total", "/goim/nodes/instances", "/goim/push/all?operation=1"} {
		method := http.MethodGet
		if strings.HasPrefix(target, "/goim/push/") {
			method = http.MethodPost
		}
		if got := serve(t, s.Handler(), method, target, []byte("m"), "Authorization", ""); got.status != 200 {
			t.Errorf("anonymous %s %s: %d %s", method, target, got.status, got.body)
		}
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "NO CREDENTIAL CONFIGURED") ||
		!strings.Contains(l, "anonymous=true") {
		t.Errorf("no loud warning at start:\n%s", l)
	}

	cfg = testConfig()
	cfg.AllowAnonymous = true // with testToken: the token is still required
	s2, _ := newTestServer(t, cfg, &fakeService{})
	if got := serve(t, s2.Handler(), http.MethodPost, "/goim/push/all?operation=1", []byte("m"), "Authorization", ""); got.status != 401 {
		t.Errorf("allow_anonymous with a token, no credential sent: %d %s, want 401", got.status, got.body)
	}
}

func TestDraining(t *testing.T) {
	const draining = `{"code":-500,"message":"logic is shutting down"}`
	svc := &fakeService{}
	s, _ := newTestServer(t, testConfig(), svc)
	s.SetDraining()
	s.SetDraining() // idempotent
	tests := []struct {
		method     string
		target     string
		wantStatus int
		wantBody   string
	}{
		{method: http.MethodPost, target: "/goim/push/keys?operation=1&keys=a", wantStatus: 503, wantBody: draining},
		{method: http.MethodPost, target: "/goim/push/mids?operation=1&mids=1", wantStatus: 503, wantBody: draining},
		{method: http.MethodPost, target: "/goim/push/room?operation=1&type=t&room=r", wantStatus: 503, wantBody: draining},
		{method: http.MethodPost, target: "/goim/push/all?operation=1", wantStatus: 503, wantBody: draining},
		{method: http.MethodGet, target: "/goim/online/top?type=t&limit=1", wantStatus: 503, wantBody: draining},
		{method: http.MethodGet, target: "/goim/online/room?type=t&rooms=1", wantStatus: 503, wantBody: draining},
		{method: http.MethodGet, target: "/goim/online/total", wantStatus: 503, wantBody: draining},
		{method: http.MethodGet, target: "/goim/nodes/instances", wantStatus: 200, wantBody: `{"code":0,"message":"","data":[]}`},
		{method: http.MethodGet, target: "/nodes/instances", wantStatus: 200, wantBody: `{"code":0,"message":"","data":[]}`},
		{method: http.MethodGet, target: "/goim/nodes/weighted", wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"domain":"","tcp_port":0,"ws_port":0,"wss_port":0,"heartbeat":0,"heartbeat_max":0,` +
				`"nodes":[],"backoff":{"max_delay":0,"base_delay":0,"factor":0,"jitter":0}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			got := serve(t, s.Handler(), tt.method, tt.target, []byte("m"))
			checkResponse(t, got, tt.wantStatus, tt.wantBody)
			if tt.wantStatus == 503 && got.header.Get("Connection") != "close" {
				t.Errorf("Connection = %q, want close", got.header.Get("Connection"))
			}
		})
	}
	for _, c := range svc.Calls() {
		if c.Method != "Instances" && c.Method != "Nodes" {
			t.Errorf("service called while draining: %+v", c)
		}
	}
}

// syncBuffer is a log destination safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestPanicRecovered(t *testing.T) {
	var logs syncBuffer
	svc := &fakeService{panicOn: "OnlineTotal"}
	reg := prometheus.NewRegistry()
	s, err := New(testConfig(), svc, Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	got := serve(t, s.Handler(), http.MethodGet, "/goim/online/total", nil)
	checkResponse(t, got, 500, `{"code":-500,"message":"internal error"}`)
	if !strings.Contains(logs.String(), "panic serving request") || !strings.Contains(logs.String(), "goroutine") {
		t.Errorf("panic not logged with a stack:\n%s", logs.String())
	}
	// The server still serves.
	got = serve(t, s.Handler(), http.MethodGet, "/goim/nodes/instances", nil)
	checkResponse(t, got, 200, `{"code":0,"message":"","data":[]}`)
	if n := testutil.ToFloat64(s.metrics.requests.WithLabelValues("/goim/online/total", "-500")); n != 1 {
		t.Errorf("requests_total{/goim/online/total,-500} = %v, want 1", n)
	}
}

func TestMetrics(t *testing.T) {
	cfg := testConfig()
	cfg.Tokens = []string{testToken}
	s, reg := newTestServer(t, cfg, &fakeService{})
	auth := []string{"Authorization", "Bearer " + testToken}
	h := s.Handler()
	serve(t, h, http.MethodPost, "/goim/push/keys?operation=1&keys=a", []byte("12345"), auth...)
	serve(t, h, http.MethodPost, "/goim/push/keys?operation=1&keys=a", []byte("1234567890"), auth...)
	serve(t, h, http.MethodPost, "/goim/push/keys?operation=0&keys=a", []byte("m"), auth...)
	serve(t, h, http.MethodPost, "/goim/push/keys?operation=1&keys=a", []byte("m"), "Authorization", "")
	serve(t, h, http.MethodGet, "/goim/push/keys", nil)
	serve(t, h, http.MethodGet, "/nope", nil)
	serve(t, h, http.MethodGet, "/nodes/instances", nil)
	serve(t, h, http.MethodGet, "/goim/nodes/instances", nil)

	tests := []struct {
		endpoint string
		code     string
		want     float64
	}{
		{endpoint: "/goim/push/keys", code: "0", want: 2},
		{endpoint: "/goim/push/keys", code: "-400", want: 1},
		{endpoint: "/goim/push/keys", code: "-401", want: 1},
		{endpoint: "/goim/push/keys", code: "-405", want: 1},
		{endpoint: "/goim/push/keys", code: "-500", want: 0},
		{endpoint: "unknown", code: "-404", want: 1},
		{endpoint: "/nodes/instances", code: "0", want: 1},
		{endpoint: "/goim/nodes/instances", code: "0", want: 1},
		{endpoint: "/goim/push/mids", code: "0", want: 0},
	}
	for _, tt := range tests {
		if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues(tt.endpoint, tt.code)); got != tt.want {
			t.Errorf("requests_total{endpoint=%q,code=%q} = %v, want %v", tt.endpoint, tt.code, got, tt.want)
		}
	}
	// The series are on the given registry, under their documented names.
	const want = `
# HELP goim_logic_http_push_body_bytes Size of accepted push messages (request bodies), in bytes.
# TYPE goim_logic_http_push_body_bytes histogram
goim_logic_http_push_body_bytes_bucket{le="16"} 2
goim_logic_http_push_body_bytes_bucket{le="64"} 2
goim_logic_http_push_body_bytes_bucket{le="256"} 2
goim_logic_http_push_body_bytes_bucket{le="1024"} 2
goim_logic_http_push_body_bytes_bucket{le="4096"} 2
goim_logic_http_push_body_bytes_bucket{le="16384"} 2
goim_logic_http_push_body_bytes_bucket{le="65536"} 2
goim_logic_http_push_body_bytes_bucket{le="262144"} 2
goim_logic_http_push_body_bytes_bucket{le="1.048576e+06"} 2
goim_logic_http_push_body_bytes_bucket{le="+Inf"} 2
goim_logic_http_push_body_bytes_sum 15
goim_logic_http_push_body_bytes_count 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "goim_logic_http_push_body_bytes"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "goim_logic_http_request_duration_seconds"); err != nil || n == 0 {
		t.Errorf("request_duration_seconds series = %d, %v", n, err)
	}
	// A second server cannot register on the same registry.
	if _, err := New(cfg, &fakeService{}, Deps{Registry: reg}); err == nil {
		t.Errorf("New on a registry that has the metrics succeeded")
	}
}

func TestStartShutdown(t *testing.T) {
	base := runtime.NumGoroutine()
	svc := &fakeService{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	s, _ := newTestServer(t, testConfig(), svc)
	if a := s.Addr(); a != "" {
		t.Errorf("Addr before Start = %q", a)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	addr := s.Addr()
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addr = %q", addr)
	}

	client := &http.Client{Transport: &http.Transport{}}
	type result struct {
		status int
		body   string
		err    error
	}
	results := make(chan result, 1)
	go func() {
		resp, err := client.Do(authed(t, http.MethodPost, "http://"+addr+"/goim/push/room?operation=1&type=live&room=1000", "hello"))
		if err != nil {
			results <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		results <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	<-svc.entered // the push is in flight

	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- s.Shutdown(context.Background()) }()
	// Shutdown closes the listener at once but waits for the push.
	waitFor(t, 5*time.Second, func() error {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			_ = conn.Close()
			return errors.New("listener still open")
		}
		return nil
	})
	select {
	case err := <-shutdownDone:
		t.Fatalf("Shutdown returned %v with a push in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(svc.block)
	if err := <-shutdownDone; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	r := <-results
	if r.err != nil || r.status != 200 || r.body != okJSON {
		t.Errorf("in-flight push: %d %q %v, want 200 %s", r.status, r.body, r.err, okJSON)
	}
	if calls := svc.Calls(); len(calls) != 1 || calls[0].Room != "live://1000" || string(calls[0].Msg) != "hello" {
		t.Errorf("calls = %+v", calls)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
	client.CloseIdleConnections()
	waitFor(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > base {
			return errors.New("goroutines leaked: " + strings.Repeat("|", n-base) + "\n" + goroutines())
		}
		return nil
	})
}

// TestShutdownDeadline: when ctx ends with a push still blocked, Shutdown
// cancels it, closes the connections and returns ctx's error.
func TestShutdownDeadline(t *testing.T) {
	base := runtime.NumGoroutine()
	svc := &fakeService{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	defer close(svc.block)
	s := startServer(t, testConfig(), svc)
	client := &http.Client{Transport: &http.Transport{}}
	done := make(chan error, 1)
	go func() {
		resp, err := client.Do(authed(t, http.MethodPost, "http://"+s.Addr()+"/goim/push/all?operation=1", "x"))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		done <- err
	}()
	<-svc.entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	if err := s.Shutdown(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Shutdown = %v, want the first result", err)
	}
	<-done // the handler saw its context cancelled and returned; the client got an error or a 500
	client.CloseIdleConnections()
	waitFor(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > base {
			return errors.New("goroutines leaked:\n" + goroutines())
		}
		return nil
	})
}

func TestShutdownWithoutStart(t *testing.T) {
	s, _ := newTestServer(t, testConfig(), &fakeService{})
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
}

func TestStartBindError(t *testing.T) {
	a := startServer(t, testConfig(), &fakeService{})
	cfg := testConfig()
	cfg.Bind = a.Addr()
	b, _ := newTestServer(t, cfg, &fakeService{})
	if err := b.Start(); err == nil {
		t.Errorf("Start on a bound address succeeded")
	}
}

// authed is a request carrying testToken.
func authed(t testing.TB, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", bearer)
	return req
}

func goroutines() string {
	buf := make([]byte, 1<<16)
	return string(buf[:runtime.Stack(buf, true)])
}

// TestShutdownSilentConn: a connection that never sent a request (browsers
// open spare ones) does not hold Shutdown: net/http alone would wait 5 s
// for it, past this test's 3 s deadline.
func TestShutdownSilentConn(t *testing.T) {
	s := startServer(t, testConfig(), &fakeService{})
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The server has seen it when a request on another connection is served.
	resp, err := http.DefaultClient.Do(authed(t, http.MethodGet, "http://"+s.Addr()+"/goim/nodes/instances", ""))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a silent connection open: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatalf("silent connection still open after Shutdown (read %d bytes)", n)
	}
}
