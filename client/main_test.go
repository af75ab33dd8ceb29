package client_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/job"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/cluster"
)

// TestMain stops the examples' cluster, if one started, after the run.
func TestMain(m *testing.M) {
	code := m.Run()
	examples.tb.cleanup()
	os.Exit(code)
}

// examples is the cluster the examples run against, started by the first
// example that asks for it: logic at examples.api, whose nodes answer
// names one comet at 127.0.0.1 (its default_domain) with the comet's TCP
// and WebSocket ports, and a job.
var examples struct {
	once sync.Once
	tb   mainTB
	c    *cluster.Cluster
	api  string
	tcp  string // the comet's TCP address
}

// exampleAPI starts the examples' cluster on first use and returns
// logic's HTTP base URL.
func exampleAPI() string {
	examples.once.Do(startExamples)
	return examples.api
}

// exampleComet returns the comet's TCP address.
func exampleComet() string {
	examples.once.Do(startExamples)
	return examples.tcp
}

// pushRoom pushes body to room ("type://id") with operation 1000 through
// logic's push API.
func pushRoom(room, body string) {
	typ, id, _ := strings.Cut(room, "://")
	examples.c.Push("/goim/push/room?operation=1000&type="+typ+"&room="+id, body)
}

// pushMid pushes body to the connections of user mid with operation op.
func pushMid(mid int64, op int32, body string) {
	examples.c.Push("/goim/push/mids?operation="+strconv.Itoa(int(op))+"&mids="+strconv.FormatInt(mid, 10), body)
}

func startExamples() {
	tb := &examples.tb
	tcpPort, wsPort := testkit.FreePort(tb), testkit.FreePort(tb)
	c := cluster.StartWith(tb, 0, cluster.Options{Logic: func(lc *logic.Config) {
		lc.Node.DefaultDomain = "127.0.0.1"
		lc.Node.TCPPort, lc.Node.WSPort = tcpPort, wsPort
		lc.Backoff = logic.BackoffConfig{MaxDelay: 2, BaseDelay: 1, Factor: 1.5, Jitter: 0.3}
	}})
	c.StartCometWith("comet-1", func(cfg *comet.Config) {
		cfg.TCP.Bind = []string{"127.0.0.1:" + strconv.Itoa(tcpPort)}
		cfg.WebSocket.Bind = []string{"127.0.0.1:" + strconv.Itoa(wsPort)}
	})
	cfg := job.Default()
	cfg.Host = "job-client-examples"
	cfg.Kafka.Brokers = c.Kafka.ListenAddrs()
	cfg.Kafka.Topic = c.Topic
	cfg.Kafka.Group = "job-client-examples-" + testkit.RandomHex(4)
	cfg.Kafka.SessionTimeout = conf.Duration(6 * time.Second)
	cfg.Kafka.CommitInterval = conf.Duration(100 * time.Millisecond)
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Comets = c.CometAddrs()
	cfg.RPC.Secrets = []string{c.Secret}
	j, err := job.New(cfg, job.Deps{Logger: testkit.Logger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	if err := j.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cluster.Shutdown(tb, j.Shutdown) })
	testkit.WaitFor(tb, 30*time.Second, j.Ready)
	examples.c, examples.api = c, c.API
	examples.tcp = "127.0.0.1:" + strconv.Itoa(tcpPort)
}

// mainTB is the testing.TB of the examples' cluster, which outlives every
// test: logs are dropped (examples compare their output), a failure
// panics, cleanups run at the end of TestMain. The embedded TB is nil:
// the cluster helpers call only the methods defined here.
type mainTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	dirs     []string
}

func (*mainTB) Helper()                  {}
func (*mainTB) Name() string             { return "client-examples" }
func (*mainTB) Log(...any)               {}
func (*mainTB) Logf(string, ...any)      {}
func (*mainTB) Context() context.Context { return context.Background() }
func (*mainTB) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "examples' cluster: "+format+"\n", args...)
}
func (*mainTB) Fatal(args ...any) {
	panic(fmt.Sprint(append([]any{"examples' cluster: "}, args...)...))
}
func (*mainTB) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("examples' cluster: "+format, args...))
}

func (m *mainTB) Cleanup(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cleanups = append(m.cleanups, f)
}

func (m *mainTB) TempDir() string {
	d, err := os.MkdirTemp("", "goim-client-examples-")
	if err != nil {
		m.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dirs = append(m.dirs, d)
	return d
}

// cleanup runs the cleanups, last registered first, and removes the
// temporary directories.
func (m *mainTB) cleanup() {
	m.mu.Lock()
	fs, dirs := m.cleanups, m.dirs
	m.cleanups, m.dirs = nil, nil
	m.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}
