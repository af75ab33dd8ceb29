package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
)

// TestErrKindClient: the client package's typed errors are counted with
// the phases and kinds the tool counted its own errors with.
func TestErrKindClient(t *testing.T) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	for _, tc := range []struct {
		name        string
		err         error
		phase, kind string
	}{
		{"refused", &client.DialError{Addr: "a", Err: &netDialError{err: opErr(syscall.ECONNREFUSED)}}, phaseDial, "refused"},
		{"no source port", &client.DialError{Addr: "a", Err: &netDialError{err: opErr(syscall.EADDRNOTAVAIL)}}, phaseDial, "no_source_port"},
		{"files", &client.DialError{Addr: "a", Err: &netDialError{err: opErr(syscall.EMFILE)}}, phaseDial, "too_many_files"},
		{"dial canceled", &client.DialError{Addr: "a", Err: fmt.Errorf("%w: %w", context.Canceled, &netDialError{err: context.Canceled})}, phaseDial, "canceled"},
		{"upgrade refused", &client.DialError{Addr: "a", Err: fmt.Errorf("websocket upgrade: %w", ws.StatusError(403))}, phaseUpgrade, "refused_upgrade"},
		{"upgrade timeout", &client.DialError{Addr: "a", Err: fmt.Errorf("websocket upgrade: %w", os.ErrDeadlineExceeded)}, phaseUpgrade, "timeout"},
		{"sse refused", &client.DialError{Addr: "a", Err: &httpStatusError{Status: 401}}, phaseUpgrade, "refused_upgrade"},
		{"auth closed", &client.AuthError{Addr: "a", Err: io.EOF}, phaseAuth, "eof"},
		{"auth reset", &client.AuthError{Addr: "a", Err: fmt.Errorf("client: write: %w", syscall.ECONNRESET)}, phaseAuth, "reset"},
		{"auth close frame", &client.AuthError{Addr: "a", Err: &client.CloseError{Code: 1008, Reason: "bad_room"}}, phaseAuth, "ws_close"},
		{"not the auth reply", &client.AuthError{Addr: "a", Err: &client.ProtocolError{Err: fmt.Errorf("first frame has op 5")}}, phaseAuth, "protocol"},
		{"auth timeout", &client.AuthError{Addr: "a", Err: os.ErrDeadlineExceeded}, phaseAuth, "timeout"},
		{"read close frame", &client.CloseError{Code: 1001}, phaseAuth, "ws_close"},
		{"read malformed", &client.ProtocolError{Err: protocol.ErrHeaderLen}, phaseAuth, "protocol"},
		{"closed", client.ErrClosed, phaseAuth, "closed"},
		{"truncated", io.ErrUnexpectedEOF, phaseAuth, "eof"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p, k := dialPhase(tc.err), errKind(tc.err); p != tc.phase || k != tc.kind {
				t.Fatalf("%v: %s/%s, want %s/%s", tc.err, p, k, tc.phase, tc.kind)
			}
		})
	}
}

// TestConnsUpgradeRefused: a WebSocket upgrade answered with an HTTP
// error counts as upgrade/refused_upgrade.
func TestConnsUpgradeRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) }))
	defer srv.Close()
	c, err := NewConns(ConnsConfig{Run: "r", N: 2, Transport: TransportWS, Addrs: []string{srv.Listener.Addr().String()},
		DialConcurrency: 2, HandshakeTimeout: 5 * time.Second, Heartbeat: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Open(t.Context())
	c.Close()
	if r := c.Record(); r.Failed != 2 || r.Errors["upgrade/refused_upgrade"] != 2 {
		t.Fatalf("failed %d, errors %v", r.Failed, r.Errors)
	}
}
