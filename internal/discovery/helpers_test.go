package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/discovery/embedded"
)

// testServer is the one embedded discovery server of this test binary.
var testServer struct {
	once sync.Once
	addr string
	err  error
}

// serverAddr starts the embedded server on first use and returns its
// "127.0.0.1:port".
func serverAddr(t testing.TB) string {
	t.Helper()
	testServer.once.Do(func() {
		port, err := freePort()
		if err != nil {
			testServer.err = err
			return
		}
		testServer.addr = net.JoinHostPort("127.0.0.1", port)
		testServer.err = embedded.StartServer(testServer.addr, testLogger())
	})
	if testServer.err != nil {
		t.Fatalf("embedded discovery server: %v", testServer.err)
	}
	return testServer.addr
}

// freePort returns a TCP port that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	_, port, err := net.SplitHostPort(l.Addr().String())
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	return port, err
}

// deadAddr returns an address on which nothing listens.
func deadAddr(t testing.TB) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", port)
}

func testLogger() *slog.Logger {
	if os.Getenv("DISCOVERY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testConfig is a config with short intervals against the test server.
func testConfig(t testing.TB, host string) Config {
	c := DefaultConfig()
	c.Nodes = []string{serverAddr(t)}
	c.Host = host
	c.RenewInterval = conf.Duration(100 * time.Millisecond)
	c.PollTimeout = conf.Duration(2 * time.Second)
	c.FetchInterval = conf.Duration(300 * time.Millisecond)
	c.RequestTimeout = conf.Duration(2 * time.Second)
	return c
}

// newTestClient returns a client that is closed at the end of the test.
func newTestClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitFor calls check until it returns nil, failing the test with the last
// error after timeout.
func waitFor(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		<-tick.C
	}
}

// rawCall sends one request to the discovery server at addr outside the
// client and returns the response body.
func rawCall(t testing.TB, addr, method, path string, form url.Values, header http.Header) []byte {
	t.Helper()
	u := "http://" + addr + path
	var body io.Reader
	if method == http.MethodGet {
		u += "?" + form.Encode()
	} else {
		body = strings.NewReader(form.Encode())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
	}
	return b
}

// rawCancel deregisters an instance behind its Registration's back.
func rawCancel(t testing.TB, cfg Config, appID, host string) error {
	b := rawCall(t, cfg.Nodes[len(cfg.Nodes)-1], http.MethodPost, "/discovery/cancel", url.Values{
		"zone": {cfg.Zone}, "env": {cfg.Env}, "appid": {appID}, "hostname": {host},
	}, nil)
	r, err := decodeReply(b)
	if err != nil {
		return err
	}
	if r.Code != 0 {
		return fmt.Errorf("cancel: code %d: %s", r.Code, r.Message)
	}
	return nil
}

var errNotYet = errors.New("not yet")
