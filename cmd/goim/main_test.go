package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goimclient "github.com/goim/goim/client"
	"github.com/goim/goim/internal/allinone"
	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/browser"
)

// ports are one all-in-one's listeners, all on 127.0.0.1.
type ports struct {
	kafka, redis, discovery, http, rpc, logicAdmin, tcp, ws, cometRPC, cometAdmin, jobAdmin int
}

func freePorts(t *testing.T) ports {
	// Distinct ports: a port just freed may be handed out again.
	p := make([]int, 0, 11)
	seen := map[int]bool{}
	for len(p) < 11 {
		if n := testkit.FreePort(t); !seen[n] {
			seen[n] = true
			p = append(p, n)
		}
	}
	return ports{p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]}
}

// config is a goim.toml for p: quick online reports so the online
// endpoints settle within a second, host names given by name, and, as in
// configs/goim.toml, insecure auth and an open push API (the browser demo
// pushes without a token). extra is appended at the top level (before the
// sections).
func config(t *testing.T, name string, p ports, extra string) string {
	a := func(port int) string { return strconv.Quote("127.0.0.1:" + strconv.Itoa(port)) }
	cfg := extra + `
ready_timeout = "20s"
[kafka]
port = ` + strconv.Itoa(p.kafka) + `
partitions = 4
[redis]
listen = ` + a(p.redis) + `
[discovery]
listen = ` + a(p.discovery) + `
[logic]
host = "` + name + `-logic"
[logic.http]
bind = ` + a(p.http) + `
allow_anonymous = true
[logic.rpc]
bind = ` + a(p.rpc) + `
[logic.auth]
insecure = true
[logic.online]
refresh = "500ms"
[logic.admin]
addr = ` + a(p.logicAdmin) + `
[job]
host = "` + name + `-job"
[job.admin]
addr = ` + a(p.jobAdmin) + `
[comet]
host = "` + name + `-comet"
[comet.tcp]
bind = [` + a(p.tcp) + `]
[comet.websocket]
bind = [` + a(p.ws) + `]
[comet.rpc]
bind = ` + a(p.cometRPC) + `
[comet.logic]
report_interval = "500ms"
[comet.admin]
addr = ` + a(p.cometAdmin) + `
[comet.drain]
interrupt_window = "200ms"
`
	path := filepath.Join(t.TempDir(), name+".toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// syncBuffer is an io.Writer a process writes to while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running goim process.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan error
	api            string // logic's HTTP base URL
}

// start runs the goim binary with args and waits until it printed its
// summary (every service ready).
func start(t *testing.T, bin string, p ports, args ...string) *proc {
	t.Helper()
	pr := &proc{stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan error, 1),
		api: "http://127.0.0.1:" + strconv.Itoa(p.http)}
	pr.cmd = exec.Command(bin, args...)
	pr.cmd.Stdout, pr.cmd.Stderr = pr.stdout, pr.stderr
	if err := pr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { pr.exited <- pr.cmd.Wait() }()
	t.Cleanup(func() {
		_ = pr.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("goim %v stdout:\n%s\nstderr:\n%s", args, pr.stdout, pr.stderr)
		}
	})
	testkit.WaitFor(t, 30*time.Second, func() error {
		select {
		case err := <-pr.exited:
			t.Fatalf("goim exited: %v\n%s", err, pr.stderr)
		default:
		}
		if !strings.Contains(pr.stdout.String(), "Ctrl-C stops everything") {
			return fmt.Errorf("no summary yet")
		}
		return nil
	})
	if strings.Contains(pr.stderr.String(), "not every service is ready") {
		t.Fatalf("started before every service was ready:\n%s", pr.stderr)
	}
	return pr
}

// stop sends SIGINT and waits for a clean exit.
func (pr *proc) stop(t *testing.T) {
	t.Helper()
	if err := pr.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-pr.exited:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v\n%s", err, pr.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after SIGINT\n%s", pr.stderr)
	}
	if !strings.Contains(pr.stderr.String(), `msg="goim stopped" err=<nil>`) {
		t.Fatalf("no clean stop logged:\n%s", pr.stderr)
	}
}

// push POSTs a push and wants code 0.
func (pr *proc) push(t *testing.T, path, body string) {
	t.Helper()
	resp, err := http.Post(pr.api+path, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !testkit.IsPushAnswer(b) {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
}

// get GETs path and decodes the envelope's data into v.
func (pr *proc) get(path string, v any) error {
	resp, err := http.Get(pr.api + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return err
	}
	if env.Code != 0 {
		return fmt.Errorf("GET %s: code %d %s", path, env.Code, env.Message)
	}
	return json.Unmarshal(env.Data, v)
}

// client is a goim v2 TCP client that collects the bodies of pushes.
type client struct {
	got chan string
}

func dial(t *testing.T, addr, auth string) *client {
	t.Helper()
	conn, err := goimclient.DialBody(context.Background(), addr, []byte(auth), goimclient.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := &client{got: make(chan string, 100)}
	t.Cleanup(func() { _ = conn.Close() })
	go func() {
		defer close(c.got)
		for {
			err := conn.ReadFrames(func(f goimclient.Frame) {
				if f.Op == 1000 {
					c.got <- string(f.Body)
				}
			})
			if err != nil {
				return
			}
		}
	}()
	return c
}

// want waits for the next push and checks its body.
func (c *client) want(t *testing.T, body string) {
	t.Helper()
	select {
	case got, ok := <-c.got:
		if !ok {
			t.Fatalf("connection closed, want %q", body)
		}
		if got != body {
			t.Fatalf("got %q, want %q", got, body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no push within 10s, want %q", body)
	}
}

// closed waits until the server closes the connection.
func (c *client) closed(t *testing.T) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case _, ok := <-c.got:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("connection still open 20s after the stop began")
		}
	}
}

// TestAllInOne runs the goim binary with everything embedded: the summary
// names every listener, a TCP client authenticates with goim v2's JSON,
// room, mids and keys pushes reach it (Kafka, Redis, discovery and job all
// in the loop), the online and nodes endpoints see it, and SIGINT stops
// everything cleanly, the client's connection first.
func TestAllInOne(t *testing.T) {
	bin := testkit.Build(t, "goim")
	p := freePorts(t)
	pr := start(t, bin, p, "-conf", config(t, "a", p, ""))
	for _, want := range []string{
		"Kafka (embedded kfake)", "Redis (embedded miniredis)", "discovery (embedded)", "env dev",
		"WARNING: [logic.auth] insecure = true", "curl -d",
		"WARNING: [logic.http] allow_anonymous = true and no token: the push API is OPEN",
		fmt.Sprintf("127.0.0.1:%d", p.tcp), fmt.Sprintf("ws://127.0.0.1:%d/sub", p.ws),
		fmt.Sprintf("%s/demo", pr.api), fmt.Sprintf("%s/console", pr.api),
	} {
		if !strings.Contains(pr.stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, pr.stdout)
		}
	}

	// The embedded discovery server registered itself in [discovery] env
	// (default dev) and zone sh001, where goim v2's naming client looks
	// for discovery nodes.
	testkit.WaitFor(t, 10*time.Second, func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/discovery/fetch?appid=infra.discovery&env=dev&status=1", p.discovery))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Instances map[string][]struct {
					Addrs []string `json:"addrs"`
				} `json:"instances"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return err
		}
		if is := r.Data.Instances["sh001"]; len(is) != 1 || !slices.Equal(is[0].Addrs, []string{fmt.Sprintf("http://127.0.0.1:%d", p.discovery)}) {
			return fmt.Errorf("infra.discovery in env dev: %+v, want the embedded server in zone sh001", r.Data.Instances)
		}
		return nil
	})

	var nodes struct {
		TCPPort int      `json:"tcp_port"`
		WSPort  int      `json:"ws_port"`
		Nodes   []string `json:"nodes"`
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if err := pr.get("/goim/nodes/weighted?platform=web", &nodes); err != nil {
			return err
		}
		if len(nodes.Nodes) != 1 || nodes.Nodes[0] != "127.0.0.1" || nodes.TCPPort != p.tcp || nodes.WSPort != p.ws {
			return fmt.Errorf("nodes %+v, want [127.0.0.1] with the comet's ports %d, %d", nodes, p.tcp, p.ws)
		}
		return nil
	})

	c := dial(t, net.JoinHostPort(nodes.Nodes[0], strconv.Itoa(nodes.TCPPort)),
		`{"mid":7,"key":"k7","room_id":"live://1000","platform":"android","accepts":[1000]}`)
	pr.push(t, "/goim/push/room?operation=1000&type=live&room=1000", "to the room")
	c.want(t, "to the room")
	pr.push(t, "/goim/push/mids?operation=1000&mids=7", "to mid 7")
	c.want(t, "to mid 7")
	pr.push(t, "/goim/push/keys?operation=1000&keys=k7", "to key k7")
	c.want(t, "to key k7")
	pr.push(t, "/goim/push/all?operation=1000&speed=100", "to everyone")
	c.want(t, "to everyone")
	for _, admin := range []int{p.logicAdmin, p.cometAdmin, p.jobAdmin} {
		testkit.CheckBuildInfo(t, "127.0.0.1:"+strconv.Itoa(admin))
	}

	testkit.WaitFor(t, 10*time.Second, func() error {
		var total struct {
			Conns int `json:"conn_count"`
		}
		if err := pr.get("/goim/online/total", &total); err != nil {
			return err
		}
		if total.Conns != 1 {
			return fmt.Errorf("online total %+v, want 1 connection", total)
		}
		return nil
	})

	// The demo page, in headless Chromium: it finds the comet through
	// /goim/nodes/weighted, joins live://1000 over WebSocket, and shows a
	// push sent through the HTTP API and one sent with its own form.
	ctx := browser.Start(t)
	err := browser.DemoRoundTrip(ctx, pr.api+"/demo", func(msg string) error {
		resp, err := http.Post(pr.api+"/goim/push/room?operation=1000&type=live&room=1000", "text/plain", strings.NewReader(msg))
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !testkit.IsPushAnswer(b) {
			return fmt.Errorf("push: %d %s", resp.StatusCode, b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The TCP client is in the same room: it got both of the page's messages.
	for range 2 {
		select {
		case <-c.got:
		case <-time.After(10 * time.Second):
			t.Fatal("the TCP client in the demo's room did not get the demo's pushes")
		}
	}

	pr.stop(t)
	c.closed(t)
}

// TestReplaceEmbedded runs two all-in-ones as one cluster: the second is
// given the first one's Kafka, Redis and discovery by flags, so it starts
// none of its own, and a push through its logic reaches a client of the
// first one's comet (found through the shared discovery, delivered by
// whichever job owns the partition). The two share an rpc secret (in
// GOIM_RPC_SECRET, which the processes inherit): each would otherwise
// generate its own, and one's job could not call the other's comet.
func TestReplaceEmbedded(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, testkit.RandomHex(32))
	bin := testkit.Build(t, "goim")
	pa, pb := freePorts(t), freePorts(t)
	a := start(t, bin, pa, "-conf", config(t, "a", pa, ""))
	addr := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
	b := start(t, bin, pb, "-conf", config(t, "b", pb, ""),
		"-kafka", addr(pa.kafka), "-redis", addr(pa.redis), "-discovery", addr(pa.discovery))
	for _, embedded := range []string{"embedded kfake", "embedded miniredis", "discovery (embedded)"} {
		if strings.Contains(b.stdout.String(), embedded) {
			t.Errorf("the second all-in-one started its own %s:\n%s", embedded, b.stdout)
		}
	}
	for _, port := range []int{pb.kafka, pb.redis, pb.discovery} {
		if conn, err := net.Dial("tcp", addr(port)); err == nil {
			conn.Close()
			t.Errorf("something listens on %d, a port of an embedded part that should not have started", port)
		}
	}

	c := dial(t, addr(pa.tcp), `{"mid":8,"key":"k8","room_id":"live://shared","accepts":[1000]}`)
	testkit.WaitFor(t, 15*time.Second, func() error {
		var inst []map[string]any
		if err := b.get("/goim/nodes/instances", &inst); err != nil {
			return err
		}
		if len(inst) != 2 {
			return fmt.Errorf("instances %v, want both comets", inst)
		}
		return nil
	})
	b.push(t, "/goim/push/room?operation=1000&type=live&room=shared", "via b")
	c.want(t, "via b")
	b.push(t, "/goim/push/mids?operation=1000&mids=8", "mid via b")
	c.want(t, "mid via b")
	b.stop(t)
	a.stop(t)
}

// TestCheckConfig checks configs/goim.toml through the binary, and that a
// bad flag value is refused with the key named.
func TestCheckConfig(t *testing.T) {
	bin := testkit.Build(t, "goim")
	testkit.CheckVersion(t, bin, "goim")
	out, err := exec.Command(bin, "-conf", "../../configs/goim.toml", "-check-config").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "goim.toml: ok") ||
		!strings.Contains(string(out), "warning: [logic] http.allow_anonymous = true and no credential") {
		t.Fatalf("%v: %s", err, out)
	}
	out, err = exec.Command(bin, "-conf", "../../configs/goim.toml", "-check-config", "-kafka", "nohostport").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "kafka.brokers[0]") {
		t.Fatalf("want an error naming kafka.brokers[0], got %v: %s", err, out)
	}
	out, err = exec.Command(bin, "-conf", "../../configs/goim.toml", "extra").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unexpected arguments") {
		t.Fatalf("want unexpected arguments, got %v: %s", err, out)
	}
}

// TestConfigFile checks configs/goim.toml against the defaults: it loads,
// and it differs from Default() only where a laptop cluster needs it to.
func TestConfigFile(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	got, err := allinone.Load("../../configs/goim.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := allinone.Default()
	want.Logic.Auth.Insecure = true
	want.Logic.HTTP.AllowAnonymous = true
	want.Wire()
	got.Logic.Host, got.Job.Host, got.Comet.Host = "", "", ""
	want.Logic.Host, want.Job.Host, want.Comet.Host = "", "", ""
	// The rpc secret is generated per process (per Wire of a fresh
	// config); each must give the three services one.
	for _, c := range []*allinone.Config{&got, &want} {
		if s := c.Logic.RPC.Secrets; len(s) != 1 || !slices.Equal(c.Comet.RPC.Secrets, s) || !slices.Equal(c.Job.RPC.Secrets, s) {
			t.Fatalf("rpc secrets not generated and shared: %d %d %d", len(s), len(c.Comet.RPC.Secrets), len(c.Job.RPC.Secrets))
		}
		c.Logic.RPC.Secrets, c.Comet.RPC.Secrets, c.Job.RPC.Secrets = nil, nil, nil
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	// An empty list in the file means the same as an absent one.
	gj, wj = bytes.ReplaceAll(gj, []byte("[]"), []byte("null")), bytes.ReplaceAll(wj, []byte("[]"), []byte("null"))
	if !bytes.Equal(gj, wj) {
		t.Fatalf("configs/goim.toml differs from the defaults beyond [logic.auth] insecure and [logic.http] allow_anonymous:\n got %s\nwant %s", gj, wj)
	}
}
