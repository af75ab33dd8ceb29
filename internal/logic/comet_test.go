package logic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/testkit"
)

// startComet runs a real comet against logic's gRPC service.
func startComet(t *testing.T, host, logicAddr string, disc discovery.Config, addrs ...string) *comet.Server {
	t.Helper()
	cfg := comet.Default()
	cfg.Host = host
	cfg.TCP.Bind = []string{"127.0.0.1:0"}
	cfg.WebSocket.Bind = []string{"127.0.0.1:0"}
	cfg.RPC.Bind = "127.0.0.1:0"
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Logic.Addrs = []string{logicAddr}
	cfg.Logic.ReportInterval = conf.Duration(100 * time.Millisecond)
	cfg.RPC.Secrets = []string{testRPCSecret}
	cfg.Discovery = disc
	cfg.Node.Addrs = addrs
	srv, err := comet.New(cfg, comet.Deps{Logger: testkit.Logger(t)})
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

// dialTCP connects to the comet at addr over TCP and authenticates with
// body (the client package's connection); the test closes it at cleanup.
func dialTCP(t *testing.T, addr string, body []byte) (*client.Conn, error) {
	t.Helper()
	c, err := client.DialBody(context.Background(), addr, body, client.DialOptions{HandshakeTimeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, nil
}

// readFrame reads the next frame within 5 s; its body is the caller's.
func readFrame(c *client.Conn) (client.Frame, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got client.Frame
	n := 0
	for n == 0 {
		if err := c.ReadFrames(func(f client.Frame) {
			if n++; n == 1 {
				got = client.Frame{Op: f.Op, Seq: f.Seq, Body: bytes.Clone(f.Body)}
			}
		}); err != nil {
			return got, err
		}
	}
	return got, nil
}

// TestWithComet runs a real comet against this logic, both in discovery:
// a client authenticates with a signed token, its session routes a push,
// the comet's reports drive online counts and the nodes list, and a
// draining comet leaves the list.
func TestWithComet(t *testing.T) {
	env := "logic-test-" + testkit.RandomHex(4)
	e := startLogic(t, func(c *Config) { c.Discovery = testkit.Discovery(t, env) })
	cm := startComet(t, "comet-it", e.srv.RPCAddr(), testkit.Discovery(t, env), "203.0.113.7")

	cl, err := dialTCP(t, cm.Addrs("tcp")[0].String(), authBody(token(t, 77, "live://1000"), "live://1000", 1000))
	if err != nil {
		t.Fatalf("auth: %v", err)
	}
	// The session routes a mids push to this comet.
	e.push("/goim/push/mids?operation=1000&mids=77", []byte("hello"))
	got := e.pushed(1)
	if m := got[0].msg; m.Server != "comet-it" || len(m.Keys) != 1 || string(m.Msg) != "hello" {
		t.Fatalf("push %+v", m)
	}

	// Online counts follow the comet's reports.
	testkit.WaitFor(t, 5*time.Second, func() error {
		if _, b := e.do("GET", "/goim/online/total", nil); b != `{"code":0,"message":"","data":{"conn_count":1,"ip_count":1}}` {
			return errors.New(b)
		}
		if _, b := e.do("GET", "/goim/online/room?type=live&rooms=1000,2000", nil); b != `{"code":0,"message":"","data":{"1000":1,"2000":0}}` {
			return errors.New(b)
		}
		if _, b := e.do("GET", "/goim/online/top?type=live&limit=10", nil); b != `{"code":0,"message":"","data":[{"room_id":"1000","count":1}]}` {
			return errors.New(b)
		}
		return nil
	})
	// The heartbeat reply carries the room's cluster count from logic.
	if err := cl.Heartbeat(); err != nil {
		t.Fatal(err)
	}
	if p, err := readFrame(cl); err != nil || p.Op != protocol.OpHeartbeatReply || len(p.Body) != 4 || p.Body[3] != 1 {
		t.Fatalf("heartbeat reply %+v, %v", p, err)
	}

	// The comet is in discovery with its public address.
	testkit.WaitFor(t, 5*time.Second, func() error {
		_, b := e.do("GET", "/goim/nodes/weighted?platform=android", nil)
		if !strings.Contains(b, `"nodes":["203.0.113.7"]`) {
			return errors.New(b)
		}
		return nil
	})
	var inst struct {
		Code int                  `json:"code"`
		Data []discovery.Instance `json:"data"`
	}
	_, b := e.do("GET", "/nodes/instances", nil)
	if err := json.Unmarshal([]byte(b), &inst); err != nil || inst.Code != 0 || len(inst.Data) != 1 {
		t.Fatalf("instances %s: %v", b, err)
	}
	if ins := inst.Data[0]; ins.AppID != discovery.AppComet || ins.Hostname != "comet-it" || ins.Env != env ||
		ins.Metadata["conn_count"] != "1" || ins.Metadata["offline"] != "false" || ins.Metadata["addrs"] != "203.0.113.7" ||
		len(ins.Addrs) != 1 || !strings.HasPrefix(ins.Addrs[0], "grpc://") || ins.LatestTimestamp == 0 {
		t.Fatalf("instance %+v", ins)
	}

	// Draining: the comet reports it at once; logic drops it from the
	// nodes list well before discovery's metadata would say so.
	start := time.Now()
	go cm.Drain(context.Background(), 0)
	testkit.WaitFor(t, 3*time.Second, func() error {
		_, b := e.do("GET", "/goim/nodes/weighted?platform=android", nil)
		if !strings.Contains(b, `"nodes":["127.0.0.1"]`) {
			return errors.New(b)
		}
		return nil
	})
	t.Logf("draining comet left the nodes list after %v", time.Since(start))
	_, b = e.do("GET", "/goim/nodes/instances", nil)
	if !strings.Contains(b, `"offline":"true"`) {
		t.Fatalf("instances after drain: %s", b)
	}
	// Disconnect on close removed the session.
	testkit.WaitFor(t, 5*time.Second, func() error {
		keys, err := e.redis.Do("HGETALL", e.prefix+"mid_77")
		if err != nil {
			return err
		}
		if n := len(keys.([]any)); n != 0 {
			return fmt.Errorf("mid_77 still has %d fields", n/2)
		}
		return nil
	})
}

// TestCometRejectedToken: a comet closes a connection whose token logic
// refuses, without an auth reply.
func TestCometRejectedToken(t *testing.T) {
	e := startLogic(t, nil)
	cm := startComet(t, "comet-rej", e.srv.RPCAddr(), discovery.DefaultConfig())
	_, err := dialTCP(t, cm.Addrs("tcp")[0].String(), authBody("not.a.token", ""))
	var ae *client.AuthError
	if !errors.As(err, &ae) || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("refused token: %v, want the connection closed before an auth reply", err)
	}
}
