package allinone

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/testkit"
)

// TestHeartbeatPolicy: the heartbeat period and the number of periods a
// client may stay silent are logic's [node] heartbeat and heartbeat_max,
// told to clients by /goim/nodes/weighted and enforced by the comet. With
// a period of 1 s (the default is goim v2's 4 minutes; the policy is the
// same, only shorter), a client that heartbeats once per period stays
// connected for three times the session timeout and still gets a push,
// while a client silent after its auth is closed, no earlier than the
// session timeout, and counted as heartbeat_timeout.
func TestHeartbeatPolicy(t *testing.T) {
	const (
		period = time.Second
		missed = 2 // heartbeat_max
	)
	d := testkit.Discovery(t, "allinone-hb-"+testkit.RandomHex(4))
	cfg := Default()
	port := func() string { return testkit.FreeAddr(t) }
	cfg.Kafka.Port = testkit.FreePort(t)
	cfg.Redis.Listen = port()
	cfg.Discovery.Nodes, cfg.Discovery.Env = d.Nodes, d.Env // Wire gives the services [discovery] env
	cfg.Logic.Discovery, cfg.Job.Discovery, cfg.Comet.Discovery = d, d, d
	cfg.Logic.Auth.Insecure = true
	cfg.Logic.HTTP.AllowAnonymous = true
	cfg.Logic.Node.Heartbeat = conf.Duration(period)
	cfg.Logic.Node.HeartbeatMax = missed
	cfg.Logic.HTTP.Bind, cfg.Logic.RPC.Bind, cfg.Logic.Admin.Addr = port(), port(), port()
	cfg.Comet.TCP.Bind, cfg.Comet.WebSocket.Bind = []string{port()}, []string{port()}
	cfg.Comet.RPC.Bind, cfg.Comet.Admin.Addr, cfg.Job.Admin.Addr = port(), port(), port()
	cfg.Comet.Host, cfg.Logic.Host, cfg.Job.Host = "hb-c1", "hb-l1", "hb-j1"
	cfg.Comet.Drain.InterruptWindow = conf.Duration(100 * time.Millisecond)
	cfg.Wire()
	c, err := Start(cfg, Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	testkit.WaitFor(t, 20*time.Second, c.Ready)
	api := "http://" + c.HTTPAddr()

	// What clients are told.
	var nodes struct {
		Data struct {
			Heartbeat    int `json:"heartbeat"`
			HeartbeatMax int `json:"heartbeat_max"`
		} `json:"data"`
	}
	getJSON(t, api+"/goim/nodes/weighted?platform=android", &nodes)
	if nodes.Data.Heartbeat != int(period/time.Second) || nodes.Data.HeartbeatMax != missed {
		t.Fatalf("nodes answer heartbeat %d × %d, want %d × %d", nodes.Data.Heartbeat, nodes.Data.HeartbeatMax, int(period/time.Second), missed)
	}
	timeout := period * missed

	alive := dialHB(t, cfg.Comet.TCP.Bind[0], `{"mid":11,"key":"alive","room_id":"live://hb","accepts":[1000]}`)
	silent := dialHB(t, cfg.Comet.TCP.Bind[0], `{"mid":12,"key":"silent","room_id":"live://hb","accepts":[1000]}`)
	stop := alive.heartbeatEvery(period)
	defer stop()

	// The silent client is closed once its session timeout has passed.
	select {
	case <-silent.closed:
	case <-time.After(timeout + 10*time.Second):
		t.Fatalf("the silent client is still open %v after its auth (session timeout %v)", time.Since(silent.sent), timeout)
	}
	if lived := silent.closedAt.Sub(silent.sent); lived < timeout {
		t.Fatalf("the silent client was closed %v after it sent its auth, before the session timeout %v", lived, timeout)
	}

	// The heartbeating client is held for three session timeouts in all.
	hold := time.Until(alive.sent.Add(3 * timeout))
	select {
	case <-alive.closed:
		t.Fatalf("the client heartbeating every %v was closed after %v (%d heartbeat replies)",
			period, alive.closedAt.Sub(alive.sent), alive.replies.Load())
	case <-time.After(hold):
	}
	if n := alive.replies.Load(); n < 2 {
		t.Fatalf("%d heartbeat replies in %v: the heartbeats were not answered", n, 3*timeout)
	}
	resp, err := http.Post(api+"/goim/push/keys?operation=1000&keys=alive", "text/plain", strings.NewReader("still here"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !testkit.IsPushAnswer(b) {
		t.Fatalf("push: %d %s", resp.StatusCode, b)
	}
	select {
	case body := <-alive.pushes:
		if body != "still here" {
			t.Fatalf("push %q", body)
		}
	case <-alive.closed:
		t.Fatal("the heartbeating client was closed before the push")
	case <-time.After(10 * time.Second):
		t.Fatal("no push reached the heartbeating client")
	}

	testkit.WaitFor(t, 5*time.Second, func() error {
		m := metricsText(t, "http://"+cfg.Comet.Admin.Addr+"/metrics")
		if !strings.Contains(m, `goim_comet_closes_total{reason="heartbeat_timeout"} 1`+"\n") {
			return fmt.Errorf("the comet has not counted one heartbeat_timeout close")
		}
		return nil
	})
}

// hbClient is a TCP client whose reader records heartbeat replies and
// pushes until the connection closes.
type hbClient struct {
	conn     *client.Conn
	sent     time.Time // just before the dial that sent the auth frame
	replies  atomic.Int64
	pushes   chan string
	closed   chan struct{} // closed by the reader at EOF or error
	closedAt time.Time     // set before closed is closed
}

func dialHB(t *testing.T, addr, auth string) *hbClient {
	t.Helper()
	sent := time.Now()
	conn, err := client.DialBody(context.Background(), addr, []byte(auth), client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := &hbClient{conn: conn, sent: sent, pushes: make(chan string, 16), closed: make(chan struct{})}
	t.Cleanup(func() {
		_ = conn.Close()
		<-c.closed
	})
	go func() {
		defer close(c.closed)
		for {
			err := conn.ReadFrames(func(f client.Frame) {
				switch f.Op {
				case protocol.OpHeartbeatReply:
					c.replies.Add(1)
				case 1000:
					select {
					case c.pushes <- string(f.Body):
					default: // the test reads at most a few
					}
				}
			})
			if err != nil {
				c.closedAt = time.Now()
				return
			}
		}
	}()
	return c
}

// heartbeatEvery sends a heartbeat every period until the returned func
// is called or the connection closes.
func (c *hbClient) heartbeatEvery(period time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-c.closed:
				return
			case <-tk.C:
			}
			if err := c.conn.Heartbeat(); err != nil {
				return
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func metricsText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
