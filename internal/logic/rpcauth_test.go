package logic

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/rpcauth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestRPCAuth: logic's gRPC service refuses calls without the rpc secret
// or with a wrong one (Unauthenticated, counted) and serves calls with
// any secret of its file: the first (new) one and the second (the one
// being rotated out, which the env's client sends).
func TestRPCAuth(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	newSecret := "logic-rotated-rpc-secret-" + strings.Repeat("n", 16)
	file := filepath.Join(t.TempDir(), "rpc.secret")
	if err := os.WriteFile(file, []byte(newSecret+"\n"+testRPCSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startLogic(t, func(c *Config) {
		c.RPC.Secrets = nil
		c.RPC.SecretFile = file
	})
	ctx := context.Background()
	unauth := func() float64 {
		t.Helper()
		mfs, err := e.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "goim_logic_rpc_unauthenticated_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no goim_logic_rpc_unauthenticated_total")
		return 0
	}

	conn, err := grpc.NewClient(e.srv.RPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	bare := logicpb.NewLogicClient(conn)
	report := &logicpb.OnlineReq{Server: "forged", Draining: true}
	for name, ctx := range map[string]context.Context{
		"no secret":    ctx,
		"wrong secret": metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.Repeat("w", 40)),
	} {
		before := unauth()
		if _, err := bare.RenewOnline(ctx, report); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%s: RenewOnline = %v, want Unauthenticated", name, err)
		}
		if _, err := bare.Heartbeat(ctx, &logicpb.HeartbeatReq{Mid: 1, Key: "k", Server: "forged"}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%s: Heartbeat = %v, want Unauthenticated", name, err)
		}
		if got := unauth() - before; got != 2 {
			t.Fatalf("%s: %v calls counted, want 2", name, got)
		}
	}
	if e.srv.svc.online.count() != 0 {
		t.Fatal("a refused RenewOnline reached the online reports")
	}

	// The second line of the file (the env's client) and the first.
	if _, err := e.rpc.RenewOnline(ctx, &logicpb.OnlineReq{Server: "comet-old-secret"}); err != nil {
		t.Fatalf("second secret of the file: %v", err)
	}
	withNew := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+newSecret)
	if _, err := bare.RenewOnline(withNew, &logicpb.OnlineReq{Server: "comet-new-secret"}); err != nil {
		t.Fatalf("first secret of the file: %v", err)
	}
	if got := unauth(); got != 4 {
		t.Fatalf("accepted calls were counted: %v", got)
	}
}

// TestRPCSecretRequired: without a secret and without rpc.insecure, New
// refuses; a secret too short is refused too.
func TestRPCSecretRequired(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	cfg := testConfig(t, "unused:", []string{"127.0.0.1:1"}, "unused")
	cfg.RPC.Secrets = nil
	if _, err := New(cfg, Deps{}); err == nil || !strings.Contains(err.Error(), "rpc.secret_file") {
		t.Fatalf("New without a secret: %v", err)
	}
	cfg.RPC.Secrets = []string{"short"}
	if _, err := New(cfg, Deps{}); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("New with a short secret: %v", err)
	}
	cfg.RPC.Secrets = nil
	cfg.RPC.SecretFile = filepath.Join(t.TempDir(), "absent")
	if _, err := New(cfg, Deps{}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("New with a missing secret file: %v", err)
	}
	t.Setenv(rpcauth.EnvSecret, testRPCSecret)
	cfg.RPC.SecretFile = ""
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a secret in %s: %v", rpcauth.EnvSecret, err)
	}
}
