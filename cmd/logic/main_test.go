package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
)

// proc is a logic process started by a test against the shared Redis and
// an in-process Kafka-protocol broker.
type proc struct {
	cmd       *exec.Cmd
	logs      *strings.Builder
	exited    chan error
	httpAddr  string
	rpcAddr   string
	adminAddr string
	brokers   []string
	topic     string
	secret    []byte
	rpcSecret string // the internal gRPC secret comets must send
}

// startProcess builds and starts logic and waits until /readyz answers 200.
// The process is killed at cleanup if still running.
func startProcess(t testing.TB) *proc {
	t.Helper()
	bin := testkit.Build(t, "logic")
	_, prefix := testkit.Redis(t)
	kc, topic := testkit.Kafka(t, 4)
	p := &proc{
		httpAddr: testkit.FreeAddr(t), rpcAddr: testkit.FreeAddr(t), adminAddr: testkit.FreeAddr(t),
		brokers: kc.ListenAddrs(), topic: topic, secret: []byte("process-test-secret-0123456789abcdef"),
		logs: &strings.Builder{}, exited: make(chan error, 1),
	}
	key := filepath.Join(t.TempDir(), "hmac.key")
	if err := os.WriteFile(key, p.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	var rpcSecretFile string
	p.rpcSecret, rpcSecretFile = testkit.RPCSecret(t)
	cfg := `host = "logic-process"
[http]
bind = "` + p.httpAddr + `"
[rpc]
bind = "` + p.rpcAddr + `"
secret_file = "` + rpcSecretFile + `"
[auth]
hmac_key_file = "` + key + `"
[redis]
addr = "` + testkit.RedisAddr() + `"
prefix = "` + prefix + `"
[kafka]
brokers = ["` + p.brokers[0] + `"]
topic = "` + topic + `"
[admin]
addr = "` + p.adminAddr + `"
`
	path := filepath.Join(t.TempDir(), "logic.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-conf", path, "-check-config").CombinedOutput(); err != nil {
		t.Fatalf("-check-config: %v\n%s", err, out)
	}
	p.cmd = exec.Command(bin, "-conf", path)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	testkit.WaitReady(t, p.adminAddr, 10*time.Second)
	return p
}

// TestProcess runs the logic binary: it becomes ready, accepts a push, and
// on SIGTERM stops gracefully with exit status 0.
func TestProcess(t *testing.T) {
	p := startProcess(t)
	resp, err := http.Post("http://"+p.httpAddr+"/goim/push/room?operation=1000&type=live&room=1", "text/plain", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `{"code":0,"message":""}` {
		t.Fatalf("push: %d %s\n%s", resp.StatusCode, b, p.logs.String())
	}
	if recs := testkit.Consume(t, p.brokers, p.topic, 1); string(recs[0].Key) != "live://1" {
		t.Fatalf("record key %q", recs[0].Key)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("logic exited with %v\n%s", err, p.logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("logic did not exit after SIGTERM\n%s", p.logs.String())
	}
	if !strings.Contains(p.logs.String(), "logic stopped") {
		t.Fatalf("logs lack the stop:\n%s", p.logs.String())
	}
}

func TestCheckConfigRejectsBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(path, []byte("[http]\nbindd = \":1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-conf", path, "-check-config"})
	if err == nil || !strings.Contains(err.Error(), "http.bindd") {
		t.Fatalf("got %v, want an error naming http.bindd", err)
	}
}

// TestCheckConfigShippedFile: configs/logic.toml passes -check-config
// once the files it names exist and hold what they should, and not
// before: the check opens and parses them.
func TestCheckConfigShippedFile(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	const shipped = "../../configs/logic.toml"
	key, secret := "hmac-key-"+testkit.RandomHex(16), testkit.RandomHex(32)
	if err := run([]string{"-conf", testkit.ShippedConfig(t, shipped, map[string]string{
		"jwt-hmac.key": key, "rpc.secret": secret,
	}), "-check-config"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // in the error
	}{
		{name: "no rpc secret file", files: map[string]string{"jwt-hmac.key": key}, want: "rpc.secret"},
		{name: "rpc secret too short", files: map[string]string{"jwt-hmac.key": key, "rpc.secret": "short"}, want: "at least 32"},
		{name: "no hmac key file", files: map[string]string{"rpc.secret": secret}, want: "jwt-hmac.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run([]string{"-conf", testkit.ShippedConfig(t, shipped, tc.files), "-check-config"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("-check-config: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestCheckConfigNoRPCSecret: without an rpc secret (and without
// rpc.insecure) the config is refused, saying what to set.
func TestCheckConfigNoRPCSecret(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	path := filepath.Join(t.TempDir(), "logic.toml")
	if err := os.WriteFile(path, []byte("[auth]\ninsecure = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-conf", path, "-check-config"})
	if err == nil || !strings.Contains(err.Error(), "rpc.secret_file") || !strings.Contains(err.Error(), rpcauth.EnvSecret) {
		t.Fatalf("-check-config: %v, want the missing rpc secret named", err)
	}
	t.Setenv(rpcauth.EnvSecret, testkit.RandomHex(32))
	if err := run([]string{"-conf", path, "-check-config"}); err != nil && strings.Contains(err.Error(), "rpc") {
		t.Fatalf("with %s set: %v", rpcauth.EnvSecret, err)
	}
}
