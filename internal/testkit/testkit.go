// Package testkit holds the helpers tests of several services share: a
// condition poller, a logger into the test log, a key prefix of its own on
// the shared test Redis, and an in-process Kafka-protocol broker (kfake)
// with a reader of what was produced. Only tests import it.
package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// WaitFor polls cond every 20 ms until it returns nil, failing the test
// with its last error after timeout.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		<-tick.C
	}
}

// RandomHex returns 2n random hex digits.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Logger writes logs (debug and up) to the test log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago
// (for servers that must know their address before they listen).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(FreePort(t))
}

// handedOut holds every port FreePort has returned in this process. A port
// just closed is often the next one the kernel hands out, so without it two
// servers of one test (or of two tests) can be given the same port and
// collide on bind.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no earlier call in this process returned.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for range 1000 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
	t.Fatal("no free port that was not handed out before in 1,000 tries")
	return 0
}

// RedisAddr is the shared test Redis: GOIM_TEST_REDIS, or 127.0.0.1:6379
// (.ci/run starts one; make test needs one).
func RedisAddr() string {
	if a := os.Getenv("GOIM_TEST_REDIS"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// Redis returns a connection to the shared test Redis and a key prefix of
// the test's own ("test:<random>:"); the prefix's keys are deleted and the
// connection closed at cleanup.
func Redis(t testing.TB) (redis.Conn, string) {
	t.Helper()
	addr := RedisAddr()
	c, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(time.Second),
		redis.DialReadTimeout(5*time.Second), redis.DialWriteTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("no Redis at %s (start redis-server, or set GOIM_TEST_REDIS): %v", addr, err)
	}
	prefix := "test:" + RandomHex(8) + ":"
	t.Cleanup(func() {
		if err := DeletePrefix(c, prefix); err != nil {
			t.Errorf("cleanup of %s*: %v", prefix, err)
		}
		c.Close()
	})
	return c, prefix
}

// DeletePrefix deletes every key under prefix, with SCAN and DEL.
func DeletePrefix(c redis.Conn, prefix string) error {
	cursor := "0"
	for {
		reply, err := redis.Values(c.Do("SCAN", cursor, "MATCH", prefix+"*", "COUNT", 1000))
		if err != nil {
			return err
		}
		cursor, _ = redis.String(reply[0], nil)
		keys, _ := redis.Strings(reply[1], nil)
		if len(keys) > 0 {
			args := make([]any, len(keys))
			for i, k := range keys {
				args[i] = k
			}
			if _, err := c.Do("DEL", args...); err != nil {
				return err
			}
		}
		if cursor == "0" {
			return nil
		}
	}
}

// Kafka starts an in-process one-broker kfake cluster with a topic of its
// own of the given partitions, and opts (SASL, TLS...); it is closed at
// cleanup (Close is idempotent, so a test may close it earlier).
func Kafka(t testing.TB, partitions int32, opts ...kfake.Opt) (*kfake.Cluster, string) {
	t.Helper()
	topic := "goim-push-test-" + RandomHex(4)
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic)}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c, topic
}

// Consume reads n records of topic from the start with a franz-go client
// (with opts: SASL, TLS...), failing the test if they do not arrive
// within 15 s.
func Consume(t testing.TB, brokers []string, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatalf("kgo: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", len(out), n)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Errorf("fetch %s[%d]: %v", topic, p, err)
		})
		out = append(out, fs.Records()...)
	}
	if len(out) != n {
		t.Fatalf("consumed %d records, want %d", len(out), n)
	}
	return out
}
