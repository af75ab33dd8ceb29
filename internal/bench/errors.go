package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/gobwas/ws"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
)

// Errors. ErrUsage marks a bad configuration (the command exits 2);
// anything else that ends a run early is a runtime error (exit 1).
var (
	// ErrUsage wraps every configuration problem found by a Validate.
	ErrUsage = errors.New("usage")
	// ErrRemote: a target or source address is not loopback and remote
	// targets were not allowed.
	ErrRemote = errors.New("not a loopback address (pass -allow-remote to target other hosts)")

	errNotBench = errors.New("not a goim-bench body")
	errBadBody  = errors.New("malformed goim-bench body")
)

// Phases an error can happen in; with errKind they name the error
// counters ("dial/refused", "read/eof").
const (
	phaseDial      = "dial"
	phaseUpgrade   = "upgrade"
	phaseAuth      = "auth"
	phaseRead      = "read"
	phaseHeartbeat = "heartbeat"
	phaseNodes     = "nodes" // reconnect mode: asking logic for nodes
	phaseAck       = "ack"   // reliable mode: sending op-19 acks
)

// errKind sorts an error into a small fixed set of kinds, so error counters
// stay few whatever the errors say. The client package's typed errors
// (*client.DialError, *client.AuthError) are looked through to their
// cause; the phase says where it happened (see dialPhase).
func errKind(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no_source_port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_files"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, new(ws.StatusError)), errors.As(err, new(*httpStatusError)):
		return "refused_upgrade" // the server answered the upgrade (or the SSE request) with an HTTP error
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, new(*client.CloseError)):
		return "ws_close"
	case errors.As(err, new(*client.ProtocolError)),
		errors.Is(err, protocol.ErrHeaderLen), errors.Is(err, protocol.ErrPackLen),
		errors.Is(err, protocol.ErrBodyTooLarge), errors.Is(err, protocol.ErrTruncated),
		errors.Is(err, protocol.ErrTrailing), errors.Is(err, protocol.ErrShortHeader):
		return "protocol" // a first frame that is not the auth reply included
	case errors.Is(err, client.ErrClosed), errors.Is(err, net.ErrClosed):
		return "closed"
	}
	return "other"
}
