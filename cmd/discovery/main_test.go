package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/discovery/embedded"
	"github.com/goim/goim/internal/testkit"
)

func TestParse(t *testing.T) {
	o, err := parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := embedded.Config{Addr: "127.0.0.1:7171", Env: "dev", Zone: "sh001", Region: "sh"}
	if fmt.Sprint(o.cfg) != fmt.Sprint(want) {
		t.Errorf("defaults %+v, want %+v (those of configs/*.toml)", o.cfg, want)
	}
	o, err = parse([]string{"-listen", "10.0.0.2:7171", "-env", "prod", "-zone", "z1", "-region", "r1",
		"-host", "d1", "-peers", "10.0.0.3:7171, 10.0.0.4:7171,", "-log-level", "warn"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want = embedded.Config{Addr: "10.0.0.2:7171", Env: "prod", Zone: "z1", Region: "r1", Host: "d1",
		Peers: []string{"10.0.0.3:7171", "10.0.0.4:7171"}}
	if fmt.Sprint(o.cfg) != fmt.Sprint(want) {
		t.Errorf("flags %+v, want %+v", o.cfg, want)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown flag", args: []string{"-addr", "x"}, want: "not defined"},
		{name: "argument", args: []string{"serve"}, want: "unexpected arguments"},
		{name: "empty env", args: []string{"-env", " "}, want: "-env"},
		{name: "empty zone", args: []string{"-zone", ""}, want: "-zone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parse(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parse(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
			}
		})
	}
	for _, args := range [][]string{{"-log-level", "loud"}, {"-log-format", "xml"}} {
		if err := run(args, io.Discard); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("run(%q) = %v, want an error naming %s", args, err, args[0])
		}
	}
	if _, err := parse([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

// TestRunAddressErrors: run refuses an address the server cannot register
// before it starts anything (so in process, any number of times).
func TestRunAddressErrors(t *testing.T) {
	for _, args := range [][]string{{"-listen", "127.0.0.1:0"}, {"-listen", "no-port"}, {"-peers", "no-port"}} {
		if err := run(args, io.Discard); err == nil || errors.Is(err, embedded.ErrStarted) {
			t.Errorf("run(%q) = %v, want an address error", args, err)
		}
	}
}

// build compiles the command (without -race: the library writes a field
// unsynchronised 60 s after start, which the race detector would report).
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "discovery")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// server is a discovery process of the test's.
type server struct {
	addr   string
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan error
}

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

func start(t *testing.T, bin, addr string, args ...string) *server {
	t.Helper()
	s := &server{addr: addr, out: &syncBuffer{}, exited: make(chan error, 1)}
	s.cmd = exec.Command(bin, append([]string{"-listen", addr}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("discovery %s output:\n%s", addr, s.out.String())
		}
	})
	return s
}

// stop sends sig and wants exit status 0 within 10 s.
func (s *server) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("discovery %s exited with %v:\n%s", s.addr, err, s.out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("discovery %s still runs 10 s after %v", s.addr, sig)
	}
	if !strings.Contains(s.out.String(), "discovery stopped") {
		t.Errorf("no graceful stop in the log:\n%s", s.out.String())
	}
}

// instance is the part of a registered instance the tests read.
type instance struct {
	Region   string   `json:"region"`
	Zone     string   `json:"zone"`
	Env      string   `json:"env"`
	AppID    string   `json:"appid"`
	Hostname string   `json:"hostname"`
	Addrs    []string `json:"addrs"`
}

// fetch returns the UP instances of app in env on the server at addr, as
// any client asks (no zone: every zone).
func fetch(addr, app, env string) ([]instance, error) {
	q := url.Values{"appid": {app}, "env": {env}, "status": {"1"}}
	resp, err := http.Get("http://" + addr + "/discovery/fetch?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Code int `json:"code"`
		Data struct {
			Instances map[string][]instance `json:"instances"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Code != 0 {
		return nil, fmt.Errorf("fetch %s in %s at %s: code %d", app, env, addr, r.Code)
	}
	var out []instance
	for _, z := range r.Data.Instances {
		out = append(out, z...)
	}
	return out, nil
}

// hosts returns the host names of the UP instances of app in env at addr.
func hosts(addr, app, env string) ([]string, error) {
	is, err := fetch(addr, app, env)
	var out []string
	for _, i := range is {
		out = append(out, i.Hostname)
	}
	slices.Sort(out)
	return out, err
}

// TestServe runs the command as a process: it registers itself in the
// env, zone and region of its flags (where goim v2's naming client looks
// for discovery nodes), goim's client registers and finds a service
// through it, and SIGTERM stops it with status 0.
func TestServe(t *testing.T) {
	bin := build(t)
	addr := testkit.FreeAddr(t)
	env := "cmd-" + testkit.RandomHex(4)
	s := start(t, bin, addr, "-env", env, "-zone", "z1", "-region", "r1", "-host", "disc-test")
	testkit.WaitFor(t, 20*time.Second, func() error {
		is, err := fetch(addr, "infra.discovery", env)
		if err != nil {
			return err
		}
		want := instance{Region: "r1", Zone: "z1", Env: env, AppID: "infra.discovery", Hostname: "disc-test", Addrs: []string{"http://" + addr}}
		if len(is) != 1 || fmt.Sprint(is[0]) != fmt.Sprint(want) {
			return fmt.Errorf("infra.discovery in %s: %+v, want %+v", env, is, want)
		}
		return nil
	})

	cfg := discovery.DefaultConfig()
	cfg.Nodes, cfg.Env = []string{addr}, env
	c, err := discovery.New(cfg, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Register(ctx, discovery.Instance{AppID: "goim.comet", Hostname: "comet-1", Addrs: []string{"grpc://127.0.0.1:3109"}}); err != nil {
		t.Fatal(err)
	}
	w := c.Watch(ctx, "goim.comet")
	if err := w.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if is := w.Instances(); len(is) != 1 || is[0].Hostname != "comet-1" {
		t.Fatalf("goim.comet: %+v, want comet-1", is)
	}
	s.stop(t, syscall.SIGTERM)
}

// TestPeers: two servers listing each other replicate registrations, and
// one stopped by SIGINT first removes its own registration from the
// other, so that clients finding discovery nodes through discovery stop
// dialling it.
func TestPeers(t *testing.T) {
	bin := build(t)
	a, b := testkit.FreeAddr(t), testkit.FreeAddr(t)
	env := "cmd-" + testkit.RandomHex(4)
	sa := start(t, bin, a, "-env", env, "-host", "disc-a", "-peers", b)
	// b fetches a's registry at start, so a must serve by then (a server
	// whose peer is down at its start learns the peer's registrations at
	// their next renewal, within 30 s).
	testkit.WaitFor(t, 20*time.Second, func() error {
		got, err := hosts(a, "infra.discovery", env)
		if err != nil || !slices.Equal(got, []string{"disc-a"}) {
			return fmt.Errorf("infra.discovery at %s: %v %v, want disc-a", a, got, err)
		}
		return nil
	})
	sb := start(t, bin, b, "-env", env, "-host", "disc-b", "-peers", a)
	// b registered itself and replicated that to a; b has a's registry.
	want := []string{"disc-a", "disc-b"}
	for _, addr := range []string{a, b} {
		testkit.WaitFor(t, 20*time.Second, func() error {
			got, err := hosts(addr, "infra.discovery", env)
			if err != nil || !slices.Equal(got, want) {
				return fmt.Errorf("infra.discovery at %s: %v %v, want %v", addr, got, err, want)
			}
			return nil
		})
	}

	cfg := discovery.DefaultConfig()
	cfg.Nodes, cfg.Env = []string{a}, env
	c, err := discovery.New(cfg, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Register(ctx, discovery.Instance{AppID: "goim.logic", Hostname: "logic-1", Addrs: []string{"grpc://127.0.0.1:3119"}}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		got, err := hosts(b, "goim.logic", env)
		if err != nil || !slices.Equal(got, []string{"logic-1"}) {
			return fmt.Errorf("goim.logic at the peer: %v %v, want logic-1 (replicated)", got, err)
		}
		return nil
	})

	sa.stop(t, syscall.SIGINT)
	got, err := hosts(b, "infra.discovery", env)
	if err != nil || !slices.Equal(got, []string{"disc-b"}) {
		t.Errorf("infra.discovery at the peer after a's stop: %v %v, want only disc-b", got, err)
	}
	sb.stop(t, syscall.SIGTERM)
}
