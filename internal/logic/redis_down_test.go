package logic

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/testkit"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRedisRestart: with Redis down Connect fails cleanly and pushes that
// need Redis answer -500; when a Redis is back on the same address logic
// recovers by itself, and a heartbeat restores a session the restart lost.
func TestRedisRestart(t *testing.T) {
	port := testkit.FreePort(t)
	rs := testkit.StartRedisServer(t, port)
	e := startLogic(t, func(c *Config) {
		c.Redis.Addr = rs.Addr()
		c.Redis.DialTimeout = conf.Duration(300 * time.Millisecond)
		c.Redis.ReadTimeout = conf.Duration(300 * time.Millisecond)
		c.Redis.WriteTimeout = conf.Duration(300 * time.Millisecond)
	})
	r := e.connect("comet-a", 11, "")
	e.push("/goim/push/mids?operation=1&mids=11", []byte("1"))

	rs.Stop()
	ctx := context.Background()
	if _, err := e.rpc.Connect(ctx, &logicpb.ConnectReq{Server: "comet-a", Token: authBody(token(t, 12), "")}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Connect with Redis down: %v, want Unavailable", err)
	}
	if code, body := e.do("POST", "/goim/push/mids?operation=1&mids=11", []byte("2")); code != 500 || !strings.Contains(body, `"code":-500`) {
		t.Fatalf("push with Redis down: %d %s", code, body)
	}
	// A room push does not need Redis.
	e.push("/goim/push/room?operation=1&type=live&room=1", []byte("3"))
	if e.srv.Ready() == nil {
		t.Fatal("ready with Redis down")
	}

	testkit.StartRedisServer(t, port) // empty: the sessions are gone
	testkit.WaitFor(t, 10*time.Second, func() error {
		_, err := e.rpc.Connect(ctx, &logicpb.ConnectReq{Server: "comet-a", Token: authBody(token(t, 12), "")})
		return err
	})
	if _, err := e.rpc.Heartbeat(ctx, &logicpb.HeartbeatReq{Mid: 11, Key: r.Key, Server: "comet-a"}); err != nil {
		t.Fatal(err)
	}
	e.push("/goim/push/mids?operation=1&mids=11", []byte("4"))
	var bodies []string
	for _, p := range e.pushed(3) {
		bodies = append(bodies, string(p.msg.Msg))
		if p.msg.Type == logicpb.PushMsg_PUSH && (p.msg.Server != "comet-a" || len(p.msg.Keys) != 1 || p.msg.Keys[0] != r.Key) {
			t.Fatalf("push %+v", p.msg)
		}
	}
	if strings.Join(bodies, "") != "143" && strings.Join(bodies, "") != "413" {
		t.Fatalf("published bodies %v, want 1, 4 (PUSH) and 3 (ROOM)", bodies)
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if err := e.srv.Ready(); err != nil {
			return errors.New("not ready again: " + err.Error())
		}
		return nil
	})
}
