package comet

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cometpb "github.com/goim/goim/api/comet"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/rpcauth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// unauthenticated reads goim_comet_rpc_unauthenticated_total.
func (e *testEnv) unauthenticated(t *testing.T) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "goim_comet_rpc_unauthenticated_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no goim_comet_rpc_unauthenticated_total")
	return 0
}

// cometClient dials the comet's gRPC service with opts.
func cometClient(t *testing.T, e *testEnv, opts ...grpc.DialOption) cometpb.CometClient {
	t.Helper()
	cc, err := grpc.NewClient(e.srv.RPCAddr().String(), append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cometpb.NewCometClient(cc)
}

// TestRPCAuth: the comet's gRPC service refuses calls without the secret
// or with a wrong one (Unauthenticated, counted; nothing is delivered) and
// serves calls with either secret of its file (rotation). The comet sends
// the file's first secret to the test logic, which requires it: the
// client authenticates.
func TestRPCAuth(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	oldSecret := "comet-old-rpc-secret-" + strings.Repeat("o", 16)
	file := filepath.Join(t.TempDir(), "rpc.secret")
	if err := os.WriteFile(file, []byte(testRPCSecret+"\n"+oldSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startComet(t, func(c *Config) {
		c.RPC.Secrets = nil
		c.RPC.SecretFile = file
	})
	c := dial(t, e, "tcp")
	c.auth(`{"mid":1,"key":"k1","room_id":"live://1","accepts":[1000]}`)
	ctx := context.Background()
	push := &cometpb.BroadcastReq{ProtoOp: 1000, Proto: &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("forged")}}

	for name, cl := range map[string]cometpb.CometClient{
		"no secret":    cometClient(t, e),
		"wrong secret": cometClient(t, e, rpcCredentials(t, strings.Repeat("w", 32))...),
	} {
		before := e.unauthenticated(t)
		if _, err := cl.Broadcast(ctx, push); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%s: Broadcast = %v, want Unauthenticated", name, err)
		}
		if _, err := cl.Rooms(ctx, &cometpb.RoomsReq{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%s: Rooms = %v, want Unauthenticated", name, err)
		}
		if got := e.unauthenticated(t) - before; got != 2 {
			t.Fatalf("%s: %v calls counted, want 2", name, got)
		}
	}

	// Both secrets of the file are accepted; the broadcast arrives once.
	if _, err := cometClient(t, e, rpcCredentials(t, oldSecret)...).Rooms(ctx, &cometpb.RoomsReq{}); err != nil {
		t.Fatalf("second secret of the file: %v", err)
	}
	push.Proto.Body = []byte("real")
	if _, err := e.push.Broadcast(ctx, push); err != nil {
		t.Fatalf("first secret of the file: %v", err)
	}
	if p := c.expect(1000, 0); string(p.Body) != "real" {
		t.Fatalf("delivered %q, want only the authenticated broadcast", p.Body)
	}
	if got := e.unauthenticated(t); got != 4 {
		t.Fatalf("accepted calls were counted: %v", got)
	}
}

// TestRPCSecretRequired: without a secret and without rpc.insecure, New
// refuses, as it does with an unreadable secret file.
func TestRPCSecretRequired(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	cfg := Default()
	if _, err := New(cfg, Deps{}); err == nil || !strings.Contains(err.Error(), "rpc.secret_file") {
		t.Fatalf("New without a secret: %v", err)
	}
	cfg.RPC.SecretFile = filepath.Join(t.TempDir(), "absent")
	if _, err := New(cfg, Deps{}); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Fatalf("New with a missing secret file: %v", err)
	}
}

// TestLogicRefusesSecret: a comet whose secret logic does not accept
// cannot authenticate connections; they close as logic_error (the comet's
// configuration is wrong), not auth_rejected (the client's token is).
func TestLogicRefusesSecret(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	e := startComet(t, func(c *Config) { c.RPC.Secrets = []string{strings.Repeat("x", 32)} })
	c := dial(t, e, "tcp")
	c.send(protocol.OpAuth, []byte(`{"key":"wrong-secret"}`))
	c.expectClosed()
	waitCloses(t, e, ReasonLogicError, 1)
	if got := e.closes(ReasonAuthRejected); got != 0 {
		t.Fatalf("%d closes as auth_rejected, want 0", got)
	}
}
