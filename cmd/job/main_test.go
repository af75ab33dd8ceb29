package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/cluster"
)

// proc is a job process started by a test on a cluster.
type proc struct {
	cmd       *exec.Cmd
	logs      *strings.Builder
	exited    chan error
	adminAddr string
}

// startProcess builds job and starts it on c's topic with its comets
// listed statically, and waits until /readyz answers 200 (it consumes).
func startProcess(tb testing.TB, c *cluster.Cluster, group string) *proc {
	tb.Helper()
	bin := testkit.Build(tb, "job")
	testkit.CheckVersion(tb, bin, "job")
	p := &proc{adminAddr: testkit.FreeAddr(tb), logs: &strings.Builder{}, exited: make(chan error, 1)}
	var comets []string
	for host, addr := range c.CometAddrs() {
		comets = append(comets, fmt.Sprintf("%q = %q", host, addr))
	}
	secretFile := filepath.Join(tb.TempDir(), "rpc.secret")
	if err := os.WriteFile(secretFile, []byte(c.Secret+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg := `host = "job-process"
comets = { ` + strings.Join(comets, ", ") + ` }
[rpc]
secret_file = "` + secretFile + `"
[kafka]
brokers = ["` + c.Kafka.ListenAddrs()[0] + `"]
topic = "` + c.Topic + `"
group = "` + group + `"
session_timeout = "6s"
[admin]
addr = "` + p.adminAddr + `"
[discovery]
nodes = []
`
	path := filepath.Join(tb.TempDir(), "job.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(bin, "-conf", path, "-check-config").CombinedOutput(); err != nil {
		tb.Fatalf("-check-config: %v\n%s", err, out)
	}
	p.cmd = exec.Command(bin, "-conf", path)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	tb.Cleanup(func() { _ = p.cmd.Process.Kill() })
	testkit.WaitReady(tb, p.adminAddr, 20*time.Second)
	return p
}

// TestProcess runs the job binary: it delivers a push from logic to a
// client of a real comet, and on SIGTERM stops gracefully with status 0.
func TestProcess(t *testing.T) {
	c := cluster.Start(t, 1)
	p := startProcess(t, c, "job-process-"+testkit.RandomHex(4))
	testkit.CheckBuildInfo(t, p.adminAddr)
	r := c.Dial("comet-1", "tcp", `{"mid":1,"key":"k1","room_id":"live://p","accepts":[1000]}`)
	c.WaitOnline(1)
	c.Push("/goim/push/keys?operation=1000&keys=k1", "unicast")
	c.Push("/goim/push/room?operation=1000&type=live&room=p", "room")
	// Two partitions (keys by server, room by room): no order between them.
	if got := r.Wait(2, 10*time.Second); len(got) != 2 || !slices.Contains(got, "unicast") || !slices.Contains(got, "room") {
		t.Fatalf("got %q\n%s", got, p.logs.String())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("job exited with %v\n%s", err, p.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("job did not exit after SIGTERM\n%s", p.logs.String())
	}
	if !strings.Contains(p.logs.String(), "job stopped") {
		t.Fatalf("logs lack the stop:\n%s", p.logs.String())
	}
}

func TestCheckConfigRejectsBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(path, []byte("[kafka]\ntopicc = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-conf", path, "-check-config"})
	if err == nil || !strings.Contains(err.Error(), "kafka.topicc") {
		t.Fatalf("got %v, want an error naming kafka.topicc", err)
	}
}

// TestCheckConfigShippedFile: configs/job.toml passes -check-config once
// the rpc secret file it names exists, and not before.
func TestCheckConfigShippedFile(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	const shipped = "../../configs/job.toml"
	if err := run([]string{"-conf", testkit.ShippedConfig(t, shipped, map[string]string{"rpc.secret": testkit.RandomHex(32)}), "-check-config"}); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-conf", testkit.ShippedConfig(t, shipped, nil), "-check-config"}); err == nil || !strings.Contains(err.Error(), "rpc.secret") {
		t.Fatalf("without the secret file: %v, want it named", err)
	}
}

// TestCheckConfigNoRPCSecret: without an rpc secret (and without
// rpc.insecure) the config is refused, saying what to set.
func TestCheckConfigNoRPCSecret(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	path := filepath.Join(t.TempDir(), "job.toml")
	if err := os.WriteFile(path, []byte("comets = { \"c\" = \"127.0.0.1:3109\" }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-conf", path, "-check-config"})
	if err == nil || !strings.Contains(err.Error(), "rpc.secret_file") || !strings.Contains(err.Error(), rpcauth.EnvSecret) {
		t.Fatalf("-check-config: %v, want the missing rpc secret named", err)
	}
}

// TestCheckConfigOpensFiles: -check-config opens and parses the files the
// [kafka] section names (CA, client certificate and key, SASL password
// file) and names each key whose file is wrong.
func TestCheckConfigOpensFiles(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOIM_KAFKA_SASL_PASSWORD", "")
	cfg := `[comets]
comet-1 = "127.0.0.1:3109"
[kafka]
tls = true
tls_ca_file = "` + notPEM + `"
sasl_mechanism = "PLAIN"
sasl_user = "goim"
sasl_password_file = "` + filepath.Join(dir, "missing") + `"
`
	path := filepath.Join(dir, "job.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-conf", path, "-check-config"})
	if err == nil {
		t.Fatal("-check-config accepted unreadable files")
	}
	for _, key := range []string{"kafka.tls_ca_file", "kafka.sasl_password_file"} {
		if !strings.Contains(err.Error(), key+": ") {
			t.Errorf("-check-config error does not name %s:\n%v", key, err)
		}
	}
}
