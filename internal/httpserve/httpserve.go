// Package httpserve runs an *http.Server on a TCP listener of its own,
// with the lifecycle every goim HTTP listener shares: the admin listener
// (internal/admin) and logic's HTTP API (internal/logic/httpapi) build
// their *http.Server, hand it to New, and call Start, Addr and Shutdown.
//
// Start binds the address and serves on a goroutine; Addr is the bound
// address (the actual port when the configured one was 0); Shutdown closes
// the listener, lets the requests in flight finish until its context ends,
// then cuts the rest short. Connections that have not sent a request yet
// are closed at once when Shutdown begins (net/http's own Shutdown would
// wait up to 5 s for each: browsers and load balancers open spare ones).
//
// Addr, the nil-safe address of a listener, serves gRPC listeners too.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/goim/goim/internal/logging"
)

// Server is one *http.Server on its own listener. Create it with New,
// then Start it; Shutdown stops it.
type Server struct {
	name string // prefix of errors and log messages
	srv  *http.Server
	log  *slog.Logger

	// base is the parent of every request's context; cancel cuts the
	// handlers still running short when Shutdown runs out of time.
	base   context.Context
	cancel context.CancelFunc

	mu      sync.Mutex // guards everything below
	ln      net.Listener
	done    chan struct{} // closed when the Serve goroutine returns
	started bool
	closed  bool
	// fresh are the connections that have not sent a request yet.
	fresh map[net.Conn]struct{}

	shutOnce sync.Once
	shutErr  error
}

// New returns a server, not yet listening, that serves srv. It takes over
// srv's BaseContext (every request's context ends when Shutdown cuts
// requests short, and when it returns) and ConnState (to find the
// connections that have not sent a request); set neither. name prefixes
// the errors and log messages ("admin", "httpapi"); a nil logger
// discards.
func New(name string, srv *http.Server, log *slog.Logger) *Server {
	s := &Server{name: name, srv: srv, log: logging.OrDiscard(log)}
	s.base, s.cancel = context.WithCancel(context.Background())
	srv.BaseContext = func(net.Listener) context.Context { return s.base }
	srv.ConnState = s.connState
	return s
}

// Start opens a TCP listener on addr and serves on a goroutine that
// Shutdown stops. It logs "<name> listening" with the bound address and
// attrs. It fails if the address cannot be bound, if called twice, or
// after Shutdown.
func (s *Server) Start(addr string, attrs ...any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return fmt.Errorf("%s: Start after Shutdown", s.name)
	case s.started:
		return fmt.Errorf("%s: already started", s.name)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	s.started, s.ln, s.done = true, ln, make(chan struct{})
	s.log.Info(s.name+" listening", append([]any{"addr", ln.Addr().String()}, attrs...)...)
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error(s.name+": server stopped", "err", err)
		}
	}()
	return nil
}

// Addr returns the address the server listens on, with the actual port
// when the address given to Start had port 0, or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Addr(s.ln)
}

// Done is closed when the Serve goroutine has returned; nil before Start.
func (s *Server) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// connState tracks the connections that have not sent a request yet, and
// closes those that arrive while shutting down.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case st == http.StateNew && s.closed:
		_ = c.Close()
	case st == http.StateNew:
		if s.fresh == nil {
			s.fresh = make(map[net.Conn]struct{})
		}
		s.fresh[c] = struct{}{}
	default:
		delete(s.fresh, c)
	}
}

// Shutdown stops the server: it closes the listener and the connections
// that have not sent a request at once, waits for in-flight requests and
// closes idle connections. If ctx ends first it cancels the contexts of
// the requests still running, closes every connection, waits for the
// Serve goroutine and returns ctx's error; those handlers return when
// they see their context end. It logs "<name> stopped". It is idempotent:
// later calls wait for the first one and return its result. It may be
// called without Start.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		started, done := s.started, s.done
		s.mu.Unlock()
		if !started {
			s.cancel()
			return
		}
		s.mu.Lock()
		for c := range s.fresh {
			_ = c.Close()
		}
		s.mu.Unlock()
		err := s.srv.Shutdown(ctx)
		if err != nil {
			s.cancel()
			_ = s.srv.Close() // its error is the listener's, already closed
			if ctx.Err() != nil {
				err = ctx.Err()
			}
		}
		s.cancel()
		<-done
		s.shutErr = err
		s.log.Info(s.name+" stopped", "err", err)
	})
	return s.shutErr
}

// Addr returns ln's address, or "" when ln is nil (not listening yet):
// the Addr of every goim listener, HTTP or gRPC. The caller guards ln.
func Addr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
