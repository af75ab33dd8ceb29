package protocol

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// Streams a reliable connection's messages may belong to
// (Position.stream, the envelope's stream byte).
const (
	StreamNone int32 = 0 // in no stream: delivered live only
	StreamUser int32 = 1 // the user's stream (pushes by mid)
	StreamKey  int32 = 2 // the connection key's stream (pushes by key)
	StreamRoom int32 = 3 // the room's stream (a recoverable room)
)

var streamNames = [...]string{"none", "user", "key", "room"}

// StreamName is the name of a stream in JSON ("user", "key", "room"), or
// "" for StreamNone and unknown values.
func StreamName(stream int32) string {
	if stream > 0 && int(stream) < len(streamNames) {
		return streamNames[stream]
	}
	return ""
}

// StreamByName is StreamName's inverse; 0 for an unknown name.
func StreamByName(name string) int32 {
	for i, n := range streamNames[1:] {
		if n == name {
			return int32(i + 1)
		}
	}
	return StreamNone
}

// MsgIDSize is the length of a push id in binary; as text it is twice as
// many lowercase hex digits.
const MsgIDSize = 16

// ErrEnvelope is wrapped by the errors of DecodeEnvelope and ParseAck.
var ErrEnvelope = errors.New("protocol: bad reliable delivery body")

// EnvelopeHeaderSize is the length of an envelope's fixed part, before the
// push's frame. Layout (big-endian):
//
//	0   1   stream (StreamNone .. StreamRoom)
//	1   1   flags: 0 (reserved)
//	2  16   the push's id (its 32 hex digits as bytes; zeros when unknown)
//	18  8   epoch of the stream (0 with StreamNone)
//	26  8   offset in the stream (0 with StreamNone)
//	34      the push's frame: 16-byte header (ver 1, op, seq 0) and body
const EnvelopeHeaderSize = 2 + MsgIDSize + 8 + 8

// Envelope is a decoded op-18 body. Body aliases the decoded bytes.
type Envelope struct {
	Stream int32
	MsgID  [MsgIDSize]byte
	Epoch  uint64
	Offset uint64
	Op     int32
	Body   []byte
}

// ID is the push id as 32 lowercase hex digits.
func (e *Envelope) ID() string { return hex.EncodeToString(e.MsgID[:]) }

// ParseMsgID turns a push id's 32 hex digits into its bytes; anything else
// (an empty id included) gives zeros and false.
func ParseMsgID(id string) (b [MsgIDSize]byte, ok bool) {
	if len(id) != 2*MsgIDSize {
		return b, false
	}
	if _, err := hex.Decode(b[:], []byte(id)); err != nil {
		return [MsgIDSize]byte{}, false
	}
	return b, true
}

// AppendEnvelope appends an op-18 body to dst: the envelope header, then a
// frame (ver 1, op, seq 0) of body. An id that is not 32 hex digits is
// written as zeros.
func AppendEnvelope(dst []byte, msgID string, pos *Position, op int32, body []byte) []byte {
	id, _ := ParseMsgID(msgID)
	stream := pos.GetStream()
	if stream < 0 || stream > 255 {
		stream = StreamNone
	}
	dst = append(dst, byte(stream), 0)
	dst = append(dst, id[:]...)
	dst = binary.BigEndian.AppendUint64(dst, pos.GetEpoch())
	dst = binary.BigEndian.AppendUint64(dst, pos.GetOffset())
	return AppendFrame(dst, Version, op, 0, body)
}

// DecodeEnvelope decodes an op-18 body. The inner frame must fill the rest
// of b exactly.
func DecodeEnvelope(b []byte) (Envelope, error) {
	var e Envelope
	if len(b) < EnvelopeHeaderSize+HeaderSize {
		return e, fmt.Errorf("%w: envelope of %d bytes, at least %d", ErrEnvelope, len(b), EnvelopeHeaderSize+HeaderSize)
	}
	e.Stream = int32(b[0])
	if e.Stream > StreamRoom {
		return Envelope{}, fmt.Errorf("%w: stream %d", ErrEnvelope, e.Stream)
	}
	copy(e.MsgID[:], b[2:2+MsgIDSize])
	e.Epoch = binary.BigEndian.Uint64(b[18:26])
	e.Offset = binary.BigEndian.Uint64(b[26:34])
	var p Proto
	n, err := p.Decode(b[EnvelopeHeaderSize:], MaxPackLen-HeaderSize)
	if err != nil {
		return Envelope{}, fmt.Errorf("%w: inner frame: %w", ErrEnvelope, err)
	}
	if n != len(b)-EnvelopeHeaderSize {
		return Envelope{}, fmt.Errorf("%w: %d bytes after the inner frame", ErrEnvelope, len(b)-EnvelopeHeaderSize-n)
	}
	e.Op, e.Body = p.Op, p.Body
	return e, nil
}

// MaxAckIDs is the most push ids one op-19 frame may carry (a body of
// 1,024 bytes).
const MaxAckIDs = 64

// AppendAck appends an op-19 body acknowledging ids (each 32 hex digits;
// others are skipped) and reports how many it wrote.
func AppendAck(dst []byte, ids ...string) ([]byte, int) {
	n := 0
	for _, id := range ids {
		b, ok := ParseMsgID(id)
		if !ok {
			continue
		}
		dst = append(dst, b[:]...)
		n++
	}
	return dst, n
}

// ParseAck splits an op-19 body into push ids (32 hex digits each): 1 to
// MaxAckIDs ids of 16 bytes back to back.
func ParseAck(b []byte) ([]string, error) {
	if len(b) == 0 || len(b)%MsgIDSize != 0 || len(b)/MsgIDSize > MaxAckIDs {
		return nil, fmt.Errorf("%w: ack body of %d bytes, want 1 to %d ids of %d bytes", ErrEnvelope, len(b), MaxAckIDs, MsgIDSize)
	}
	ids := make([]string, 0, len(b)/MsgIDSize)
	for i := 0; i < len(b); i += MsgIDSize {
		ids = append(ids, hex.EncodeToString(b[i:i+MsgIDSize]))
	}
	return ids, nil
}

// FormatEpoch writes an epoch as the 16 lowercase hex digits clients hold
// it as (JSON numbers lose precision above 2^53 in JavaScript).
func FormatEpoch(epoch uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[epoch&0xf]
		epoch >>= 4
	}
	return string(b[:])
}

// ParseEpoch reads FormatEpoch's form: 1 to 16 hex digits.
func ParseEpoch(s string) (uint64, error) {
	if len(s) == 0 || len(s) > 16 {
		return 0, fmt.Errorf("epoch %q: want 1 to 16 hex digits", s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("epoch %q: want 1 to 16 hex digits", s)
	}
	return v, nil
}

// check validates the epochs of a Since (nil is valid).
func (s *Since) check() error {
	if s == nil {
		return nil
	}
	for _, f := range []struct {
		name string
		p    *SincePos
	}{{"user", s.User}, {"key", s.Key}, {"room", s.Room}} {
		if f.p == nil {
			continue
		}
		if _, err := ParseEpoch(f.p.Epoch); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

// Positions turns a Since into Positions (user, key, room order), leaving
// out streams it does not name. Call it on a Since ParseAuthBody accepted.
func (s *Since) Positions() []*Position {
	if s == nil {
		return nil
	}
	var out []*Position
	for i, p := range []*SincePos{s.User, s.Key, s.Room} {
		if p == nil {
			continue
		}
		epoch, _ := ParseEpoch(p.Epoch)
		out = append(out, &Position{Stream: int32(i + 1), Epoch: epoch, Offset: p.Offset})
	}
	return out
}

// StreamsBody is the JSON body of op 20: the state of a reliable
// connection's streams.
type StreamsBody struct {
	Streams []StreamState `json:"streams"`
}

// StreamState is one stream in an op-20 body.
type StreamState struct {
	// Stream is "user", "key" or "room".
	Stream string `json:"stream"`
	// Epoch is the stream's epoch (16 hex digits).
	Epoch string `json:"epoch"`
	// Offset is the stream's last offset when the report was made: the
	// client's position once the messages that follow the report (the
	// recovered ones) have arrived.
	Offset uint64 `json:"offset"`
	// Recovered is true when everything the client missed since its last
	// position (auth body "since") follows this report without a gap, false
	// when some of it is gone (trimmed, expired, or the epoch changed) or the
	// client named no position: the application should then resync this
	// stream's state by other means.
	Recovered bool `json:"recovered"`
}
