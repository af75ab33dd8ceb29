package rpc

import (
	"context"
	"net"
	"strings"
	"testing"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/goim/goim/internal/rpcauth"
)

// panicky answers Connect, panics in Heartbeat and fails Disconnect.
type panicky struct {
	logicpb.UnimplementedLogicServer
}

func (panicky) Connect(context.Context, *logicpb.ConnectReq) (*logicpb.ConnectReply, error) {
	return &logicpb.ConnectReply{Key: "k"}, nil
}

func (panicky) Heartbeat(context.Context, *logicpb.HeartbeatReq) (*logicpb.HeartbeatReply, error) {
	panic("boom")
}

func (panicky) Disconnect(context.Context, *logicpb.DisconnectReq) (*logicpb.DisconnectReply, error) {
	return nil, status.Error(codes.Unavailable, "redis down")
}

// secret is the rpc secret of the tests' server and clients.
var secret = strings.Repeat("s", 32)

// serve starts a server with logic's options (secret required) on
// 127.0.0.1 and returns its registry and address.
func serve(t *testing.T) (*prometheus.Registry, string) {
	t.Helper()
	keys, err := rpcauth.Config{Secrets: []string{secret}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	gs, err := NewServer(reg, nil, keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(reg, nil, keys); err == nil {
		t.Fatal("registering the metrics twice on one registry succeeded")
	}
	logicpb.RegisterLogicServer(gs, panicky{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return reg, ln.Addr().String()
}

// dial returns a client of addr sending secrets[0] (nothing without).
func dial(t *testing.T, addr string, secrets ...string) logicpb.LogicClient {
	t.Helper()
	keys, err := rpcauth.Config{Secrets: secrets, Insecure: len(secrets) == 0}.Load()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, append(keys.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return logicpb.NewLogicClient(conn)
}

// TestServer: a handler's panic is answered Internal and the server keeps
// serving; every call is counted by method and code.
func TestServer(t *testing.T) {
	reg, addr := serve(t)
	c := dial(t, addr, secret)
	ctx := context.Background()

	if _, err := c.Heartbeat(ctx, &logicpb.HeartbeatReq{}); status.Code(err) != codes.Internal {
		t.Fatalf("panicking handler: %v, want Internal", err)
	}
	if r, err := c.Connect(ctx, &logicpb.ConnectReq{}); err != nil || r.Key != "k" {
		t.Fatalf("after a panic: %v, %v", r, err)
	}
	if _, err := c.Disconnect(ctx, &logicpb.DisconnectReq{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Disconnect: %v, want Unavailable", err)
	}
	for _, tc := range []struct{ method, code string }{
		{method: "Heartbeat", code: "Internal"},
		{method: "Connect", code: "OK"},
		{method: "Disconnect", code: "Unavailable"},
	} {
		if n := calls(t, reg, tc.method, tc.code); n != 1 {
			t.Errorf("rpc_requests_total{%s,%s} = %v, want 1", tc.method, tc.code, n)
		}
	}
}

// TestServerAuth: a call without the secret or with a wrong one is
// answered Unauthenticated before the handler runs, and counted.
func TestServerAuth(t *testing.T) {
	reg, addr := serve(t)
	ctx := context.Background()
	wrong := strings.Repeat("w", 32)
	for i, c := range []logicpb.LogicClient{dial(t, addr), dial(t, addr, wrong)} {
		if _, err := c.Connect(ctx, &logicpb.ConnectReq{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("client %d: Connect = %v, want Unauthenticated", i, err)
		}
		if _, err := c.Heartbeat(ctx, &logicpb.HeartbeatReq{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("client %d: Heartbeat = %v, want Unauthenticated (the handler must not run)", i, err)
		}
	}
	if n := counter(t, reg, "goim_logic_rpc_unauthenticated_total"); n != 4 {
		t.Fatalf("goim_logic_rpc_unauthenticated_total = %v, want 4", n)
	}
	if n := calls(t, reg, "Connect", "Unauthenticated"); n != 2 {
		t.Fatalf("rpc_requests_total{Connect,Unauthenticated} = %v, want 2", n)
	}
	if r, err := dial(t, addr, secret).Connect(ctx, &logicpb.ConnectReq{}); err != nil || r.Key != "k" {
		t.Fatalf("with the secret: %v, %v", r, err)
	}
}

// counter reads the counter name, which has no labels.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

// calls reads the rpc_requests_total series of method and code.
func calls(t *testing.T, reg *prometheus.Registry, method, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "goim_logic_rpc_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no rpc_requests_total{method=%q,code=%q}", method, code)
	return 0
}
