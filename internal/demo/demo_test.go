package demo_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/demo"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/browser"
	"github.com/goim/goim/internal/testkit/cluster"
	"github.com/goim/goim/internal/testkit/jobtest"
)

func TestHandler(t *testing.T) {
	h := demo.Handler()

	t.Run("get", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/demo?ws=ws://127.0.0.1:1/sub", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		for name, want := range map[string]string{
			"Content-Type":           "text/html; charset=utf-8",
			"Cache-Control":          "no-store",
			"X-Content-Type-Options": "nosniff",
		} {
			if got := rec.Header().Get(name); got != want {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
		body := rec.Body.String()
		csp := rec.Header().Get("Content-Security-Policy")
		for _, want := range []string{
			"default-src 'none'",
			"connect-src 'self' ws: wss:",
			"script-src 'self' " + hashOf(t, body, `<script type="module">`, "</script>"),
			"style-src " + hashOf(t, body, "<style>", "</style>"),
			"base-uri 'none'",
			"frame-ancestors 'none'",
		} {
			if !strings.Contains(csp, want) {
				t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("Content-Security-Policy %q allows unsafe sources", csp)
		}
		// Self-contained: nothing is loaded from anywhere, the machines
		// are offline.
		for _, bad := range []string{"http://", "https://", "//cdn", "@import", "url("} {
			if strings.Contains(body, bad) {
				t.Errorf("page contains %q", bad)
			}
		}
		for _, m := range regexp.MustCompile(`(?i)\b(src|href|action)\s*=\s*["']?([^"' >]*)`).FindAllStringSubmatch(body, -1) {
			if !strings.HasPrefix(m[2], "data:") {
				t.Errorf("page refers to %s=%q", m[1], m[2])
			}
		}
		if !strings.Contains(body, "import { Client } from '/goim.js';") {
			t.Error("page does not import the client from /goim.js")
		}
		for _, id := range []string{"status", "messages", "push-form", "push-type", "push-room", "push-op", "push-msg", "push-send", "push-result"} {
			if !strings.Contains(body, `id="`+id+`"`) {
				t.Errorf("page has no #%s", id)
			}
		}
	})

	t.Run("head", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/demo", nil))
		if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Security-Policy") == "" {
			t.Fatalf("status %d, %d body bytes, headers %v", rec.Code, rec.Body.Len(), rec.Header())
		}
	})

	t.Run("post", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/demo", strings.NewReader("x")))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Fatalf("status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
		}
	})
}

// hashOf is the CSP source of the page's one inline element that opens
// with open and closes with end.
func hashOf(t *testing.T, body, open, end string) string {
	t.Helper()
	parts := strings.Split(body, open)
	if len(parts) != 2 {
		t.Fatalf("page has %d %s elements, want 1", len(parts)-1, open)
	}
	inner, _, ok := strings.Cut(parts[1], end)
	if !ok {
		t.Fatalf("%s not closed", open)
	}
	sum := sha256.Sum256([]byte(inner))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// TestBrowser loads /demo from a real logic in headless Chromium, lets it
// join a room on a real comet over WebSocket, and checks that pushes from
// Go and from the page's form (both through Kafka and a real job) show up
// in the page.
//
// Each case starts its browser after its cluster, so the browser closes
// first at cleanup: logic's HTTP shutdown would otherwise wait for the
// sockets Chromium opened ahead of use (net/http gives a connection that
// never sent a request 5 s).
func TestBrowser(t *testing.T) {
	t.Run("ws parameter", func(t *testing.T) {
		d := startDemo(t, "")
		q := url.Values{"ws": {"ws://" + d.wsAddr + "/sub"}, "room": {"live://" + d.room}}
		d.roundTrip(t, browser.Start(t), q)
	})

	t.Run("nodes discovery", func(t *testing.T) {
		// logic hands out default_domain and ws_port (no discovery in the
		// cluster): point them at the comet's WebSocket listener.
		d := startDemo(t, testkit.FreeAddr(t))
		d.roundTrip(t, browser.Start(t), url.Values{"room": {"live://" + d.room}, "mid": {"42"}})
	})
}

// demoCluster is logic serving /demo, one comet and a job on loopback.
type demoCluster struct {
	c      *cluster.Cluster
	wsAddr string // the comet's WebSocket listener
	room   string // a room id of the test's own, type live
}

// startDemo starts the cluster. With wsAddr set, the comet's WebSocket
// listens there and logic's nodes answer names it.
func startDemo(t *testing.T, wsAddr string) *demoCluster {
	t.Helper()
	// The page pushes from the browser without a credential, as it does in
	// the all-in-one, whose dev config sets [logic.http] allow_anonymous.
	opts := cluster.Options{Pages: map[string]http.Handler{"/demo": demo.Handler()}}
	var host string
	var port int
	if wsAddr != "" {
		h, p, err := net.SplitHostPort(wsAddr)
		if err != nil {
			t.Fatal(err)
		}
		host = h
		port, _ = strconv.Atoi(p)
	}
	opts.Logic = func(cfg *logic.Config) {
		cfg.HTTP.Tokens, cfg.HTTP.AllowAnonymous = nil, true
		if wsAddr != "" {
			cfg.Node.DefaultDomain = host
			cfg.Node.WSPort = port
		}
	}
	c := cluster.StartWith(t, 0, opts)
	srv := c.StartCometWith("comet-1", func(cfg *comet.Config) {
		if wsAddr != "" {
			cfg.WebSocket.Bind = []string{wsAddr}
		}
	})
	jobtest.Start(t, c, "job-demo-test")
	return &demoCluster{c: c, wsAddr: srv.Addrs("ws")[0].String(), room: "demo-" + testkit.RandomHex(6)}
}

// roundTrip runs browser.DemoRoundTrip on /demo with query q, pushing to
// the test's room through logic's HTTP API.
func (d *demoCluster) roundTrip(t *testing.T, ctx context.Context, q url.Values) {
	t.Helper()
	page := d.c.API + "/demo?" + q.Encode()
	push := func(msg string) error {
		path := "/goim/push/room?" + url.Values{"operation": {"1000"}, "type": {"live"}, "room": {d.room}}.Encode()
		resp, err := http.Post(d.c.API+path, "text/plain", strings.NewReader(msg))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !testkit.IsPushAnswer(b) {
			return fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, b)
		}
		return nil
	}
	if err := browser.DemoRoundTrip(ctx, page, push); err != nil {
		t.Fatalf("%s: %v", page, err)
	}
}
