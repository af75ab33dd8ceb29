// Package cluster runs goim on loopback for tests of the services that sit
// on top of logic and comet (job, the end-to-end suite): an in-process
// Kafka-protocol broker (kfake), the real logic (goim v2's insecure auth,
// the shared test Redis under a key prefix of its own) and real comets,
// plus goim v2 clients that record what they receive. Only tests import
// it.
package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/testkit"
	"github.com/twmb/franz-go/pkg/kfake"
)

// APIToken is the push API's full-scope bearer token of every cluster's
// logic: Push and WaitOnline send it, and tests calling API themselves
// send "Authorization: Bearer " + APIToken.
const APIToken = "cluster-test-push-api-token-0123456789"

// Cluster is a whole goim on loopback but job: kfake, the real logic
// (goim v2's insecure auth, the push API token APIToken, the shared test
// Redis under a prefix of its own) and real comets. Tests start jobs on
// it.
type Cluster struct {
	t     testing.TB
	Kafka *kfake.Cluster
	Topic string
	// Secret is the internal gRPC secret of the cluster's logic and
	// comets (random per cluster): a job on the cluster must send it
	// (job.Config.RPC.Secrets).
	Secret string
	Logic  *logic.Server
	API    string // logic's HTTP base URL
	Comets map[string]*comet.Server
}

// Start starts kfake (4 partitions), logic and n comets named
// comet-1...comet-n.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartWith(t, n, Options{})
}

// Options are what StartWith adds to Start's cluster. The zero value is
// Start's cluster.
type Options struct {
	// Pages are extra GET pages logic's HTTP API serves (logic.Deps.Pages),
	// such as the browser demo at /demo.
	Pages map[string]http.Handler
	// Logic, when set, changes logic's config after the cluster's settings
	// (listeners, insecure auth, APIToken, Redis prefix, Kafka topic) are
	// applied and before logic is built: the [node] answer clients
	// discover comets by, say.
	Logic func(*logic.Config)
	// Kafka are more options of the kfake cluster (SASL, TLS); give
	// logic's [kafka] the matching settings with Logic.
	Kafka []kfake.Opt
}

// StartWith starts a cluster as Start does, with the options.
func StartWith(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	_, prefix := testkit.Redis(t)
	kc, topic := testkit.Kafka(t, 4, opts.Kafka...)
	lc := logic.Default()
	lc.Host = "logic-job-test"
	lc.HTTP.Bind, lc.RPC.Bind, lc.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	lc.Auth = logic.AuthConfig{Insecure: true}
	lc.HTTP.Tokens = []string{APIToken}
	secret := "cluster-rpc-secret-" + testkit.RandomHex(16)
	lc.RPC.Secrets = []string{secret}
	lc.Redis.Addr, lc.Redis.Prefix = testkit.RedisAddr(), prefix
	lc.Kafka.Brokers, lc.Kafka.Topic = kc.ListenAddrs(), topic
	lc.Online.Refresh = conf.Duration(100 * time.Millisecond)
	if opts.Logic != nil {
		opts.Logic(&lc)
	}
	ls, err := logic.New(lc, logic.Deps{Logger: testkit.Logger(t), Pages: opts.Pages})
	if err != nil {
		t.Fatal(err)
	}
	if err := ls.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Shutdown(t, ls.Shutdown) })
	c := &Cluster{t: t, Kafka: kc, Topic: topic, Secret: secret,
		Logic: ls, API: "http://" + ls.HTTPAddr(), Comets: map[string]*comet.Server{}}
	for i := 1; i <= n; i++ {
		c.StartComet(fmt.Sprintf("comet-%d", i))
	}
	return c
}

// Shutdown calls f with a 10 s deadline and logs its error.
func Shutdown(t testing.TB, f func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f(ctx); err != nil {
		t.Logf("shutdown: %v", err)
	}
}

// StartComet starts a real comet named host, reporting to the logic.
func (c *Cluster) StartComet(host string) *comet.Server {
	c.t.Helper()
	return c.StartCometWith(host, nil)
}

// StartCometWith starts a comet as StartComet does, edit changing its
// config first (to register it in discovery, say).
func (c *Cluster) StartCometWith(host string, edit func(*comet.Config)) *comet.Server {
	c.t.Helper()
	cfg := comet.Default()
	cfg.Host = host
	cfg.TCP.Bind = []string{"127.0.0.1:0"}
	cfg.WebSocket.Bind = []string{"127.0.0.1:0"}
	cfg.RPC.Bind = "127.0.0.1:0"
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Logic.Addrs = []string{c.Logic.RPCAddr()}
	cfg.RPC.Secrets = []string{c.Secret}
	cfg.Logic.ReportInterval = conf.Duration(200 * time.Millisecond)
	cfg.Protocol.QueueFrames = 4096
	cfg.Protocol.QueueBytes = 16 << 20
	// Tests and benchmarks connect many clients from the loopback address
	// at once: no per-IP or other [limits] unless edit sets them.
	cfg.Limits = comet.LimitsConfig{}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := comet.New(cfg, comet.Deps{Logger: testkit.Logger(c.t)})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { Shutdown(c.t, srv.Shutdown) })
	c.Comets[host] = srv
	return srv
}

// CometAddrs maps each comet's server id to its gRPC address.
func (c *Cluster) CometAddrs() map[string]string {
	out := make(map[string]string, len(c.Comets))
	for host, s := range c.Comets {
		out[host] = s.RPCAddr().String()
	}
	return out
}

// Push POSTs a push to logic and checks it was accepted.
func (c *Cluster) Push(path, body string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.API+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer "+APIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !testkit.IsPushAnswer(b) {
		c.t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
}

// Client is a goim v2 client (TCP or WebSocket, the client package's
// connection) whose reader goroutine collects the pushes it receives: the
// bodies of every frame that is not a reply, op-9 batches unpacked.
type Client struct {
	t    testing.TB
	Name string
	conn *client.Conn

	mu   sync.Mutex // guards the fields below
	got  []string
	ops  []int32
	at   []time.Time // when each push was read
	err  error
	done chan struct{}
}

// Dial connects to comet host over tr ("tcp" or "ws") and authenticates
// with goim v2's JSON auth body.
func (c *Cluster) Dial(host, tr, auth string) *Client {
	c.t.Helper()
	srv := c.Comets[host]
	if srv == nil {
		c.t.Fatalf("no comet %q", host)
	}
	if tr != string(client.TCP) && tr != string(client.WS) {
		c.t.Fatalf("transport %q: want tcp or ws", tr)
	}
	addrs := srv.Addrs(tr)
	if len(addrs) == 0 {
		c.t.Fatalf("comet %s has no %s listener", host, tr)
	}
	r := &Client{t: c.t, Name: host + "/" + tr, done: make(chan struct{})}
	conn, err := client.DialBody(context.Background(), addrs[0].String(), []byte(auth),
		client.DialOptions{Transport: client.Transport(tr)})
	if err != nil {
		c.t.Fatalf("%s: %v", r.Name, err)
	}
	r.conn = conn
	c.t.Cleanup(func() {
		_ = conn.Close()
		<-r.done
	})
	go r.loop()
	return r
}

func (r *Client) loop() {
	defer close(r.done)
	for {
		err := r.conn.ReadFrames(func(f client.Frame) {
			if f.Op == protocol.OpHeartbeatReply {
				return
			}
			now := time.Now()
			r.mu.Lock()
			r.got = append(r.got, string(f.Body))
			r.ops = append(r.ops, f.Op)
			r.at = append(r.at, now)
			r.mu.Unlock()
		})
		if err != nil {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			return
		}
	}
}

// Wait waits until n pushes arrived and returns them (all of them, if
// more came).
func (r *Client) Wait(n int, timeout time.Duration) []string {
	r.t.Helper()
	testkit.WaitFor(r.t, timeout, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.got) < n {
			return fmt.Errorf("%s: %d of %d pushes (read error: %v)", r.Name, len(r.got), n, r.err)
		}
		return nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// Count is how many pushes arrived so far.
func (r *Client) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// WaitOnline waits until logic sees n connections (the comets reported).
func (c *Cluster) WaitOnline(n int) {
	c.t.Helper()
	want := fmt.Sprintf(`"conn_count":%d,`, n)
	testkit.WaitFor(c.t, 10*time.Second, func() error {
		req, err := http.NewRequest(http.MethodGet, c.API+"/goim/online/total", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+APIToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), want) {
			return fmt.Errorf("online %s, want conn_count %d", b, n)
		}
		return nil
	})
}

// Received returns the bodies received so far and when each was read.
func (r *Client) Received() ([]string, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...), append([]time.Time(nil), r.at...)
}
