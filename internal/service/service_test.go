package service

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/goim/goim/internal/admin"
)

// config is the fake service's config: the file's content.
type config struct {
	admin admin.Config
	body  string
}

// fake is a Service that records what Run did to it.
type fake struct {
	startErr  error
	started   atomic.Bool
	shutdowns atomic.Int32
	reloads   atomic.Int32
	adminAddr func() string
}

func (f *fake) Start() error {
	if f.startErr != nil {
		return f.startErr
	}
	f.started.Store(true)
	return nil
}

func (f *fake) Ready() error {
	if !f.started.Load() {
		return errors.New("not started")
	}
	return nil
}

func (f *fake) Shutdown(context.Context) error {
	f.shutdowns.Add(1)
	return nil
}

// testMain returns a Main for svc that reads the file at the path as its
// config; adminAddr is the [admin] addr.
func testMain(svc *fake, adminAddr string) Main[config, *fake] {
	return Main[config, *fake]{
		Name: "fake", Conf: "configs/fake.toml",
		Load: func(path string) (config, error) {
			b, err := os.ReadFile(path)
			cfg := config{admin: admin.DefaultConfig(), body: string(b)}
			cfg.admin.Addr = adminAddr
			return cfg, err
		},
		Check: func(c config) ([]string, error) {
			if strings.Contains(c.body, "bad") {
				return []string{"careful"}, errors.New("bad file")
			}
			return []string{"careful"}, nil
		},
		Admin: func(c config) admin.Config { return c.admin },
		New: func(_ config, env Env) (*fake, error) {
			if env.Logger == nil || env.Registry == nil {
				return nil, errors.New("env incomplete")
			}
			svc.adminAddr = env.AdminAddr
			return svc, nil
		},
		ShutdownOnError: true,
		Started:         func(*slog.Logger, config, *fake, string) {},
		Stop: func(config, *fake, os.Signal) Stop {
			return Stop{Timeout: time.Second}
		},
	}
}

func writeConf(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake.toml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunEarlyExits(t *testing.T) {
	svc := &fake{}
	m := testMain(svc, "127.0.0.1:0")
	if err := Run([]string{"-version"}, m); err != nil {
		t.Errorf("-version: %v", err)
	}
	if err := Run([]string{"-log-format", "xml"}, m); err == nil || !strings.Contains(err.Error(), "-log-format") {
		t.Errorf("bad -log-format: %v", err)
	}
	if err := Run([]string{"-nope"}, m); err == nil {
		t.Error("unknown flag accepted")
	}
	if err := Run([]string{"-conf", filepath.Join(t.TempDir(), "missing.toml")}, m); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing config: %v", err)
	}
	good, bad := writeConf(t, "good"), writeConf(t, "bad")
	if err := Run([]string{"-conf", good, "-check-config"}, m); err != nil {
		t.Errorf("-check-config: %v", err)
	}
	if err := Run([]string{"-conf", bad, "-check-config"}, m); err == nil || err.Error() != bad+": bad file" {
		t.Errorf("-check-config of a bad file: %v, want the path and the error", err)
	}
	if svc.started.Load() || svc.shutdowns.Load() != 0 {
		t.Error("an early exit touched the service")
	}
}

func TestCheckConfig(t *testing.T) {
	var b bytes.Buffer
	if err := CheckConfig(&b, "x.toml", []string{"w1", "w2"}, nil); err != nil || b.String() != "x.toml: warning: w1\nx.toml: warning: w2\nx.toml: ok\n" {
		t.Errorf("got %v, %q", err, b.String())
	}
	b.Reset()
	err := CheckConfig(&b, "x.toml", nil, errors.New("boom"))
	if err == nil || err.Error() != "x.toml: boom" || b.Len() != 0 {
		t.Errorf("got %v, %q", err, b.String())
	}
}

func TestAddFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	f := AddFlags(fs, "configs/x.toml")
	if err := fs.Parse([]string{"-check-config", "-log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	if f.Conf != "configs/x.toml" || !f.Check {
		t.Errorf("flags %+v", f)
	}
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	AddFlags(fs, "")
	if err := fs.Parse([]string{"-conf", "x"}); err == nil {
		t.Error("-conf registered without a config file")
	}
}

// TestStartFailure: a service whose admin listener or start fails is
// shut down with ShutdownOnError, and left alone without.
func TestStartFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	path := writeConf(t, "good")
	for _, shut := range []bool{true, false} {
		svc := &fake{}
		m := testMain(svc, busy.Addr().String())
		m.ShutdownOnError = shut
		if err := Run([]string{"-conf", path}, m); err == nil || !strings.Contains(err.Error(), "admin") {
			t.Errorf("admin address in use: %v", err)
		}
		svc2 := &fake{startErr: errors.New("no start")}
		m2 := testMain(svc2, "127.0.0.1:0")
		m2.ShutdownOnError = shut
		if err := Run([]string{"-conf", path}, m2); err == nil || err.Error() != "no start" {
			t.Errorf("start failure: %v", err)
		}
		want := int32(0)
		if shut {
			want = 1
		}
		if svc.shutdowns.Load() != want || svc2.shutdowns.Load() != want {
			t.Errorf("ShutdownOnError %v: shutdowns %d, %d, want %d", shut, svc.shutdowns.Load(), svc2.shutdowns.Load(), want)
		}
	}
	m := testMain(&fake{}, "127.0.0.1:0")
	m.New = func(config, Env) (*fake, error) { return nil, errors.New("no new") }
	if err := Run([]string{"-conf", path}, m); err == nil || err.Error() != "no new" {
		t.Errorf("New failure: %v", err)
	}
}

// TestRunSignals runs a service to the end: the admin listener reports
// its readiness, SIGHUP reloads, SIGTERM drains and stops within the
// Stop's deadline.
func TestRunSignals(t *testing.T) {
	svc := &fake{}
	m := testMain(svc, "127.0.0.1:0")
	running := make(chan string, 1)
	m.Started = func(_ *slog.Logger, _ config, s *fake, adminAddr string) {
		if s != svc || adminAddr != s.adminAddr() {
			t.Errorf("Started with %p %q, want %p %q", s, adminAddr, svc, s.adminAddr())
		}
		running <- adminAddr
	}
	m.Reload = func(s *fake) { s.reloads.Add(1) }
	var stopSig os.Signal
	var drained atomic.Bool
	m.Stop = func(_ config, _ *fake, sig os.Signal) Stop {
		stopSig = sig
		return Stop{Timeout: time.Minute, Attrs: []any{"extra", 1}, Drain: func(ctx context.Context) {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("Drain's context has no deadline")
			}
			drained.Store(true)
		}}
	}
	done := make(chan error, 1)
	go func() { done <- Run([]string{"-conf", writeConf(t, "good")}, m) }()
	var adminAddr string
	select {
	case adminAddr = <-running:
	case err := <-done:
		t.Fatalf("Run returned %v", err)
	}
	resp, err := http.Get("http://" + adminAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %d", resp.StatusCode)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); svc.reloads.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload")
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running 10 s after SIGTERM")
	}
	if stopSig != syscall.SIGTERM || !drained.Load() || svc.shutdowns.Load() != 1 || svc.reloads.Load() != 1 {
		t.Errorf("stop by %v, drained %v, shutdowns %d, reloads %d", stopSig, drained.Load(), svc.shutdowns.Load(), svc.reloads.Load())
	}
	if c, err := net.DialTimeout("tcp", adminAddr, 5*time.Second); err == nil {
		c.Close()
		t.Error("admin listener still open after Run returned")
	}
}

func TestParseFlagsOnly(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	v := fs.String("v", "", "")
	if err := ParseFlagsOnly(fs, []string{"-v", "1"}); err != nil || *v != "1" {
		t.Errorf("flags: %v, -v %q", err, *v)
	}
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	if err := ParseFlagsOnly(fs, []string{"extra"}); err == nil || !strings.Contains(err.Error(), `unexpected arguments ["extra"]`) {
		t.Errorf("positional argument: %v", err)
	}
}
