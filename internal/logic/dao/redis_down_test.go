package dao_test

import (
	"context"
	"errors"
	"os/exec"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
)

// redisServer is a redis-server process of the test's own, without
// persistence, on 127.0.0.1:port.
type redisServer struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// startRedisServer starts redis-server on port and waits until it answers.
// It skips the test when redis-server is not installed. The process is
// killed at cleanup if the test did not stop it.
func startRedisServer(t *testing.T, port int) *redisServer {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skipf("redis-server is not on PATH (install redis-server to run this test): %v", err)
	}
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	s := &redisServer{t: t, port: port, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = cmd.Process.Kill()
			<-s.done
		}
	})
	waitFor(t, 10*time.Second, func() error {
		select {
		case <-s.done:
			t.Fatalf("redis-server on port %d exited at start", port)
		default:
		}
		c, err := redis.Dial("tcp", s.addr(), redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(time.Second))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Do("PING")
		return err
	})
	return s
}

func (s *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// stop shuts the server down (SHUTDOWN NOSAVE) and waits for it to exit.
func (s *redisServer) stop() {
	s.t.Helper()
	c, err := redis.Dial("tcp", s.addr(), redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(time.Second))
	if err == nil {
		_, _ = c.Do("SHUTDOWN", "NOSAVE") // answers by closing the connection
		c.Close()
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func TestRedisDownAndBack(t *testing.T) {
	port := freePort(t)
	srv := startRedisServer(t, port)
	cfg := dao.DefaultRedisConfig()
	cfg.Addr = srv.addr()
	cfg.Prefix = "test:"
	cfg.DialTimeout = conf.Duration(500 * time.Millisecond)
	cfg.ReadTimeout = conf.Duration(500 * time.Millisecond)
	cfg.WriteTimeout = conf.Duration(500 * time.Millisecond)
	r, err := dao.NewRedis(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if err := r.AddSession(ctx, 1, "k", "s1"); err != nil {
		t.Fatalf("AddSession: %v", err)
	}

	// A restart between two operations costs no failure: the pooled
	// connection the old server closed is detected and replaced.
	srv.stop()
	srv = startRedisServer(t, port)
	if err := r.AddSession(ctx, 1, "k", "s1"); err != nil {
		t.Fatalf("first AddSession after a restart: %v", err)
	}
	// A fresh server has no script cached: EVALSHA falls back to EVAL.
	if existed, err := r.RenewSession(ctx, 1, "k", "s1"); err != nil || !existed {
		t.Fatalf("RenewSession on a fresh server = %v, %v; want true, nil", existed, err)
	}
	if owned, err := r.DelSession(ctx, 1, "k", "s2"); err != nil || owned {
		t.Fatalf("DelSession by another comet on a fresh server = %v, %v; want false, nil", owned, err)
	}
	if err := r.StoreOnline(ctx, "s1", map[string]int32{"a": 1}, 1, 1, false); err != nil {
		t.Fatalf("StoreOnline on a fresh server: %v", err)
	}
	if got, err := r.LoadAllOnline(ctx); err != nil || len(got) != 1 {
		t.Fatalf("LoadAllOnline on a fresh server = %v, %v; want s1's report", got, err)
	}

	// Down: every operation fails promptly with ErrRedis.
	srv.stop()
	ops := []struct {
		name string
		call func() error
	}{
		{name: "ping", call: func() error { return r.Ping(ctx) }},
		{name: "add session", call: func() error { return r.AddSession(ctx, 1, "k", "s1") }},
		{name: "renew session", call: func() error { _, err := r.RenewSession(ctx, 1, "k", "s1"); return err }},
		{name: "delete session", call: func() error { _, err := r.DelSession(ctx, 1, "k", "s1"); return err }},
		{name: "servers by keys", call: func() error { _, err := r.ServersByKeys(ctx, []string{"k"}); return err }},
		{name: "keys by mids", call: func() error { _, err := r.KeysByMids(ctx, []int64{1}); return err }},
		{name: "store online", call: func() error { return r.StoreOnline(ctx, "s1", map[string]int32{"a": 1}, 1, 1, false) }},
		{name: "load online", call: func() error { _, err := r.LoadOnline(ctx, []string{"s1"}); return err }},
		{name: "load all online", call: func() error { _, err := r.LoadAllOnline(ctx); return err }},
	}
	for _, op := range ops {
		t.Run("down/"+op.name, func(t *testing.T) {
			start := time.Now()
			err := op.call()
			if !errors.Is(err, dao.ErrRedis) {
				t.Fatalf("%s with Redis down = %v, want ErrRedis", op.name, err)
			}
			// Prompt: a refused dial, not a wait (generous bound: the
			// dial and read timeouts are 500ms).
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("%s took %v to fail", op.name, elapsed)
			}
			t.Logf("%s: %v (after %v)", op.name, err, time.Since(start).Round(time.Millisecond))
		})
	}

	// Back on the same port: the same DAO recovers.
	_ = startRedisServer(t, port) // stopped by its own cleanup
	waitFor(t, 10*time.Second, func() error { return r.AddSession(ctx, 1, "k", "s2") })
	got, err := r.ServersByKeys(ctx, []string{"k"})
	if err != nil {
		t.Fatalf("ServersByKeys after recovery: %v", err)
	}
	if want := map[string][]string{"s2": {"k"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ServersByKeys after recovery = %v, want %v", got, want)
	}
	if err := r.Ping(ctx); err != nil {
		t.Fatalf("Ping after recovery: %v", err)
	}
}
