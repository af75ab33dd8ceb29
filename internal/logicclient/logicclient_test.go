package logicclient

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
)

// okLogic answers every Defer call.
type okLogic struct {
	logicpb.UnimplementedLogicServer
}

func (okLogic) Defer(context.Context, *logicpb.DeferReq) (*logicpb.DeferReply, error) {
	return &logicpb.DeferReply{}, nil
}

// serve runs an okLogic on loopback that requires secret, until the test
// ends.
func serve(t *testing.T, secret string) string {
	t.Helper()
	keys, err := rpcauth.Config{Secrets: []string{secret}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(keys.ServerOptions(nil, testkit.Logger(t))...)
	logicpb.RegisterLogicServer(gs, okLogic{})
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

// dial is Dial with secret, closed at cleanup.
func dial(t *testing.T, addrs []string, secret string) (logicpb.LogicClient, func([]string)) {
	t.Helper()
	keys, err := rpcauth.Config{Secrets: []string{secret}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	conn, r, err := Dial(addrs, "job", keys)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	update := func(as []string) {
		var st resolver.State
		for _, a := range as {
			st.Addresses = append(st.Addresses, resolver.Address{Addr: a})
		}
		r.UpdateState(st)
	}
	return logicpb.NewLogicClient(conn), update
}

// TestDial: calls carry the secret to fixed addresses, or to those the
// resolver is fed; a refused secret is FailedPrecondition naming the
// caller and what to fix.
func TestDial(t *testing.T) {
	const secret = "logicclient-test-rpc-secret-0123456789"
	addr := serve(t, secret)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	fixed, _ := dial(t, []string{addr}, secret)
	if _, err := fixed.Defer(ctx, &logicpb.DeferReq{}); err != nil {
		t.Fatalf("Defer to a fixed address: %v", err)
	}

	fed, update := dial(t, nil, secret)
	update([]string{addr}) // as Follow does from discovery
	if _, err := fed.Defer(ctx, &logicpb.DeferReq{}); err != nil {
		t.Fatalf("Defer to a fed address: %v", err)
	}

	wrong, _ := dial(t, []string{addr}, "logicclient-test-another-secret-98765")
	_, err := wrong.Defer(ctx, &logicpb.DeferReq{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "job: logic refused this job's rpc secret") {
		t.Fatalf("Defer with a wrong secret = %v, want FailedPrecondition naming job's secret", err)
	}
}
