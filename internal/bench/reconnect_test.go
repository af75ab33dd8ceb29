package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/testkit"
)

// nodesServer is a logic's /goim/nodes/weighted: it lists nodes with
// port and the backoff hint, and counts the requests; fail makes it
// answer 500.
type nodesServer struct {
	*httptest.Server
	requests atomic.Int64
	fail     atomic.Bool
}

func startNodesServer(t *testing.T, port int, backoff string, nodes ...string) *nodesServer {
	t.Helper()
	s := &nodesServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if s.fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"code":-500,"message":"down"}`)
			return
		}
		_, _ = fmt.Fprintf(w, `{"code":0,"message":"","data":{"tcp_port":%d,"ws_port":%d,"nodes":["%s"],"backoff":%s}}`,
			port, port, strings.Join(nodes, `","`), backoff)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestNodesSource: concurrent questions share one request a second; a
// failing logic is skipped for the next one, and the URLs alternate.
func TestNodesSource(t *testing.T) {
	const hint = `{"max_delay":2,"base_delay":1,"factor":2,"jitter":0}`
	a := startNodesServer(t, 3101, hint, "127.0.0.2")
	b := startNodesServer(t, 3101, hint, "127.0.0.3")
	var errs atomic.Int64
	s := newNodesSource(&ConnsConfig{APIs: []string{a.URL, b.URL}, Transport: TransportTCP, Platform: "web"},
		func(error) { errs.Add(1) })
	defer s.close()
	var wg sync.WaitGroup
	got := make([]nodesAnswer, 50)
	for i := range got {
		wg.Go(func() { got[i] = s.get(t.Context()) })
	}
	wg.Wait()
	for _, n := range got {
		if len(n.Addrs) != 1 || n.Addrs[0] != "127.0.0.2:3101" || n.Backoff.Base != time.Second {
			t.Fatalf("answer %+v", n)
		}
	}
	if a.requests.Load() != 1 || b.requests.Load() != 0 {
		t.Fatalf("requests: %d and %d, want 1 and 0", a.requests.Load(), b.requests.Load())
	}
	// The next answer comes from the other logic.
	s.mu.Lock()
	s.at = time.Now().Add(-nodesMaxAge)
	s.mu.Unlock()
	if n := s.get(t.Context()); n.Addrs[0] != "127.0.0.3:3101" {
		t.Fatalf("second answer %+v, want the other logic's", n)
	}
	// Both failing: the last answer stays in force, each failure counted.
	a.fail.Store(true)
	b.fail.Store(true)
	s.mu.Lock()
	s.at = time.Time{}
	s.mu.Unlock()
	if n := s.get(t.Context()); n.Addrs[0] != "127.0.0.3:3101" || errs.Load() != 2 {
		t.Fatalf("with both down: %+v, %d errors", n, errs.Load())
	}
}

// TestConnsReconnect: connections the comet drops come back through the
// nodes logic names, after the backoff it hints; a node that refuses is
// counted and skipped.
func TestConnsReconnect(t *testing.T) {
	const n = 6
	var mu sync.Mutex
	seen := map[string]int{}
	comet := startFakeComet(t, func(a protocol.AuthBody) [][]byte {
		mu.Lock()
		defer mu.Unlock()
		seen[a.Key]++
		if seen[a.Key] == 1 {
			return [][]byte{nil} // the first connection of each key is dropped
		}
		return nil
	})
	_, p, _ := net.SplitHostPort(comet.ln.Addr().String())
	var port int
	fmt.Sscan(p, &port)
	// 127.0.0.1 serves; nothing listens on 127.0.0.9 (refused).
	nodes := startNodesServer(t, port, `{"max_delay":1,"base_delay":0.2,"factor":2,"jitter":0.5}`, "127.0.0.9", "127.0.0.1")
	before := runtime.NumGoroutine()
	c, err := NewConns(ConnsConfig{Run: "rc", N: n, Transport: TransportTCP, Addrs: []string{comet.ln.Addr().String()},
		DialConcurrency: n, HandshakeTimeout: 5 * time.Second, Heartbeat: time.Second, KeyPrefix: "k",
		Reconnect: true, APIs: []string{nodes.URL}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Open(context.Background())
	testkit.WaitFor(t, 10*time.Second, func() error {
		if r, up := c.reconnects.Load(), c.alive.Load(); r != n || up != n {
			return fmt.Errorf("%d reconnected, %d up", r, up)
		}
		return nil
	})
	c.Close()
	r := c.Record()
	if !r.Reconnect || r.Drops != n || r.Reconnects != n || r.ReconnectAttempts != n || r.Errors["read/eof"] != n {
		t.Fatalf("record: reconnect %v, drops %d, reconnects %d, attempts %d, errors %v", r.Reconnect, r.Drops, r.Reconnects, r.ReconnectAttempts, r.Errors)
	}
	// Half of the connections start at the refusing node.
	if got := r.Errors["reconnect_dial/refused"]; got != n/2 {
		t.Errorf("%d refused dials, want %d", got, n/2)
	}
	for _, cr := range r.Conns {
		if cr.Reconnects != 1 || cr.Down != 0 {
			t.Errorf("conn %d: %d reconnects, down %d", cr.Index, cr.Reconnects, cr.Down)
		}
	}
	// The first wait follows the hint: 200 ms ± 50 %.
	if fw := r.FirstWait; fw.N != n || fw.Min < int64(100*time.Millisecond) || fw.Max > int64(300*time.Millisecond) {
		t.Errorf("first waits: %d, min %v, max %v; want %d within 100..300 ms", fw.N, time.Duration(fw.Min), time.Duration(fw.Max), n)
	}
	if rt := r.ReconnectTime; rt.N != n || rt.Min < int64(100*time.Millisecond) {
		t.Errorf("reconnect times: %d, min %v", rt.N, time.Duration(rt.Min))
	}
	if got := nodes.requests.Load(); got < 1 || got > 4 {
		t.Errorf("%d nodes requests for %d reconnects within about a second, want 1..4", got, n)
	}
	s := &Summary{Conns: summarizeConns([]*ConnsRecord{r})}
	s.judge()
	if !s.OK || s.Conns.Reconnects != n || s.Conns.Dropped != 0 || s.Conns.ReconnectTime.Count != n {
		t.Fatalf("summary %+v, failures %q", s.Conns, s.Failures)
	}
	var text strings.Builder
	if err := WriteText(&text, s); err != nil || !strings.Contains(text.String(), fmt.Sprintf("reconnect: %d drops, %d reconnected in %d attempts", n, n, n)) {
		t.Fatalf("text summary (%v):\n%s", err, text.String())
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if g := runtime.NumGoroutine(); g > before {
			return fmt.Errorf("%d goroutines, %d before", g, before)
		}
		return nil
	})
}

// TestConnsReconnectClose: Close ends connections waiting to reconnect
// (a long backoff) at once; they stay counted as down.
func TestConnsReconnectClose(t *testing.T) {
	comet := startFakeComet(t, func(protocol.AuthBody) [][]byte { return [][]byte{nil} })
	nodes := startNodesServer(t, 1, `{"max_delay":60,"base_delay":60,"factor":1,"jitter":0}`, "127.0.0.1")
	c, err := NewConns(ConnsConfig{Run: "rc", N: 3, Transport: TransportTCP, Addrs: []string{comet.ln.Addr().String()},
		DialConcurrency: 3, HandshakeTimeout: 5 * time.Second, Heartbeat: time.Second, Reconnect: true, APIs: []string{nodes.URL}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Open(context.Background())
	testkit.WaitFor(t, 5*time.Second, func() error {
		if d := c.dropped.Load(); d != 3 {
			return fmt.Errorf("%d dropped", d)
		}
		return nil
	})
	began := time.Now()
	c.Close()
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Close took %v with connections waiting a 60 s backoff", took)
	}
	s := &Summary{Conns: summarizeConns([]*ConnsRecord{c.Record()})}
	s.judge()
	if s.OK || s.Conns.Dropped != 3 || s.Conns.Reconnects != 0 || !strings.Contains(strings.Join(s.Failures, ";"), "3 connections were down at the end") {
		t.Fatalf("summary %+v, failures %q", s.Conns, s.Failures)
	}
}

func TestConnsConfigReconnect(t *testing.T) {
	base := ConnsConfig{Run: "r", N: 1, Transport: TransportTCP, Addrs: []string{"127.0.0.1:1"}, DialConcurrency: 1,
		HandshakeTimeout: time.Second, Heartbeat: time.Second, ReadBuffer: 1024}
	for _, tc := range []struct {
		name string
		edit func(*ConnsConfig)
		want string
	}{
		{name: "no API", edit: func(c *ConnsConfig) { c.Reconnect = true }, want: "-reconnect needs"},
		{name: "not a URL", edit: func(c *ConnsConfig) { c.Reconnect, c.APIs = true, []string{"127.0.0.1:3111"} }, want: "-api"},
		{name: "valid", edit: func(c *ConnsConfig) { c.Reconnect, c.APIs = true, []string{"http://127.0.0.1:3111"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			err := c.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
	c := base
	c.Reconnect, c.APIs = true, []string{"http://192.0.2.1:3111"}
	if err := c.CheckTargets(t.Context()); err == nil {
		t.Fatal("a remote API passed the loopback check")
	}
}
