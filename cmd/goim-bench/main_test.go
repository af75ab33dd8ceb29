package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/internal/bench"
	"github.com/goim/goim/internal/buildinfo"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/cluster"
	"github.com/goim/goim/internal/testkit/jobtest"
)

func TestUsage(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string // in stderr
	}{
		{name: "no command", args: nil, wantCode: exitUsage, wantErr: "usage"},
		{name: "unknown command", args: []string{"bench"}, wantCode: exitUsage, wantErr: `unknown command "bench"`},
		{name: "help", args: []string{"help"}, wantCode: exitOK},
		{name: "version", args: []string{"-version"}, wantCode: exitOK},
		{name: "help of a command", args: []string{"push", "-h"}, wantCode: exitOK, wantErr: "-flood"},
		{name: "unknown flag", args: []string{"conns", "-nope"}, wantCode: exitUsage, wantErr: "-nope"},
		{name: "stray argument", args: []string{"run", "x"}, wantCode: exitUsage, wantErr: "unexpected arguments"},
		{name: "merge without files", args: []string{"merge"}, wantCode: exitUsage, wantErr: "name the summary files"},
		{name: "bad kind", args: []string{"push", "-kind", "user", "-q"}, wantCode: exitUsage, wantErr: `-kind "user"`},
		{name: "bad source range", args: []string{"conns", "-addrs", "127.0.0.1:1", "-src", "127.0.0.9-3"}, wantCode: exitUsage, wantErr: "-src"},
		{name: "conns without a comet", args: []string{"conns"}, wantCode: exitUsage, wantErr: "give -addrs or -api"},
		{name: "remote comet refused", args: []string{"conns", "-addrs", "192.0.2.1:3101"}, wantCode: exitUsage, wantErr: "-allow-remote"},
		{name: "remote API refused", args: []string{"push", "-api", "http://192.0.2.1:3111"}, wantCode: exitUsage, wantErr: "-allow-remote"},
		{name: "more connections than files", args: []string{"conns", "-addrs", "127.0.0.1:1", "-n", "1000000"}, wantCode: exitUsage, wantErr: "open files"},
		{name: "merge of a missing file", args: []string{"merge", "/nonexistent.json"}, wantCode: exitFail, wantErr: "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tc.args, &stdout, &stderr)
			if code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantErr) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to contain %q", code, tc.wantCode, stderr.String(), tc.wantErr)
			}
			if want := "goim-bench " + buildinfo.Version() + "\n"; tc.args != nil && tc.args[0] == "-version" && stdout.String() != want {
				t.Fatalf("-version printed %q, want %q", stdout.String(), want)
			}
		})
	}
}

// benchCluster is goim on loopback with a job: logic, three comets (the
// third one is drained by a test), kfake.
type benchCluster struct {
	*cluster.Cluster
}

func startBenchCluster(t *testing.T) *benchCluster {
	t.Helper()
	// Rooms live://rel* are recoverable (reliable delivery's room streams).
	c := cluster.StartWith(t, 3, cluster.Options{Logic: func(lc *logic.Config) { lc.Stream.Rooms = []string{"live://rel*"} }})
	jobtest.Start(t, c, "job-bench-test")
	return &benchCluster{Cluster: c}
}

// addr is the first client address of comet host over tr.
func (c *benchCluster) addr(host, tr string) string {
	return c.Comets[host].Addrs(tr)[0].String()
}

// bench runs goim-bench with args plus -json and returns the exit status,
// the summary and stderr.
func (c *benchCluster) bench(t *testing.T, ctx context.Context, stderr *lineWriter, args ...string) (int, *bench.Summary) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "summary.json")
	var stdout bytes.Buffer
	args = append([]string{args[0], "-json", path}, args[1:]...) // flags before merge's file names
	code := run(ctx, args, &stdout, stderr)
	t.Logf("goim-bench %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no summary: %v", err)
	}
	defer f.Close()
	s, err := bench.ReadSummary(f)
	if err != nil {
		t.Fatal(err)
	}
	return code, s
}

// lineWriter collects stderr and reports when a line matches a pattern.
type lineWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	pattern *regexp.Regexp
	match   func([]string) bool
	matched chan struct{}
	once    sync.Once
}

func newLineWriter(pattern string, match func([]string) bool) *lineWriter {
	w := &lineWriter{matched: make(chan struct{}), match: match}
	if pattern != "" {
		w.pattern = regexp.MustCompile(pattern)
	}
	return w
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pattern != nil {
		if m := w.pattern.FindStringSubmatch(string(p)); m != nil && w.match(m) {
			w.once.Do(func() { close(w.matched) })
		}
	}
	return w.buf.Write(p)
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestAgainstCluster runs goim-bench against a real logic, job and comets
// on loopback: every push delivered in run and in conns+push+merge, and
// loss reported (exit status 1) when connections drop mid-run or a push
// has no receiver.
func TestAgainstCluster(t *testing.T) {
	c := startBenchCluster(t)
	// Bounded: a goim-bench that never prints what a case waits for fails
	// the test after this instead of hanging until go test's own timeout.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	// The push API's token: from the variable for run, from -token-file
	// for push.
	t.Setenv(bench.EnvToken, cluster.APIToken)

	t.Run("run delivers everything", func(t *testing.T) {
		cases := []struct {
			name string
			args []string
		}{
			{name: "tcp room on two comets", args: []string{"-transport", "tcp", "-addrs", c.addr("comet-1", "tcp") + "," + c.addr("comet-2", "tcp"),
				"-n", "40", "-room", "live://b1,live://b2", "-kind", "room", "-rate", "40"}},
			{name: "ws keys from several source addresses", args: []string{"-transport", "ws", "-addrs", c.addr("comet-1", "ws"), "-n", "30",
				"-kind", "keys", "-rate", "60", "-src", "127.0.0.2-127.0.0.4"}},
			{name: "tcp mids, two connections per user", args: []string{"-addrs", c.addr("comet-2", "tcp"), "-n", "20", "-mid-count", "10",
				"-mid-start", "500", "-kind", "mids", "-rate", "40"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"run", "-q", "-api", c.API, "-duration", "1s", "-drain", "5s", "-heartbeat", "200ms"}, tc.args...)
				code, s := c.bench(t, ctx, newLineWriter("", nil), args...)
				d := s.Delivery
				if code != exitOK || !s.OK || d.Expected == 0 || d.Delivered != d.Expected || d.Lost != 0 || d.Misrouted != 0 {
					t.Fatalf("exit %d, summary ok %v, failures %q, delivery %+v", code, s.OK, s.Failures, d)
				}
				if s.Conns.Established != s.Conns.Requested || s.Push.Accepted == 0 || s.Conns.HeartbeatReplies == 0 {
					t.Fatalf("conns %+v push %+v", s.Conns, s.Push)
				}
			})
		}
	})

	t.Run("reliable delivers everything, each stream position once", func(t *testing.T) {
		cases := []struct {
			name    string
			args    []string
			streams []string // the streams the messages are in
		}{
			{name: "tcp recoverable room", args: []string{"-transport", "tcp", "-addrs", c.addr("comet-1", "tcp") + "," + c.addr("comet-2", "tcp"),
				"-n", "20", "-room", "live://rel1", "-kind", "room", "-rate", "40"}, streams: []string{"room"}},
			{name: "tcp plain room", args: []string{"-transport", "tcp", "-addrs", c.addr("comet-1", "tcp"),
				"-n", "10", "-room", "live://plain1", "-kind", "room", "-rate", "40"}, streams: []string{"none"}},
			{name: "ws mids", args: []string{"-transport", "ws", "-addrs", c.addr("comet-2", "ws"), "-n", "10", "-room", "",
				"-mid-start", "700", "-kind", "mids", "-rate", "40"}, streams: []string{"user"}},
			{name: "tcp keys", args: []string{"-transport", "tcp", "-addrs", c.addr("comet-1", "tcp"), "-n", "10", "-room", "",
				"-kind", "keys", "-rate", "40"}, streams: []string{"key"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"run", "-q", "-reliable", "-api", c.API, "-duration", "1s", "-drain", "5s", "-heartbeat", "200ms"}, tc.args...)
				code, s := c.bench(t, ctx, newLineWriter("", nil), args...)
				d, r := s.Delivery, s.Conns.Reliable
				if code != exitOK || !s.OK || d.Expected == 0 || d.Delivered != d.Expected || d.Duplicated != 0 || r == nil {
					t.Fatalf("exit %d, summary ok %v, failures %q, delivery %+v, reliable %+v", code, s.OK, s.Failures, d, r)
				}
				msgs, dups, gaps, unicast := 0, 0, 0, 0
				for name, st := range r.Streams {
					if !slices.Contains(tc.streams, name) {
						t.Errorf("messages in stream %s: %+v", name, st)
					}
					msgs, dups, gaps = msgs+int(st.Messages), dups+int(st.Duplicates), gaps+int(st.Gaps)
					if name == "user" || name == "key" { // only pushes by user or key are acked
						unicast += int(st.Messages)
					}
				}
				if uint64(msgs) != d.Received || dups != 0 || gaps != 0 || r.Plain != 0 || r.Bad != 0 || r.Unrecovered != 0 ||
					r.NoID != 0 || r.AckedIDs != uint64(unicast) || r.Reports == 0 {
					t.Fatalf("reliable %+v (streams %v); received %d", r, r.Streams, d.Received)
				}
			})
		}
	})

	t.Run("sse delivers everything", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
		}{
			{name: "room", args: []string{"-n", "20", "-room", "live://s1", "-kind", "room", "-rate", "40"}},
			{name: "keys, two ops accepted", args: []string{"-n", "10", "-room", "", "-accepts", "1000,1001", "-kind", "keys", "-op", "1001", "-rate", "40"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"run", "-q", "-api", c.API, "-transport", "sse", "-addrs", c.addr("comet-1", "ws"),
					"-duration", "1500ms", "-drain", "5s"}, tc.args...)
				code, s := c.bench(t, ctx, newLineWriter("", nil), args...)
				d := s.Delivery
				if code != exitOK || !s.OK || d.Expected == 0 || d.Delivered != d.Expected || d.Lost != 0 || d.Misrouted != 0 {
					t.Fatalf("exit %d, summary ok %v, failures %q, delivery %+v", code, s.OK, s.Failures, d)
				}
				// No heartbeat is sent (the comet's comments, every 30 s, are
				// counted as replies: see internal/bench's SSE tests).
				if s.Conns.Transport != "sse" || s.Conns.Established != s.Conns.Requested || s.Conns.HeartbeatsSent != 0 {
					t.Fatalf("conns %+v", s.Conns)
				}
			})
		}
	})

	t.Run("conns and push processes merged", func(t *testing.T) {
		dir := t.TempDir()
		connsOut := [2]string{filepath.Join(dir, "c1.json"), filepath.Join(dir, "c2.json")}
		pushOut := filepath.Join(dir, "p.json")
		var wg sync.WaitGroup
		defer wg.Wait() // after stopConns: the processes write their files before TempDir goes
		connsCtx, stopConns := context.WithCancel(ctx)
		defer stopConns()
		codes := make([]int, 2)
		progress := make([]*lineWriter, 2)
		for i := range 2 {
			progress[i] = newLineWriter("", nil)
			wg.Go(func() {
				var out bytes.Buffer
				codes[i] = run(connsCtx, []string{"conns", "-run", "merge1", "-addrs", c.addr("comet-1", "ws"), "-transport", "ws",
					"-n", "10", "-first", strconv.Itoa(10 * i), "-room", "live://m1", "-duration", "1m", "-json", connsOut[i]}, &out, progress[i])
				t.Logf("conns %d: exit %d\n%s%s", i, codes[i], out.String(), progress[i].String())
			})
		}
		testkit.WaitFor(t, 10*time.Second, func() error {
			for i, p := range progress {
				if !strings.Contains(p.String(), "conns 10 up") {
					return fmt.Errorf("conns %d: not every connection is up", i)
				}
			}
			return nil
		})
		var out, errw bytes.Buffer
		tokenFile := filepath.Join(dir, "token")
		if err := os.WriteFile(tokenFile, []byte("# the push API token\n"+cluster.APIToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv(bench.EnvToken, "")
		if code := run(ctx, []string{"push", "-q", "-run", "merge1", "-api", c.API, "-token-file", tokenFile, "-kind", "room", "-room", "live://m1",
			"-rate", "50", "-duration", "1s", "-json", pushOut}, &out, &errw); code != exitOK {
			t.Fatalf("push: exit %d\n%s%s", code, out.String(), errw.String())
		}
		f, err := os.Open(pushOut)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := bench.ReadSummary(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		// Once each conns process's progress line counts every push, end
		// them the way a script does: a signal (here, their context).
		recvRE := regexp.MustCompile(`recv (\d+) `)
		testkit.WaitFor(t, 10*time.Second, func() error {
			for i, p := range progress {
				m := recvRE.FindAllStringSubmatch(p.String(), -1)
				if len(m) == 0 {
					return fmt.Errorf("conns %d: no progress line yet", i)
				}
				if n, _ := strconv.ParseUint(m[len(m)-1][1], 10, 64); n < 10*ps.Push.Accepted {
					return fmt.Errorf("conns %d: %d of %d deliveries", i, n, 10*ps.Push.Accepted)
				}
			}
			return nil
		})
		stopConns()
		wg.Wait()
		if codes[0] != exitOK || codes[1] != exitOK {
			t.Fatalf("conns exits %v", codes)
		}
		code, s := c.bench(t, ctx, newLineWriter("", nil), "merge", connsOut[0], connsOut[1], pushOut)
		d := s.Delivery
		if code != exitOK || !s.OK || s.Conns.Processes != 2 || s.Conns.Established != 20 || d.Expected != 20*s.Push.Accepted || d.Lost != 0 {
			t.Fatalf("exit %d, failures %q, conns %+v, push accepted %d, delivery %+v", code, s.Failures, s.Conns, s.Push.Accepted, d)
		}
	})

	t.Run("connections dropped mid-run lose pushes", func(t *testing.T) {
		// Half of the connections are on comet-3, which is drained (all its
		// clients closed) once pushes flow.
		progress := newLineWriter(`push (\d+) sent`, func(m []string) bool { n, _ := strconv.Atoi(m[1]); return n >= 10 })
		done := make(chan struct{})
		go func() {
			defer close(done)
			select {
			case <-progress.matched:
				dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				c.Comets["comet-3"].Drain(dctx, 0)
			case <-ctx.Done():
			}
		}()
		code, s := c.bench(t, ctx, progress, "run", "-api", c.API, "-addrs", c.addr("comet-1", "tcp")+","+c.addr("comet-3", "tcp"), "-n", "20",
			"-room", "live://d1", "-rate", "40", "-duration", "2s", "-drain", "500ms")
		<-done
		// The ten connections left on comet-1 got everything; the dropped
		// ones lost what was sent after the drop (and what was on its way).
		d := s.Delivery
		if code != exitFail || s.OK || s.Conns.Dropped != 10 || d.Lost == 0 || d.LostAfterDrop == 0 || d.Delivered < 10*s.Push.Accepted {
			t.Fatalf("exit %d, failures %q, conns %+v, delivery %+v", code, s.Failures, s.Conns, d)
		}
		for _, l := range d.LostSamples {
			if !l.Dropped {
				t.Fatalf("a connection that was not dropped lost pushes: %+v", l)
			}
		}
		if !strings.Contains(strings.Join(s.Failures, "\n"), "lost") {
			t.Fatalf("failures %q do not name the loss", s.Failures)
		}
	})

	t.Run("pushes to a room nobody joined", func(t *testing.T) {
		code, s := c.bench(t, ctx, newLineWriter("", nil), "run", "-q", "-api", c.API, "-addrs", c.addr("comet-1", "tcp"), "-n", "5",
			"-room", "live://here", "-push-room", "live://nobody", "-rate", "20", "-duration", "300ms", "-drain", "300ms")
		if code != exitFail || s.OK || s.Delivery.Expected != 0 || !strings.Contains(strings.Join(s.Failures, "\n"), "no delivery was expected") {
			t.Fatalf("exit %d, failures %q, delivery %+v", code, s.Failures, s.Delivery)
		}
	})
}
