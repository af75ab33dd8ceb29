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
	cfg := `host = "logic-process"
[http]
bind = "` + p.httpAddr + `"
[rpc]
bind = "` + p.rpcAddr + `"
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

func TestCheckConfigShippedFile(t *testing.T) {
	if err := run([]string{"-conf", "../../configs/logic.toml", "-check-config"}); err != nil {
		t.Fatal(err)
	}
}

// TestCheckConfigOpensFiles: -check-config opens and parses the files the
// [redis] and [kafka] sections name (CA, client certificate and key,
// password files) and names each key whose file is wrong.
func TestCheckConfigOpensFiles(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	t.Setenv("GOIM_REDIS_PASSWORD", "")
	t.Setenv("GOIM_KAFKA_SASL_PASSWORD", "")
	cfg := `[redis]
password_file = "` + missing + `"
tls = true
tls_ca_file = "` + notPEM + `"
[kafka]
tls = true
tls_cert_file = "` + notPEM + `"
tls_key_file = "` + notPEM + `"
sasl_mechanism = "SCRAM-SHA-256"
sasl_user = "goim"
sasl_password_file = "` + missing + `"
`
	path := filepath.Join(dir, "logic.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-conf", path, "-check-config"})
	if err == nil {
		t.Fatal("-check-config accepted unreadable files")
	}
	for _, key := range []string{"redis.password_file", "redis.tls_ca_file", "kafka.tls_cert_file", "kafka.sasl_password_file"} {
		if !strings.Contains(err.Error(), key+": ") {
			t.Errorf("-check-config error does not name %s:\n%v", key, err)
		}
	}
}
