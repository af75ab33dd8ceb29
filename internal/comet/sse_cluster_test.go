package comet_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/testkit/browser"
	"github.com/goim/goim/internal/testkit/cluster"
	"github.com/goim/goim/internal/testkit/jobtest"
	"github.com/golang-jwt/jwt/v5"
)

// event is one SSE event as EventSource would dispatch it.
type event struct{ name, data string }

// stream reads an SSE response's events, skipping comments and retry.
type stream struct {
	t    *testing.T
	body io.ReadCloser
	br   *bufio.Reader
}

// get requests the SSE path of comet host with query and returns the
// response, its body open until the test ends.
func get(t *testing.T, c *cluster.Cluster, host, query string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Comets[host].Addrs("ws")[0].String()+"/sse?"+query, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
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

// open opens an accepted stream and reads up to its auth event.
func open(t *testing.T, c *cluster.Cluster, host, query string) *stream {
	t.Helper()
	resp := get(t, c, host, query)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET ?%s: status %d", query, resp.StatusCode)
	}
	s := &stream{t: t, body: resp.Body, br: bufio.NewReader(resp.Body)}
	if ev := s.next(); ev.name != "auth" {
		t.Fatalf("first event %+v, want auth", ev)
	}
	return s
}

// next returns the next event, within 20 s (a push goes through logic,
// Kafka and job).
func (s *stream) next() event {
	s.t.Helper()
	timer := time.AfterFunc(20*time.Second, func() { s.body.Close() })
	defer timer.Stop()
	var ev event
	var data []string
	seen := false
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			s.t.Fatalf("stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if seen && ev.name != "" {
				ev.data = strings.Join(data, "\n")
				return ev
			}
			ev, data, seen = event{}, nil, false
			continue
		}
		if strings.HasPrefix(line, ":") {
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
		}
	}
}

// TestSSEDeliveries: pushes through the push API, Kafka and job reach an
// SSE stream: room, key and user pushes, the key and user ones filtered
// by the stream's accepts.
func TestSSEDeliveries(t *testing.T) {
	c := cluster.Start(t, 1)
	jobtest.Start(t, c, "job-sse")
	s := open(t, c, "comet-1", "key=sse-k1&mid=4242&room=live://sse1&accepts=1000")
	c.WaitOnline(1)

	c.Push("/goim/push/room?operation=1000&type=live&room=sse1", "to-room")
	if ev := s.next(); ev != (event{"1000", "to-room"}) {
		t.Fatalf("room push: %+v", ev)
	}
	c.Push("/goim/push/keys?operation=1001&keys=sse-k1", "filtered")
	c.Push("/goim/push/keys?operation=1000&keys=sse-k1", "to-key\nline two")
	if ev := s.next(); ev != (event{"1000", "to-key\nline two"}) {
		t.Fatalf("key push: %+v", ev)
	}
	c.Push("/goim/push/mids?operation=1000&mids=4242", "to-mid")
	if ev := s.next(); ev != (event{"1000", "to-mid"}) {
		t.Fatalf("mid push: %+v", ev)
	}
	c.Push("/goim/push/room?operation=1002&type=live&room=sse1", "\x00\x01")
	if ev := s.next(); ev != (event{"1002.base64", "AAE="}) {
		t.Fatalf("binary room push: %+v", ev)
	}
}

// TestSSESignedAuth: with signed tokens, a valid token opens the stream
// and a bad one is refused 401 (which EventSource does not retry).
func TestSSESignedAuth(t *testing.T) {
	secret := []byte(strings.Repeat("k", 40))
	keyFile := filepath.Join(t.TempDir(), "hmac.key")
	if err := os.WriteFile(keyFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	c := cluster.StartWith(t, 1, cluster.Options{Logic: func(lc *logic.Config) {
		lc.Auth = logic.AuthConfig{HMACKeyFile: keyFile, AnyRoom: true, Leeway: conf.Duration(30 * time.Second)}
	}})
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   "31",
		IssuedAt:  jwt.NewNumericDate(time.Now()),
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	open(t, c, "comet-1", "token="+url.QueryEscape(token)+"&room=live://signed")
	resp := get(t, c, "comet-1", "token="+url.QueryEscape(token+"x"))
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || string(b) != "auth_rejected\n" {
		t.Fatalf("bad token: %d %q", resp.StatusCode, b)
	}
}

// TestSSEChromium: EventSource in Chromium, on a page of another origin
// (the CORS answer), receives a push.
func TestSSEChromium(t *testing.T) {
	ctx := browser.Start(t)
	c := cluster.Start(t, 1)
	jobtest.Start(t, c, "job-sse-browser")
	page := httptest.NewServer(browser.EventSourcePage())
	t.Cleanup(page.Close)
	sse := "http://" + c.Comets["comet-1"].Addrs("ws")[0].String() + "/sse?key=browser-1&room=live://browser&accepts=1000"
	msg := "from-go-to-eventsource ✓"
	err := browser.EventSourceRoundTrip(ctx, page.URL+"/?url="+url.QueryEscape(sse), func() error {
		c.WaitOnline(1)
		c.Push("/goim/push/room?operation=1000&type=live&room=browser", msg)
		return nil
	}, "1000", msg)
	if err != nil {
		t.Fatal(err)
	}
}
