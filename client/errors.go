package client

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrClosed is returned by the methods of a Conn after Close, and by a
// read that Close interrupted; likewise by a Client's methods after its
// Close.
var ErrClosed = errors.New("client: connection closed")

// DialError is a failure to reach a comet: the TCP dial, the TLS handshake
// or the WebSocket upgrade (an HTTP error answer is a ws.StatusError
// inside Err).
type DialError struct {
	Addr string // the comet dialed, "host:port"
	Err  error
}

// Error describes the error.
func (e *DialError) Error() string { return "client: dial " + e.Addr + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *DialError) Unwrap() error { return e.Err }

// AuthError is a connection that closed or failed after it was
// established and before the auth reply (op 8) arrived: logic refused the
// auth body or the comet could not ask it. Err says how the connection
// ended (io.EOF, a *CloseError, a *ProtocolError, a timeout).
type AuthError struct {
	Addr string
	Err  error
}

// Error describes the error.
func (e *AuthError) Error() string { return "client: auth at " + e.Addr + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *AuthError) Unwrap() error { return e.Err }

// CloseError is a WebSocket close frame from the comet: 1000 normal,
// 1001 going away (drain, shutdown), 1008 policy violation with the
// broken rule as Reason ("bad_room", "room_denied", ...). Code is 1005
// when the frame carried no status.
type CloseError struct {
	Code   int
	Reason string
}

// Error describes the error.
func (e *CloseError) Error() string {
	s := "client: websocket close " + strconv.Itoa(e.Code)
	if e.Reason != "" {
		s += " " + strconv.Quote(e.Reason)
	}
	return s
}

// ProtocolError is a malformed frame or WebSocket message from the comet.
// Err wraps the detail: one of api/protocol's sentinel errors
// (protocol.ErrHeaderLen, protocol.ErrBodyTooLarge, ...) or
// ErrWebSocket.
type ProtocolError struct {
	Err error
}

// Error describes the error.
func (e *ProtocolError) Error() string { return "client: protocol: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *ProtocolError) Unwrap() error { return e.Err }

// ErrWebSocket is inside a *ProtocolError for a WebSocket framing error
// (reserved bits, bad opcode, oversized control frame, a batch that does
// not match its message).
var ErrWebSocket = errors.New("websocket framing error")

// NodesError is an error answer of logic's /goim/nodes/weighted: Status is
// the HTTP status, Code and Message the answer's code and message (Code 0
// and an explanatory Message when the answer was not the expected JSON or
// listed no node).
type NodesError struct {
	Status  int
	Code    int
	Message string
}

// Error describes the error.
func (e *NodesError) Error() string {
	return fmt.Sprintf("client: nodes: status %d code %d: %s", e.Status, e.Code, e.Message)
}

// protoErr wraps err in a *ProtocolError.
func protoErr(format string, args ...any) error {
	return &ProtocolError{Err: fmt.Errorf(format, args...)}
}
