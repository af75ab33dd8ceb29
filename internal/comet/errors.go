package comet

import "errors"

// Errors returned by the comet's API.
var (
	// ErrServerClosed: the server is shutting down or has shut down.
	ErrServerClosed = errors.New("comet: server closed")
	// ErrBadRequest: a gRPC request is missing a required field.
	ErrBadRequest = errors.New("comet: bad request")
	// ErrBusy: a bounded worker queue is full and the caller's deadline
	// expired before it had room, or every paced broadcast slot
	// (bucket.paced_broadcasts) is taken.
	ErrBusy = errors.New("comet: busy")
)

// CloseReason says why a connection ended. Every close is logged and
// counted by its reason.
type CloseReason uint8

// Close reasons, in the order of a connection's life.
const (
	reasonNone         CloseReason = iota
	ReasonTooManyConn              // limits.max_conns or max_conns_per_ip reached
	ReasonHandshake                // no auth within the handshake timeout
	ReasonBadFrame                 // a malformed frame (size, header, WebSocket framing)
	ReasonBadAuth                  // the auth body is not the auth JSON
	ReasonAuthRate                 // limits.auth_rate_per_ip or pending_auth_per_ip reached
	ReasonAuthRejected             // logic refused the auth
	ReasonLogicError               // logic unreachable or failing during auth
	ReasonBadRoom                  // a room id (op 12 body or auth reply) fails protocol.CheckRoomID
	ReasonRoomDenied               // a room outside the connection's rooms (ConnectReply.rooms)
	ReasonTooManyRooms             // a join would pass limits.max_rooms
	ReasonClientClosed             // the client closed the connection (EOF, reset)
	ReasonHeartbeat                // no heartbeat within the session timeout
	ReasonFrameRate                // more client frames in a second than limits.frames_per_second
	ReasonSlow                     // outbound queue full (slow consumer), policy "close"
	ReasonWriteError               // a write failed or timed out
	ReasonReplaced                 // a newer connection with the same key arrived
	ReasonDrain                    // closed by a drain, to reconnect to another comet
	ReasonShutdown                 // the comet is shutting down
	numReasons
)

var reasonNames = [numReasons]string{
	"none", "too_many_conns", "handshake_timeout", "bad_frame", "bad_auth_body", "auth_rate",
	"auth_rejected", "logic_error", "bad_room", "room_denied", "too_many_rooms",
	"client_closed", "heartbeat_timeout", "frame_rate", "slow_consumer", "write_error", "replaced", "drain", "shutdown",
}

// String is the reason's metric label.
func (r CloseReason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}
