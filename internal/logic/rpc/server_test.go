package rpc

import (
	"context"
	"net"
	"testing"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
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

// TestServer: a handler's panic is answered Internal and the server keeps
// serving; every call is counted by method and code.
func TestServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	gs, err := NewServer(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(reg, nil); err == nil {
		t.Fatal("registering the metrics twice on one registry succeeded")
	}
	logicpb.RegisterLogicServer(gs, panicky{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := logicpb.NewLogicClient(conn)
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
