package protocol

import "errors"

// Errors returned by the decoders. Each is a sentinel for errors.Is; the
// returned error usually wraps it with the offending value. Every one of them
// means the peer sent a malformed frame: the server closes the connection.
var (
	// ErrShortHeader: a message or buffer holds fewer than HeaderSize bytes.
	// A TCP stream that ends inside a frame reports io.ErrUnexpectedEOF instead.
	ErrShortHeader = errors.New("protocol: frame shorter than the 16-byte header")
	// ErrHeaderLen: the headerLen field is not 16.
	ErrHeaderLen = errors.New("protocol: headerLen is not 16")
	// ErrPackLen: packLen is below 16 (this includes negative values).
	ErrPackLen = errors.New("protocol: packLen below the 16-byte header")
	// ErrBodyTooLarge: packLen announces a body larger than the reader's limit,
	// or a body given to an encoder does not fit packLen's int32.
	ErrBodyTooLarge = errors.New("protocol: body larger than the limit")
	// ErrTruncated: a WebSocket message (or buffer) ends before packLen bytes.
	ErrTruncated = errors.New("protocol: packLen larger than the message")
	// ErrTrailing: a WebSocket message holds bytes after the frame; one
	// message must carry exactly one frame.
	ErrTrailing = errors.New("protocol: bytes after the frame in the message")
	// ErrAuthBody: the body of an auth frame (op 7) is not a JSON object of
	// the expected field types.
	ErrAuthBody = errors.New("protocol: invalid auth body")
)
