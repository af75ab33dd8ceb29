package testkit

import (
	"encoding/json"
	"fmt"

	"github.com/goim/goim/api/protocol"
)

// Frames a scripted fake comet sends a reliable client, for the Go and
// the JS client's tests alike.

// MsgID is the id of push n of a script: 32 hex digits.
func MsgID(n int) string { return fmt.Sprintf("%032x", 0xabc000+n) }

// EnvelopeFrame is an op-18 frame of push n at (stream, epoch, offset)
// carrying a frame of op with body.
func EnvelopeFrame(n int, stream int32, epoch, offset uint64, op int32, body string) []byte {
	b := protocol.AppendEnvelope(nil, MsgID(n), &protocol.Position{Stream: stream, Epoch: epoch, Offset: offset}, op, []byte(body))
	return protocol.AppendFrame(nil, protocol.Version, protocol.OpMessage, 0, b)
}

// StreamsFrame is an op-20 frame reporting states.
func StreamsFrame(states ...protocol.StreamState) []byte {
	b, err := json.Marshal(protocol.StreamsBody{Streams: states})
	if err != nil {
		panic(err) // strings, numbers and bools always marshal
	}
	return protocol.AppendFrame(nil, protocol.Version, protocol.OpStreams, 0, b)
}

// CheckSince compares an auth body's since with want, both as JSON.
func CheckSince(got *protocol.Since, want string) error {
	b, err := json.Marshal(got)
	if err != nil {
		return err
	}
	if string(b) != want {
		return fmt.Errorf("since %s, want %s", b, want)
	}
	return nil
}
