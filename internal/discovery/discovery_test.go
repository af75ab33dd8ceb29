package discovery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/discovery/embedded"
)

const waitTimeout = 10 * time.Second

func TestConfigValidate(t *testing.T) {
	valid := DefaultConfig()
	valid.Nodes = []string{"127.0.0.1:7171", "discovery.local:7171"}
	tests := []struct {
		name  string
		edit  func(*Config)
		paths []string // key paths of the expected problems, in order
	}{
		{"defaults with nodes", func(*Config) {}, nil},
		{"no nodes", func(c *Config) { c.Nodes = nil }, []string{"nodes"}},
		{"bad nodes", func(c *Config) { c.Nodes = []string{"127.0.0.1:7171", "http://x:1", "nohost", "a:"} },
			[]string{"nodes[1]", "nodes[2]", "nodes[3]"}},
		{"empty zone and env", func(c *Config) { c.Zone, c.Env = "", "" }, []string{"zone", "env"}},
		{"renew beyond eviction", func(c *Config) { c.RenewInterval = conf.Duration(90 * time.Second) }, []string{"renew_interval"}},
		{"zero durations", func(c *Config) {
			c.RenewInterval, c.PollTimeout, c.FetchInterval, c.RequestTimeout = 0, 0, 0, -1
		}, []string{"renew_interval", "poll_timeout", "fetch_interval", "request_timeout"}},
		{"empty region and host are fine", func(c *Config) { c.Region, c.Host = "", "" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			c.Nodes = slices.Clone(valid.Nodes)
			tt.edit(&c)
			var p conf.Problems
			c.Validate(p.Sub("discovery")) // as a section of a service config
			err := p.Err()
			if len(tt.paths) == 0 {
				if err != nil {
					t.Fatalf("unexpected problems: %v", err)
				}
				return
			}
			if !errors.Is(err, conf.ErrInvalid) {
				t.Fatalf("err = %v, want conf.ErrInvalid", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.paths) {
				t.Fatalf("got %d problems, want %v:\n%v", len(lines), tt.paths, err)
			}
			for i, path := range tt.paths {
				if want := "discovery." + path + ": "; !strings.HasPrefix(lines[i], want) {
					t.Errorf("problem %d = %q, want prefix %q", i, lines[i], want)
				}
			}
		})
	}
	if _, err := New(Config{}, nil); !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("New(Config{}) = %v, want conf.ErrInvalid", err)
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeCaptured decodes answers captured from the real server (see
// TestCaptureTestdata).
func TestDecodeCaptured(t *testing.T) {
	wantInstances := func(t *testing.T, s snapshot) {
		t.Helper()
		if len(s.instances) != 2 || s.latest == 0 {
			t.Fatalf("snapshot = %+v, want 2 instances and a latest_timestamp", s)
		}
		a, b := s.instances[0], s.instances[1]
		if a.Zone != "sh001" || a.Hostname != "comet-1" || b.Zone != "sh002" || b.Hostname != "comet-2" {
			t.Errorf("order = %s/%s, %s/%s; want sh001/comet-1, sh002/comet-2", a.Zone, a.Hostname, b.Zone, b.Hostname)
		}
		if a.AppID != "capture.app" || a.Env != "dev" || a.Region != "sh" || a.Version != "v3.0.0" || a.LatestTimestamp == 0 {
			t.Errorf("instance = %+v", a)
		}
		if !slices.Equal(a.Addrs, []string{"grpc://127.0.0.1:3109", "tcp://127.0.0.1:3101"}) {
			t.Errorf("addrs = %v", a.Addrs)
		}
		if a.Metadata["conn_count"] != "0" || a.Metadata["offline"] != "false" || b.Metadata["conn_count"] != "7" {
			t.Errorf("metadata = %v, %v", a.Metadata, b.Metadata)
		}
	}
	reply := func(t *testing.T, name string) reply {
		t.Helper()
		r, err := decodeReply(readTestdata(t, name))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("fetch", func(t *testing.T) {
		r := reply(t, "fetch_ok.json")
		if err := answer(r, "n"); err != nil {
			t.Fatal(err)
		}
		s, err := decodeInstanceInfo(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		wantInstances(t, s)
	})
	t.Run("polls", func(t *testing.T) {
		r := reply(t, "polls_changed.json")
		if err := answer(r, "n"); err != nil {
			t.Fatal(err)
		}
		s, err := decodePolls(r.Data, "capture.app")
		if err != nil {
			t.Fatal(err)
		}
		wantInstances(t, s)
		if _, err := decodePolls(r.Data, "other.app"); err == nil {
			t.Error("decodePolls of an absent app: no error")
		}
	})
	codes := []struct {
		file   string
		code   int
		target error
	}{
		{"polls_notmodified.json", -304, ErrNotModified},
		{"fetch_notfound.json", -404, ErrNotFound},
		{"renew_notfound.json", -404, ErrNotFound},
		{"cancel_notfound.json", -404, ErrNotFound},
		{"set_notfound.json", -400, nil},
		{"register_noaddrs.json", -400, nil},
	}
	for _, tt := range codes {
		t.Run(tt.file, func(t *testing.T) {
			err := answer(reply(t, tt.file), "127.0.0.1:7171")
			var ce *CodeError
			if !errors.As(err, &ce) || ce.Code != tt.code {
				t.Fatalf("answer = %v, want code %d", err, tt.code)
			}
			if tt.target != nil && !errors.Is(err, tt.target) {
				t.Errorf("%v does not match %v", err, tt.target)
			}
			if errors.Is(err, ErrNotFound) && tt.code != -404 {
				t.Errorf("%v matches ErrNotFound", err)
			}
		})
	}
	for _, name := range []string{"register_ok.json", "set_ok.json", "renew_ok.json", "cancel_ok.json"} {
		if err := answer(reply(t, name), "n"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := decodeReply([]byte("<html>")); err == nil {
		t.Error("decodeReply(<html>): no error")
	}
}

// waitChange waits for Changed signals until check accepts the snapshot.
func waitChange(t *testing.T, w *Watcher, check func([]Instance) error) {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	err := errors.New("no change signalled")
	for {
		select {
		case <-w.Changed():
			if err = check(w.Instances()); err == nil {
				return
			}
		case <-timer.C:
			t.Fatalf("after %v: %v", waitTimeout, err)
		}
	}
}

// one returns the single instance of s, or an error.
func one(s []Instance) (Instance, error) {
	if len(s) != 1 {
		return Instance{}, fmt.Errorf("%d instances: %+v", len(s), s)
	}
	return s[0], nil
}

func wantMetadata(key, value string) func([]Instance) error {
	return func(s []Instance) error {
		ins, err := one(s)
		if err != nil {
			return err
		}
		if got := ins.Metadata[key]; got != value {
			return fmt.Errorf("metadata %s = %q, want %q (%v)", key, got, value, ins.Metadata)
		}
		return nil
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestRegisterWatchSetCancel(t *testing.T) {
	const app = "test.rwsc"
	ctx := ctxT(t)
	comet := newTestClient(t, testConfig(t, "comet-a"))
	logic := newTestClient(t, testConfig(t, "logic-a"))

	w := logic.Watch(ctx, app)
	if err := w.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.Instances(); got == nil || len(got) != 0 {
		t.Fatalf("first snapshot of an unknown app = %#v, want empty non-nil", got)
	}
	waitChange(t, w, func(s []Instance) error { return nil }) // the first snapshot is a change

	reg, err := comet.Register(ctx, Instance{
		AppID: app, Addrs: []string{"grpc://127.0.0.1:3109"}, Version: "v3",
		Metadata: map[string]string{"conn_count": "0", "offline": "false"},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitChange(t, w, func(s []Instance) error {
		ins, err := one(s)
		if err != nil {
			return err
		}
		want := Instance{Region: "sh", Zone: "sh001", Env: "dev", AppID: app, Hostname: "comet-a",
			Addrs: []string{"grpc://127.0.0.1:3109"}, Version: "v3", LatestTimestamp: ins.LatestTimestamp,
			Metadata: map[string]string{"conn_count": "0", "offline": "false"}}
		if !equalInstance(ins, want) || ins.LatestTimestamp == 0 {
			return fmt.Errorf("instance = %+v, want %+v", ins, want)
		}
		return nil
	})

	// Metadata-only changes, many in a row: the last one must arrive.
	for i := 1; i <= 5; i++ {
		if err := reg.Set(ctx, map[string]string{"conn_count": fmt.Sprint(i), "offline": "false"}); err != nil {
			t.Fatal(err)
		}
	}
	waitChange(t, w, wantMetadata("conn_count", "5"))

	// Dropping a key replaces the metadata.
	if err := reg.Set(ctx, map[string]string{"conn_count": "6"}); err != nil {
		t.Fatal(err)
	}
	waitChange(t, w, func(s []Instance) error {
		if err := wantMetadata("conn_count", "6")(s); err != nil {
			return err
		}
		if _, ok := s[0].Metadata["offline"]; ok {
			return fmt.Errorf("metadata still has offline: %v", s[0].Metadata)
		}
		return nil
	})

	// Cancelling the last instance must be delivered as an empty snapshot.
	if err := reg.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	waitChange(t, w, func(s []Instance) error {
		if len(s) != 0 {
			return fmt.Errorf("%d instances left", len(s))
		}
		return nil
	})
	if err := reg.Cancel(ctx); err != nil {
		t.Errorf("second Cancel = %v", err)
	}
	if err := reg.Set(ctx, nil); !errors.Is(err, ErrCancelled) {
		t.Errorf("Set after Cancel = %v, want ErrCancelled", err)
	}
}

func TestWatchSeesSeveralInstancesAndZones(t *testing.T) {
	const app = "test.zones"
	ctx := ctxT(t)
	logic := newTestClient(t, testConfig(t, "logic-z"))
	w := logic.Watch(ctx, app)
	for i, zone := range []string{"sh002", "sh001", "sh001"} {
		c := newTestClient(t, testConfig(t, fmt.Sprintf("comet-z%d", i)))
		if _, err := c.Register(ctx, Instance{AppID: app, Zone: zone, Addrs: []string{"grpc://127.0.0.1:1"}}); err != nil {
			t.Fatal(err)
		}
	}
	waitChange(t, w, func(s []Instance) error {
		var got []string
		for _, ins := range s {
			got = append(got, ins.Zone+"/"+ins.Hostname)
		}
		if want := []string{"sh001/comet-z1", "sh001/comet-z2", "sh002/comet-z0"}; !slices.Equal(got, want) {
			return fmt.Errorf("instances %v, want %v", got, want)
		}
		return nil
	})
}

// TestRenewReregisters: when the server forgets the instance (here: a
// cancel behind the Registration's back), the renew loop registers it
// again, with its current metadata.
func TestRenewReregisters(t *testing.T) {
	const app = "test.renew"
	ctx := ctxT(t)
	cfg := testConfig(t, "comet-r")
	comet := newTestClient(t, cfg)
	logic := newTestClient(t, testConfig(t, "logic-r"))
	w := logic.Watch(ctx, app)

	reg, err := comet.Register(ctx, Instance{AppID: app, Addrs: []string{"grpc://127.0.0.1:3109"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Set(ctx, map[string]string{"conn_count": "9"}); err != nil {
		t.Fatal(err)
	}
	waitChange(t, w, wantMetadata("conn_count", "9"))
	before := w.Instances()[0].LatestTimestamp

	if err := rawCancel(t, cfg, app, "comet-r"); err != nil {
		t.Fatal(err)
	}
	// The renew loop may register it again before the watcher sees it
	// gone; a registration gets a new latest_timestamp.
	waitChange(t, w, func(s []Instance) error {
		if err := wantMetadata("conn_count", "9")(s); err != nil {
			return err
		}
		if s[0].LatestTimestamp == before {
			return errNotYet
		}
		return nil
	})
}

func TestDeadFirstNodeFallsBack(t *testing.T) {
	const app = "test.fallback"
	ctx := ctxT(t)
	cfg := testConfig(t, "comet-f")
	cfg.Nodes = []string{deadAddr(t), serverAddr(t)}
	c := newTestClient(t, cfg)
	w := c.Watch(ctx, app)
	if _, err := c.Register(ctx, Instance{AppID: app, Addrs: []string{"grpc://127.0.0.1:3109"}}); err != nil {
		t.Fatal(err)
	}
	waitChange(t, w, func(s []Instance) error {
		_, err := one(s)
		return err
	})

	// With no live node, the error names every node.
	dead := testConfig(t, "comet-f2")
	dead.Nodes = []string{deadAddr(t), deadAddr(t)}
	d := newTestClient(t, dead)
	_, err := d.Register(ctx, Instance{AppID: app, Addrs: []string{"grpc://127.0.0.1:3109"}})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Register with dead nodes = %v, want ErrUnavailable", err)
	}
	msg := err.Error()
	for _, want := range append([]string{"discovery: register " + app + ": "}, dead.Nodes...) {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
}

func TestRegisterErrors(t *testing.T) {
	ctx := ctxT(t)
	c := newTestClient(t, testConfig(t, "comet-e"))
	if _, err := c.Register(ctx, Instance{AppID: "test.err"}); err == nil {
		t.Error("Register without addrs: no error")
	}
	// The server rejects a register whose metadata is not JSON; ours always
	// is, so provoke a -400 with a zone the server requires but we clear.
	c.cfg.Zone = ""
	_, err := c.Register(ctx, Instance{AppID: "test.err", Addrs: []string{"grpc://127.0.0.1:1"}})
	var ce *CodeError
	if !errors.As(err, &ce) || ce.Code != -400 || !strings.HasPrefix(err.Error(), "discovery: register test.err: node 127.0.0.1:") {
		t.Errorf("Register without zone = %v, want a -400 CodeError", err)
	}
}

// ours reports the goroutines running code of this package (other than
// tests) or an HTTP client connection.
func ours() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, mark := range []string{"discovery.(*Client)", "discovery.(*Watcher)", "discovery.(*Registration)",
			"discovery.(*Client).Watch.func", "net/http.(*persistConn)"} {
			if strings.Contains(g, mark) {
				found = append(found, g)
				break
			}
		}
	}
	return found
}

func TestCloseStopsEverything(t *testing.T) {
	const app = "test.close"
	serverAddr(t)
	waitFor(t, waitTimeout, func() error {
		if g := ours(); len(g) > 0 {
			return fmt.Errorf("goroutines left by earlier tests:\n%s", strings.Join(g, "\n\n"))
		}
		return nil
	})
	before := runtime.NumGoroutine()

	ctx := ctxT(t)
	comet, err := New(testConfig(t, "comet-c"), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	logic := newTestClient(t, testConfig(t, "logic-c"))
	w := logic.Watch(ctx, app)
	if _, err := comet.Register(ctx, Instance{AppID: app, Addrs: []string{"grpc://127.0.0.1:3109"}}); err != nil {
		t.Fatal(err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	w1 := comet.Watch(watchCtx, app)
	w2 := comet.Watch(ctx, app)
	for _, w := range []*Watcher{w, w1, w2} {
		waitChange(t, w, func(s []Instance) error { _, err := one(s); return err })
	}
	stopWatch() // a watcher stopped by its own context
	if err := w1.Ready(ctx); err != nil {
		t.Errorf("Ready after the first snapshot = %v", err)
	}

	if err := comet.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := comet.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	// Close deregistered the instance.
	waitChange(t, w, func(s []Instance) error {
		if len(s) != 0 {
			return errNotYet
		}
		return nil
	})
	if _, err := comet.Register(ctx, Instance{AppID: app, Addrs: []string{"x"}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Register after Close = %v, want ErrClosed", err)
	}
	if err := comet.Watch(ctx, app).Ready(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Watch after Close: Ready = %v, want ErrClosed", err)
	}
	if err := logic.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, func() error {
		if g := ours(); len(g) > 0 {
			return fmt.Errorf("goroutines left after Close:\n%s", strings.Join(g, "\n\n"))
		}
		if n := runtime.NumGoroutine(); n > before+2 {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
}

func TestReadyFails(t *testing.T) {
	c := newTestClient(t, testConfig(t, "ready"))
	ctx, cancel := context.WithCancel(context.Background())
	w := c.Watch(ctx, "test.ready.none")
	cancel()
	if err := w.Ready(context.Background()); !errors.Is(err, context.Canceled) {
		// The first fetch may win the race with cancel; then Ready is nil.
		if err != nil {
			t.Errorf("Ready after the watch context ended = %v", err)
		}
	}
	if err := c.Watch(context.Background(), "").Ready(context.Background()); err == nil {
		t.Error("Watch of an empty app id: Ready = nil")
	}
	short, stop := context.WithTimeout(context.Background(), time.Millisecond)
	defer stop()
	dead := testConfig(t, "ready-dead")
	dead.Nodes = []string{deadAddr(t)}
	d := newTestClient(t, dead)
	if err := d.Watch(context.Background(), "x").Ready(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ready with dead nodes = %v, want DeadlineExceeded", err)
	}
}

// TestLongPollDelivers checks the long-poll path alone: with the backstop
// fetch pushed out of reach, registrations still reach the watcher.
func TestLongPollDelivers(t *testing.T) {
	const app = "test.poll"
	ctx := ctxT(t)
	cfg := testConfig(t, "logic-p")
	cfg.FetchInterval = conf.Duration(time.Hour)
	logic := newTestClient(t, cfg)
	w := logic.Watch(ctx, app)
	if err := w.Ready(ctx); err != nil { // the first fetch
		t.Fatal(err)
	}
	for i := range 3 {
		c := newTestClient(t, testConfig(t, fmt.Sprintf("comet-p%d", i)))
		if _, err := c.Register(ctx, Instance{AppID: app, Addrs: []string{"grpc://127.0.0.1:1"}}); err != nil {
			t.Fatal(err)
		}
		waitChange(t, w, func(s []Instance) error {
			if len(s) != i+1 {
				return fmt.Errorf("%d instances, want %d", len(s), i+1)
			}
			return nil
		})
	}
}

func TestStartServerOnlyOnce(t *testing.T) {
	serverAddr(t)
	for _, addr := range []string{"127.0.0.1:0", "no-port"} {
		if err := embedded.StartServer(addr, nil); err == nil || errors.Is(err, embedded.ErrStarted) {
			t.Errorf("StartServer(%q) = %v, want an address error", addr, err)
		}
	}
	if err := embedded.StartServer(deadAddr(t), nil); !errors.Is(err, embedded.ErrStarted) {
		t.Errorf("second StartServer = %v, want ErrStarted", err)
	}
}
