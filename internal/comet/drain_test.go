package comet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/testkit"
)

// startRealLogic runs goim's logic (insecure goim v2 auth, a push API token, the shared test
// Redis under a prefix of its own, an in-process Kafka-protocol broker)
// registered in discovery.
func startRealLogic(t *testing.T, disc discovery.Config) *logic.Server {
	t.Helper()
	_, prefix := testkit.Redis(t)
	kc, topic := testkit.Kafka(t, 1)
	cfg := logic.Default()
	cfg.Host = "logic-" + testkit.RandomHex(4)
	cfg.HTTP.Bind, cfg.RPC.Bind, cfg.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Auth = logic.AuthConfig{Insecure: true}
	cfg.HTTP.Tokens = []string{"comet-test-push-api-token-0123456789"} // the push API is not called
	cfg.RPC.Secrets = []string{testRPCSecret}
	cfg.Redis.Addr, cfg.Redis.Prefix = testkit.RedisAddr(), prefix
	cfg.Kafka.Brokers, cfg.Kafka.Topic = kc.ListenAddrs(), topic
	cfg.Discovery = disc
	srv, err := logic.New(cfg, logic.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

func TestDrain(t *testing.T) {
	e := startComet(t, nil)
	const n = 20
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, e, transports[i%len(transports)])
		clients[i].auth(fmt.Sprintf(`{"key":"d%d","room_id":"live://drain","accepts":[]}`, i))
	}
	if err := e.srv.Ready(); err != nil {
		t.Fatalf("ready before the drain: %v", err)
	}
	e.srv.Drain(context.Background(), 200*time.Millisecond)
	if err := e.srv.Ready(); err == nil {
		t.Fatal("ready while draining")
	}
	for _, c := range clients {
		err := c.closedWith()
		// WebSocket clients get a close frame 1001 (going away), not an
		// abnormal end.
		var ce wsutil.ClosedError
		if c.isWS() && (!errors.As(err, &ce) || ce.Code != ws.StatusGoingAway) {
			t.Errorf("%s client closed by %v, want a close frame 1001", c.tr, err)
		}
	}
	waitCloses(t, e, ReasonDrain, n)
	waitFor(t, 2*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			if len(l.disconnects) != n {
				return fmt.Errorf("%d disconnects", len(l.disconnects))
			}
			for _, r := range l.reports {
				if r.Draining {
					return nil
				}
			}
			return fmt.Errorf("no report says draining")
		})
	})
	// New clients are refused: the listeners are closed.
	if c, err := net.DialTimeout("tcp", e.addr("tcp"), time.Second); err == nil {
		_ = c.Close()
		t.Fatal("a new connection was accepted while draining")
	}
}

// TestDiscovery registers the comet, finds logic through discovery, follows
// the load metadata and the drain, and deregisters on shutdown.
func TestDiscovery(t *testing.T) {
	env := "comet-test-" + testkit.RandomHex(4)
	// The real logic registers itself as goim.logic; the comet finds it
	// there.
	startRealLogic(t, testkit.Discovery(t, env))
	e := startComet(t, func(c *Config) {
		c.Host = "comet-disc"
		c.Logic.Addrs = nil // from discovery
		c.Discovery = testkit.Discovery(t, env)
		c.Node.Addrs = []string{"203.0.113.7"}
	})
	// The test's own discovery client is closed (its watcher's goroutines
	// gone) before the comet's cleanup counts goroutines: cleanups run
	// last registered first.
	dc := testkit.Discovery(t, env)
	dc.Host = "test-watcher"
	lc, err := discovery.New(dc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lc.Close() })
	watcher := lc.Watch(t.Context(), discovery.AppComet)
	comet := func() (discovery.Instance, error) {
		for _, ins := range watcher.Instances() {
			if ins.Hostname == "comet-disc" {
				return ins, nil
			}
		}
		return discovery.Instance{}, fmt.Errorf("comet not in discovery: %v", watcher.Instances())
	}
	waitFor(t, 5*time.Second, func() error {
		ins, err := comet()
		if err != nil {
			return err
		}
		md := ins.Metadata
		if len(ins.Addrs) != 1 || ins.Addrs[0] != "grpc://"+e.srv.RPCAddr().String() ||
			md["weight"] != "10" || md["offline"] != "false" || md["addrs"] != "203.0.113.7" {
			return fmt.Errorf("instance %+v", ins)
		}
		return nil
	})

	// Auth goes to the logic found in discovery; the load follows.
	c := dial(t, e, "tcp")
	c.auth(`{"key":"disc","accepts":[]}`)
	waitFor(t, 5*time.Second, func() error {
		ins, err := comet()
		if err != nil {
			return err
		}
		if ins.Metadata["conn_count"] != "1" || ins.Metadata["ip_count"] != "1" {
			return fmt.Errorf("metadata %v", ins.Metadata)
		}
		return nil
	})

	e.srv.Drain(context.Background(), 0)
	waitFor(t, 5*time.Second, func() error {
		ins, err := comet()
		if err != nil {
			return err
		}
		if ins.Metadata["offline"] != "true" {
			return fmt.Errorf("metadata %v", ins.Metadata)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		if _, err := comet(); err == nil {
			return fmt.Errorf("still registered after shutdown")
		}
		return nil
	})
}

// TestShutdownFinalReport: the last report a stopping comet sends says it
// has no clients left, so logic's totals drop at once.
func TestShutdownFinalReport(t *testing.T) {
	e := startComet(t, nil)
	c := dial(t, e, "tcp")
	c.auth(`{"key":"last","room_id":"live://final","accepts":[]}`)
	waitFor(t, 5*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			if n := len(l.reports); n == 0 || l.reports[n-1].ConnCount != 1 {
				return fmt.Errorf("no report with the client yet")
			}
			return nil
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	_ = e.logic.check(func(l *testLogic) error {
		last := l.reports[len(l.reports)-1]
		if last.ConnCount != 0 || len(last.RoomCount) != 0 || !last.Draining || last.Server != e.srv.cfg.Host {
			t.Errorf("last report %+v, want no connections, no rooms, draining", last)
		}
		return nil
	})
}
