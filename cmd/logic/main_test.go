package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	logicpb "github.com/goim/goim/api/logic"
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
	keyFile   string // auth.hmac_key_file, holding secret
	token     string // the push API's bearer token, from tokens_file
	rpcSecret string // the internal gRPC secret comets must send
}

// post POSTs body to the push API path with the process's token.
func (p *proc) post(client *http.Client, path, body string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+p.httpAddr+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer "+p.token)
	return client.Do(req)
}

// startProcess builds and starts logic and waits until /readyz answers 200.
// The process is killed at cleanup if still running.
func startProcess(t testing.TB) *proc {
	t.Helper()
	bin := testkit.Build(t, "logic")
	testkit.CheckVersion(t, bin, "logic")
	_, prefix := testkit.Redis(t)
	kc, topic := testkit.Kafka(t, 4)
	p := &proc{
		httpAddr: testkit.FreeAddr(t), rpcAddr: testkit.FreeAddr(t), adminAddr: testkit.FreeAddr(t),
		brokers: kc.ListenAddrs(), topic: topic, secret: []byte("process-test-secret-0123456789abcdef"),
		token: "process-test-push-api-token-0123456789",
		logs:  &strings.Builder{}, exited: make(chan error, 1),
	}
	key := filepath.Join(t.TempDir(), "hmac.key")
	if err := os.WriteFile(key, p.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	p.keyFile = key
	var rpcSecretFile string
	p.rpcSecret, rpcSecretFile = testkit.RPCSecret(t)
	tokens := filepath.Join(t.TempDir(), "http-tokens")
	if err := os.WriteFile(tokens, []byte("# push API tokens\n"+p.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := `host = "logic-process"
[http]
bind = "` + p.httpAddr + `"
tokens_file = "` + tokens + `"
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
	p.cmd = exec.Command(bin, "-conf", path, "-log-format", "json")
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	testkit.WaitReady(t, p.adminAddr, 10*time.Second)
	return p
}

// TestProcess runs the logic binary: it becomes ready, exports its build,
// accepts a push, logs JSON lines (-log-format json), and on SIGTERM stops
// gracefully with exit status 0.
func TestProcess(t *testing.T) {
	p := startProcess(t)
	testkit.CheckBuildInfo(t, p.adminAddr)
	resp, err := p.post(http.DefaultClient, "/goim/push/room?operation=1000&type=live&room=1", "hi")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id, ok := testkit.PushAccepted(b)
	if resp.StatusCode != 200 || !ok {
		t.Fatalf("push: %d %s, want 200 %s\n%s", resp.StatusCode, b, testkit.PushAnswerShape, p.logs.String())
	}
	recs := testkit.Consume(t, p.brokers, p.topic, 1)
	var pm logicpb.PushMsg
	if err := proto.Unmarshal(recs[0].Value, &pm); err != nil || string(recs[0].Key) != "live://1" || pm.MsgId != id {
		t.Fatalf("record key %q, msg_id %q (%v); want live://1 and the answered %s", recs[0].Key, pm.MsgId, err, id)
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
	if !strings.Contains(p.logs.String(), `"msg":"logic stopped"`) {
		t.Fatalf("logs lack the stop:\n%s", p.logs.String())
	}
	for _, l := range strings.Split(strings.TrimSpace(p.logs.String()), "\n") {
		if !json.Valid([]byte(l)) {
			t.Fatalf("-log-format json wrote a line that is not JSON: %q", l)
		}
	}
}

// metric returns the value of the series named exactly series (name and
// labels as /metrics prints them) on the admin listener, or "" if absent.
func (p *proc) metric(t *testing.T, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// TestSIGHUPReloadsKeys: SIGHUP reloads the token verification keys; a
// failed reload is counted, keeps the keys and the process running.
func TestSIGHUPReloadsKeys(t *testing.T) {
	p := startProcess(t)
	if err := os.WriteFile(p.keyFile, []byte("rotated-secret-"+testkit.RandomHex(16)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The periodic check (auth.reload_interval) may reload the changed
	// file too: at least one reload succeeds, none fails.
	testkit.WaitFor(t, 10*time.Second, func() error {
		if v := p.metric(t, `goim_logic_auth_key_reloads_total{result="ok"}`); v == "" || v == "0" {
			return fmt.Errorf("reloads ok = %q", v)
		}
		return nil
	})
	if err := os.WriteFile(p.keyFile, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if v := p.metric(t, `goim_logic_auth_key_reloads_total{result="error"}`); v == "" || v == "0" {
			return fmt.Errorf("reloads error = %q", v)
		}
		return nil
	})
	if v := p.metric(t, "goim_logic_auth_keys"); v != "1" {
		t.Fatalf("goim_logic_auth_keys = %q, want 1 (the keys stay)", v)
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
		t.Fatal("logic did not exit after SIGTERM")
	}
	logs := p.logs.String()
	// startProcess runs logic with -log-format json.
	if !strings.Contains(logs, `"msg":"logic: token verification keys","keys":1,"kids":[],"reason":"reload"`) ||
		!strings.Contains(logs, "logic: token verification keys not reloaded; the previous keys stay in use") {
		t.Fatalf("logs lack the reloads:\n%s", logs)
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
	t.Setenv("GOIM_HTTP_TOKENS", "")
	const shipped = "../../configs/logic.toml"
	key, secret, token := "hmac-key-"+testkit.RandomHex(16), testkit.RandomHex(32), "push-token-"+testkit.RandomHex(16)
	all := map[string]string{"jwt-hmac.key": key, "rpc.secret": secret, "http-tokens": token}
	if err := run([]string{"-conf", testkit.ShippedConfig(t, shipped, all), "-check-config"}); err != nil {
		t.Fatal(err)
	}
	without := func(name string) map[string]string {
		m := map[string]string{}
		for k, v := range all {
			if k != name {
				m[k] = v
			}
		}
		return m
	}
	short := without("rpc.secret")
	short["rpc.secret"] = "short"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // in the error
	}{
		{name: "no rpc secret file", files: without("rpc.secret"), want: "rpc.secret"},
		{name: "rpc secret too short", files: short, want: "at least 32"},
		{name: "no hmac key file", files: without("jwt-hmac.key"), want: "jwt-hmac.key"},
		{name: "no push API token file", files: without("http-tokens"), want: "http-tokens"},
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
	if err := os.WriteFile(path, []byte("[http]\nallow_anonymous = true\n[auth]\ninsecure = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-conf", path, "-check-config"})
	if err == nil || !strings.Contains(err.Error(), "rpc.secret_file") || !strings.Contains(err.Error(), rpcauth.EnvSecret) {
		t.Fatalf("-check-config: %v, want the missing rpc secret named", err)
	}
	t.Setenv(rpcauth.EnvSecret, testkit.RandomHex(32))
	if err := run([]string{"-conf", path, "-check-config"}); err != nil {
		t.Fatalf("with %s set: %v", rpcauth.EnvSecret, err)
	}
}

// TestCheckConfigCredentials: -check-config refuses a config without a push
// API credential, accepts one from the environment, and warns when
// allow_anonymous leaves the API open.
func TestCheckConfigCredentials(t *testing.T) {
	bin := testkit.Build(t, "logic")
	dir := t.TempDir()
	key := filepath.Join(dir, "hmac.key")
	if err := os.WriteFile(key, []byte("check-config-test-secret-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, http string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("[http]\n"+http+"\n[auth]\nhmac_key_file = \""+key+"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	none, anonymous := write("none.toml", ""), write("anonymous.toml", "allow_anonymous = true")
	check := func(path string, env ...string) (string, error) {
		cmd := exec.Command(bin, "-conf", path, "-check-config")
		cmd.Env = append(os.Environ(), "GOIM_HTTP_TOKENS=", "GOIM_HTTP_READ_TOKENS=", rpcauth.EnvSecret+"="+testkit.RandomHex(32))
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := check(none); err == nil || !strings.Contains(out, "no push API credential") || !strings.Contains(out, "allow_anonymous") {
		t.Errorf("no credential: %v\n%s", err, out)
	}
	if out, err := check(none, "GOIM_HTTP_TOKENS=check-config-token-0123456789"); err != nil || !strings.Contains(out, "none.toml: ok") {
		t.Errorf("token from the environment: %v\n%s", err, out)
	}
	// The error names the source, never the token.
	if out, err := check(none, "GOIM_HTTP_TOKENS=tooshort"); err == nil || !strings.Contains(out, "GOIM_HTTP_TOKENS: token 1 must be at least 16 bytes") ||
		strings.Contains(out, "tooshort") {
		t.Errorf("short token: %v\n%s", err, out)
	}
	if out, err := check(anonymous); err != nil || !strings.Contains(out, "warning: http.allow_anonymous = true") || !strings.Contains(out, "anonymous.toml: ok") {
		t.Errorf("anonymous: %v\n%s", err, out)
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
