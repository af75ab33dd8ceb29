package httpserve

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func newServer(t *testing.T, h http.Handler) *Server {
	t.Helper()
	return New("test", &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}, slog.New(slog.NewTextHandler(t.Output(), nil)))
}

func ok(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }

func TestLifecycle(t *testing.T) {
	s := newServer(t, http.HandlerFunc(ok))
	if s.Addr() != "" || s.Done() != nil {
		t.Fatalf("before Start: Addr %q, Done %v; want empty, nil", s.Addr(), s.Done())
	}
	if err := s.Start("127.0.0.1:0", "extra", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err == nil || !strings.HasPrefix(err.Error(), "test: ") {
		t.Errorf("second Start: %v, want an error prefixed with the name", err)
	}
	addr := s.Addr()
	if _, port, _ := net.SplitHostPort(addr); port == "0" || port == "" {
		t.Fatalf("Addr = %q, want the bound port", addr)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Serve goroutine still running after Shutdown")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Shutdown", addr)
	}
	if err := s.Start("127.0.0.1:0"); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
}

func TestShutdownWithoutStart(t *testing.T) {
	s := New("test", &http.Server{}, nil)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.base.Err() == nil {
		t.Error("base context not cancelled")
	}
	if err := s.Start("127.0.0.1:0"); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
}

func TestStartAddressInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := New("test", &http.Server{}, nil)
	if err := s.Start(busy.Addr().String()); err == nil || !strings.HasPrefix(err.Error(), "test: ") {
		_ = s.Shutdown(context.Background())
		t.Fatalf("Start on an address in use: %v", err)
	}
}

// A request still running when ctx ends is cut short: its context is
// cancelled, Shutdown returns ctx's error, and later calls return it too.
func TestShutdownDeadline(t *testing.T) {
	entered := make(chan struct{})
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	}))
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go func() {
		if resp, err := http.Get("http://" + s.Addr() + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a request in flight: %v, want context.DeadlineExceeded", err)
	}
	if err := s.Shutdown(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Shutdown: %v, want the first call's result", err)
	}
}

// A connection that has not sent a request does not hold Shutdown up
// (net/http alone would wait 5 s for it).
func TestShutdownClosesFreshConnections(t *testing.T) {
	s := newServer(t, http.HandlerFunc(ok))
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Wait until the server has seen the connection.
	for deadline := time.Now().Add(10 * time.Second); ; {
		s.mu.Lock()
		n := len(s.fresh)
		s.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection not tracked")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with a fresh connection open", d)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("fresh connection still open after Shutdown")
	}
}

func TestAddr(t *testing.T) {
	if got := Addr(nil); got != "" {
		t.Errorf("Addr(nil) = %q", got)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := Addr(ln); got != ln.Addr().String() {
		t.Errorf("Addr = %q, want %q", got, ln.Addr())
	}
}
