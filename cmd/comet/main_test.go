package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/client"
	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
	"google.golang.org/grpc"
)

// stubLogic accepts every connection (the logic service arrives later).
type stubLogic struct {
	logicpb.UnimplementedLogicServer
}

func (stubLogic) Connect(context.Context, *logicpb.ConnectReq) (*logicpb.ConnectReply, error) {
	return &logicpb.ConnectReply{Key: "k1", Heartbeat: int64(time.Minute)}, nil
}

func (stubLogic) Disconnect(context.Context, *logicpb.DisconnectReq) (*logicpb.DisconnectReply, error) {
	return &logicpb.DisconnectReply{}, nil
}

func (stubLogic) RenewOnline(context.Context, *logicpb.OnlineReq) (*logicpb.OnlineReply, error) {
	return &logicpb.OnlineReply{}, nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "comet")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestProcess runs the comet binary: it serves, reports ready, and on
// SIGTERM drains its clients and exits 0.
func TestProcess(t *testing.T) {
	bin := build(t)
	testkit.CheckVersion(t, bin, "comet")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secret, secretFile := testkit.RPCSecret(t)
	keys, err := rpcauth.Config{Secrets: []string{secret}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(keys.ServerOptions(nil, nil)...) // the comet must send the secret
	logicpb.RegisterLogicServer(gs, stubLogic{})
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()

	tcp, adminAddr := freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`host = "comet-process"
[tcp]
bind = [%q]
[websocket]
bind = [%q]
[rpc]
bind = %q
secret_file = %q
[logic]
addrs = [%q]
[drain]
window = "500ms"
grace = "5s"
[admin]
addr = %q
`, tcp, freeAddr(t), freeAddr(t), secretFile, ln.Addr().String(), adminAddr)
	path := filepath.Join(t.TempDir(), "comet.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-conf", path, "-check-config").CombinedOutput(); err != nil {
		t.Fatalf("-check-config: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "-conf", path)
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
	}()

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("comet not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	testkit.CheckBuildInfo(t, adminAddr)

	conn, err := client.DialBody(context.Background(), tcp, []byte(`{"accepts":[]}`), client.DialOptions{})
	if err != nil {
		t.Fatalf("auth: %v\n%s", err, logs.String())
	}
	defer conn.Close()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var op int32
	if err := conn.ReadFrames(func(f client.Frame) { op = f.Op }); err == nil {
		t.Fatalf("connection still open after the drain: got op %d", op)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("comet exited with %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("comet did not exit after SIGTERM\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "draining") || !strings.Contains(logs.String(), "comet stopped") {
		t.Fatalf("logs lack the drain:\n%s", logs.String())
	}
}

func TestCheckConfigRejectsBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(path, []byte("[tcp]\nbindd = [\":1\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-conf", path, "-check-config"})
	if err == nil || !strings.Contains(err.Error(), "tcp.bindd") {
		t.Fatalf("got %v, want an error naming tcp.bindd", err)
	}
}

// TestCheckConfigShippedFile: configs/comet.toml passes -check-config
// once the rpc secret file it names exists, and not before; a TLS
// certificate that does not parse is found too.
func TestCheckConfigShippedFile(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	const shipped = "../../configs/comet.toml"
	if err := run([]string{"-conf", testkit.ShippedConfig(t, shipped, map[string]string{"rpc.secret": testkit.RandomHex(32)}), "-check-config"}); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-conf", testkit.ShippedConfig(t, shipped, nil), "-check-config"}); err == nil || !strings.Contains(err.Error(), "rpc.secret") {
		t.Fatalf("without the secret file: %v, want it named", err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, f := range []string{cert, key} {
		if err := os.WriteFile(f, []byte("not PEM"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "comet.toml")
	cfg := fmt.Sprintf("[rpc]\ninsecure = true\n[tls]\ncert_file = %q\nkey_file = %q\n", cert, key)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-conf", path, "-check-config"}); err == nil || !strings.Contains(err.Error(), "tls") {
		t.Fatalf("unparsable certificate: %v, want a tls error", err)
	}
}

// TestCheckConfigNoRPCSecret: without an rpc secret (and without
// rpc.insecure) the config is refused, saying what to set.
func TestCheckConfigNoRPCSecret(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	path := filepath.Join(t.TempDir(), "comet.toml")
	if err := os.WriteFile(path, []byte("host = \"c\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-conf", path, "-check-config"})
	if err == nil || !strings.Contains(err.Error(), "rpc.secret_file") || !strings.Contains(err.Error(), rpcauth.EnvSecret) {
		t.Fatalf("-check-config: %v, want the missing rpc secret named", err)
	}
}
