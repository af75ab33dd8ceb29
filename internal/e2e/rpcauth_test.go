package e2e

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/rpcauth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// rpcConn dials addr as an outsider would: plain gRPC, sending secret
// when it is not empty.
func rpcConn(t *testing.T, addr, secret string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if secret != "" {
		keys, err := rpcauth.Config{Secrets: []string{secret}}.Load()
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, keys.DialOptions()...)
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// testRPCAuth: logic's and comet's gRPC services, reachable on their
// ports, refuse calls without the cluster's rpc secret or with a wrong
// one (Unauthenticated, counted on their admin listeners): a forged
// RenewOnline{draining} does not hide a comet, a forged Broadcast reaches
// no client. A caller with the secret is served.
func testRPCAuth(t *testing.T, c *cluster, cs *clients) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	comet1 := c.comets["comet-1"]
	cometRPC := net.JoinHostPort(comet1.ip, strconv.Itoa(c.ports.rpc))
	wrong := strings.Repeat("w", 64)
	counted := func(admin, name string) float64 {
		t.Helper()
		v, err := metric(admin, name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	t.Run("logic", func(t *testing.T) {
		before := counted(c.logicAdmin, "goim_logic_rpc_unauthenticated_total")
		for _, secret := range []string{"", wrong} {
			l := logicpb.NewLogicClient(rpcConn(t, c.logicRPC, secret))
			if _, err := l.RenewOnline(ctx, &logicpb.OnlineReq{Server: "comet-1", Draining: true}); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("forged RenewOnline (secret %q): %v, want Unauthenticated", secret, err)
			}
			if _, err := l.Heartbeat(ctx, &logicpb.HeartbeatReq{Mid: 1, Key: "c1t", Server: "elsewhere"}); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("forged Heartbeat (secret %q): %v, want Unauthenticated", secret, err)
			}
		}
		if got := counted(c.logicAdmin, "goim_logic_rpc_unauthenticated_total") - before; got != 4 {
			t.Fatalf("logic counted %v refused calls, want 4", got)
		}
		if nodes, err := c.nodes("android"); err != nil || !slices.Contains(nodes, comet1.ip) {
			t.Fatalf("nodes %q (%v): the forged draining report hid comet-1", nodes, err)
		}
		if _, err := logicpb.NewLogicClient(rpcConn(t, c.logicRPC, c.rpcSecret)).Nodes(ctx, &logicpb.NodesReq{Platform: "android"}); err != nil {
			t.Fatalf("Nodes with the secret: %v", err)
		}
	})

	t.Run("comet", func(t *testing.T) {
		admin := comet1.admin(c.ports)
		before := counted(admin, "goim_comet_rpc_unauthenticated_total")
		start := marks(cs.c1t)
		for _, secret := range []string{"", wrong} {
			cm := cometpb.NewCometClient(rpcConn(t, cometRPC, secret))
			forged := &cometpb.BroadcastReq{ProtoOp: 1000, Proto: &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("rpc:forged")}}
			if _, err := cm.Broadcast(ctx, forged); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("forged Broadcast (secret %q): %v, want Unauthenticated", secret, err)
			}
			if _, err := cm.PushMsg(ctx, &cometpb.PushMsgReq{Keys: []string{"c1t"}, ProtoOp: 1000, Proto: forged.Proto}); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("forged PushMsg (secret %q): %v, want Unauthenticated", secret, err)
			}
		}
		if got := counted(admin, "goim_comet_rpc_unauthenticated_total") - before; got != 4 {
			t.Fatalf("comet-1 counted %v refused calls, want 4", got)
		}
		if _, err := cometpb.NewCometClient(rpcConn(t, cometRPC, c.rpcSecret)).Rooms(ctx, &cometpb.RoomsReq{}); err != nil {
			t.Fatalf("Rooms with the secret: %v", err)
		}
		// A real push after the refused ones: it arrives, and nothing
		// forged came before it (a connection's pushes keep their order).
		pushOK(t, c.api+"/goim/push/keys?operation=1000&keys=c1t", "rpc:real")
		cs.c1t.waitBodies(t, "rpc:", 1, 20*time.Second)
		only(t, cs.c1t, start[0], "rpc:real")
	})
}
