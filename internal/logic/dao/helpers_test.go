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

// rawRedis is a plain connection to the test Redis, bypassing the DAO, to
// prepare and inspect keys. Keys passed to it are relative to prefix.
type rawRedis struct {
	t      testing.TB
	c      redis.Conn
	prefix string
}

func (r *rawRedis) must(cmd string, args ...any) any {
	r.t.Helper()
	reply, err := r.c.Do(cmd, args...)
	if err != nil {
		r.t.Fatalf("raw %s %v: %v", cmd, args, err)
	}
	return reply
}

func (r *rawRedis) get(key string) (string, bool) {
	r.t.Helper()
	v, err := redis.String(r.c.Do("GET", r.prefix+key))
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
	m, err := redis.StringMap(r.c.Do("HGETALL", r.prefix+key))
	if err != nil {
		r.t.Fatalf("HGETALL %s: %v", key, err)
	}
	return m
}

func (r *rawRedis) exists(key string) bool {
	r.t.Helper()
	n, err := redis.Int(r.c.Do("EXISTS", r.prefix+key))
	if err != nil {
		r.t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}

func (r *rawRedis) pttl(key string) time.Duration {
	r.t.Helper()
	ms, err := redis.Int64(r.c.Do("PTTL", r.prefix+key))
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
// raw connection under the same prefix.
func newTestRedis(t testing.TB, mutate func(*dao.RedisConfig)) (*dao.Redis, *rawRedis) {
	t.Helper()
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
