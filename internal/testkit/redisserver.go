package testkit

import (
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// RedisServer is a redis-server process of the test's own, without
// persistence, on 127.0.0.1:Port: for tests that stop and restart Redis.
type RedisServer struct {
	t    testing.TB
	Port int
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// StartRedisServer starts redis-server on port and waits until it answers.
// extra are more command-line options ("--tls-port", "6390", ...); the
// plain port stays open to the test, for setting up and for the readiness
// check. It skips the test when redis-server is not installed. The process
// is killed at cleanup if the test did not stop it.
func StartRedisServer(t testing.TB, port int, extra ...string) *RedisServer {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skipf("redis-server is not on PATH (install redis-server to run this test): %v", err)
	}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir()}
	cmd := exec.Command(path, append(args, extra...)...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	s := &RedisServer{t: t, Port: port, cmd: cmd, done: make(chan struct{})}
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
	WaitFor(t, 10*time.Second, func() error {
		select {
		case <-s.done:
			t.Fatalf("redis-server on port %d exited at start", port)
		default:
		}
		c, err := redis.Dial("tcp", s.Addr(), redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(time.Second))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Do("PING")
		return err
	})
	return s
}

// Addr is the server's "127.0.0.1:port".
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Stop shuts the server down (SHUTDOWN NOSAVE) and waits for it to exit.
func (s *RedisServer) Stop() {
	s.t.Helper()
	c, err := redis.Dial("tcp", s.Addr(), redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(time.Second))
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
