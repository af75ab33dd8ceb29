package dao_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/testkit"
)

// waitFor polls cond until it returns nil (testkit.WaitFor).
func waitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	testkit.WaitFor(t, timeout, cond)
}

func randomHex(n int) string { return testkit.RandomHex(n) }

// testLogger writes the code's logs to the test log.
func testLogger(t testing.TB) *slog.Logger { return testkit.Logger(t) }

// ---- Redis ----

// rawRedis is a plain connection to the test Redis (or Redis Cluster),
// bypassing the DAO, to prepare and inspect keys. Keys passed to its
// helpers are logical names relative to prefix ("key_k1", "mid_7",
// "online_servers"); key gives a name's real key in the mode under test.
type rawRedis struct {
	t      testing.TB
	c      redis.Conn // single mode: the connection; cluster mode: bound to the online slot
	prefix string
	rc     *testkit.RedisCluster // cluster mode only
	cl     *redisc.Cluster       // routes raw commands in cluster mode
}

// key is the real key of logical name n: prefix + n in single mode, the
// cluster shapes (hash tags) in cluster mode.
func (r *rawRedis) key(n string) string {
	if r.cl == nil {
		return r.prefix + n
	}
	return r.prefix + clusterName(n)
}

// clusterName is a logical name's key in cluster mode, as the schema
// atop redis_cluster.go lays them out.
func clusterName(n string) string {
	switch {
	case strings.HasPrefix(n, "key_"):
		return "key_{:" + n[len("key_"):] + "}"
	case strings.HasPrefix(n, "conn_"):
		return "conn_{:" + n[len("conn_"):] + "}"
	case strings.HasPrefix(n, "mid_"):
		return "mid_{" + n[len("mid_"):] + "}"
	case strings.HasPrefix(n, "umeta_"), strings.HasPrefix(n, "ustream_"):
		kind, id, _ := strings.Cut(n, "_")
		return kind + "_{" + id + "}"
	case strings.HasPrefix(n, "kmeta_"), strings.HasPrefix(n, "kstream_"):
		kind, id, _ := strings.Cut(n, "_")
		return kind + "_{:" + id + "}"
	case strings.HasPrefix(n, "rmeta_"), strings.HasPrefix(n, "rstream_"):
		kind, id, _ := strings.Cut(n, "_")
		return kind + "_{r:" + id + "}"
	case strings.HasPrefix(n, "ol_"), n == "online_servers", n == "epoch":
		return "{online}" + n
	}
	return n
}

// do sends one command: in cluster mode to the master of its first
// argument's slot (following redirections); SCRIPT goes to every node.
func (r *rawRedis) do(cmd string, args ...any) (any, error) {
	if r.cl == nil {
		return r.c.Do(cmd, args...)
	}
	if cmd == "SCRIPT" {
		var reply any
		for i := range r.rc.Nodes {
			reply = r.rc.Do(r.t, i, cmd, args...)
		}
		return reply, nil
	}
	c := r.cl.Get()
	defer c.Close()
	rc, err := redisc.RetryConn(c, 5, 20*time.Millisecond)
	if err != nil {
		return nil, err
	}
	return rc.Do(cmd, args...)
}

func (r *rawRedis) must(cmd string, args ...any) any {
	r.t.Helper()
	reply, err := r.do(cmd, args...)
	if err != nil {
		r.t.Fatalf("raw %s %v: %v", cmd, args, err)
	}
	return reply
}

func (r *rawRedis) get(key string) (string, bool) {
	r.t.Helper()
	v, err := redis.String(r.do("GET", r.key(key)))
	if errors.Is(err, redis.ErrNil) {
		return "", false
	}
	if err != nil {
		r.t.Fatalf("GET %s: %v", key, err)
	}
	return v, true
}

func (r *rawRedis) hgetall(key string) map[string]string {
	r.t.Helper()
	m, err := redis.StringMap(r.do("HGETALL", r.key(key)))
	if err != nil {
		r.t.Fatalf("HGETALL %s: %v", key, err)
	}
	return m
}

func (r *rawRedis) exists(key string) bool {
	r.t.Helper()
	n, err := redis.Int(r.do("EXISTS", r.key(key)))
	if err != nil {
		r.t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}

func (r *rawRedis) pttl(key string) time.Duration {
	r.t.Helper()
	ms, err := redis.Int64(r.do("PTTL", r.key(key)))
	if err != nil {
		r.t.Fatalf("PTTL %s: %v", key, err)
	}
	return time.Duration(ms) * time.Millisecond
}

// checkTTL fails unless key has a TTL in (0, max].
func (r *rawRedis) checkTTL(key string, max time.Duration) {
	r.t.Helper()
	if got := r.pttl(key); got <= 0 || got > max {
		r.t.Errorf("PTTL %s = %v, want in (0, %v]", key, got, max)
	}
}

// newTestRedis returns a DAO on the shared test Redis under a key prefix of
// its own ("test:<random>:"), the prefix's keys deleted at cleanup, and a
// raw connection under the same prefix. Under TestRedisCluster it is a
// DAO in cluster mode on that test's Redis Cluster instead.
func newTestRedis(t testing.TB, mutate func(*dao.RedisConfig)) (*dao.Redis, *rawRedis) {
	t.Helper()
	if rc := testCluster(t); rc != nil {
		return newClusterTestRedis(t, rc, mutate)
	}
	c, prefix := testkit.Redis(t)
	cfg := dao.DefaultRedisConfig()
	cfg.Addr = testkit.RedisAddr()
	cfg.Prefix = prefix
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := dao.NewRedis(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r, &rawRedis{t: t, c: c, prefix: prefix}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int { return testkit.FreePort(t) }

// sortedGroups sorts the keys of each server, for comparison.
func sortedGroups(m map[string][]string) map[string][]string {
	for _, keys := range m {
		sort.Strings(keys)
	}
	return m
}

// silentServer accepts TCP connections and never answers: a hung Redis or
// Kafka broker. It stops at cleanup.
func silentServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// ---- Kafka ----

// startKafka starts kfake with a topic of its own (testkit.Kafka).
func startKafka(t testing.TB, partitions int32, opts ...kfake.Opt) (*kfake.Cluster, string) {
	t.Helper()
	return testkit.Kafka(t, partitions, opts...)
}

func newTestKafka(t testing.TB, brokers []string, topic string, mutate func(*dao.KafkaConfig)) *dao.Kafka {
	t.Helper()
	cfg := dao.DefaultKafkaConfig()
	cfg.Brokers = brokers
	cfg.Topic = topic
	if mutate != nil {
		mutate(&cfg)
	}
	k, err := dao.NewKafka(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("NewKafka: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// consume reads n records of topic from the start (testkit.Consume).
func consume(t testing.TB, brokers []string, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	return testkit.Consume(t, brokers, topic, n, opts...)
}

func itoa(i int) string { return strconv.Itoa(i) }

// wantInvalid checks that err is a validation error naming every key path.
func wantInvalid(t *testing.T, err error, paths []string) {
	t.Helper()
	if !errors.Is(err, conf.ErrInvalid) {
		t.Fatalf("Validate = %v, want an error wrapping conf.ErrInvalid", err)
	}
	for _, path := range paths {
		if !strings.Contains(err.Error(), path+": ") {
			t.Errorf("error %q does not name %s", err, path)
		}
	}
}
