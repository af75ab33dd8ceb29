// Package protocol is goim's client wire format: the 16-byte frame header,
// operation codes, the TCP stream and WebSocket message codecs, the op-9 batch
// builder and the auth body. It is shared by comet, the load tool, the tests
// and any Go client, and is wire-compatible with goim v2. docs/protocol.md
// describes the format; the Proto type is generated from protocol.proto so the
// same value travels over gRPC between job and comet.
//
// Aliasing rule: decoders do not copy bodies. A body decoded from a byte
// slice points into that slice; a body read from a bufio.Reader points into
// the reader's buffer and is valid only until the next read from it. Copy a
// body that must outlive that.
package protocol

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Frame layout: every integer is big-endian and signed.
const (
	// HeaderSize is the fixed header length, and the only valid headerLen.
	HeaderSize = 16
	// MaxBodySize is the default limit on the body of a frame the server
	// reads from a client (goim v2's value). Frames the server writes may be
	// larger; clients must not apply this limit to what they receive.
	MaxBodySize = 4096
	// MaxPackLen is the largest packLen any frame can have.
	MaxPackLen = math.MaxInt32

	packLenOff   = 0 // int32: HeaderSize + len(body)
	headerLenOff = 4 // int16: always 16
	verOff       = 6 // int16: protocol version, echoed in replies
	opOff        = 8 // int32: operation
	seqOff       = 12
)

// Version is the ver the server puts on frames it originates (pushes, op-9
// carriers). Replies echo the client's ver instead.
const Version = 1

// AppendFrame appends one frame (header and body) to dst and returns the
// extended slice. ver is written as its low 16 bits (the field is an int16 on
// the wire). len(body) must not exceed MaxPackLen-HeaderSize; writers that
// take bodies from outside check that first.
func AppendFrame(dst []byte, ver, op, seq int32, body []byte) []byte {
	dst = appendHeader(dst, HeaderSize+len(body), ver, op, seq)
	return append(dst, body...)
}

func appendHeader(dst []byte, packLen int, ver, op, seq int32) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(packLen))
	dst = binary.BigEndian.AppendUint16(dst, HeaderSize)
	dst = binary.BigEndian.AppendUint16(dst, uint16(ver))
	dst = binary.BigEndian.AppendUint32(dst, uint32(op))
	return binary.BigEndian.AppendUint32(dst, uint32(seq))
}

// putHeader writes a header into the first HeaderSize bytes of b.
func putHeader(b []byte, packLen int, ver, op, seq int32) {
	_ = b[seqOff+3]
	binary.BigEndian.PutUint32(b[packLenOff:], uint32(packLen))
	binary.BigEndian.PutUint16(b[headerLenOff:], HeaderSize)
	binary.BigEndian.PutUint16(b[verOff:], uint16(ver))
	binary.BigEndian.PutUint32(b[opOff:], uint32(op))
	binary.BigEndian.PutUint32(b[seqOff:], uint32(seq))
}

// parseHeader validates the header at the front of h (at least HeaderSize
// bytes), fills p's header fields and returns packLen. The checks run in a
// fixed order so every decoder reports the same error for the same bytes:
// headerLen, packLen below the header, body above maxBody.
func (p *Proto) parseHeader(h []byte, maxBody int) (int, error) {
	_ = h[seqOff+3]
	if hl := int16(binary.BigEndian.Uint16(h[headerLenOff:])); hl != HeaderSize {
		return 0, fmt.Errorf("%w: headerLen %d", ErrHeaderLen, hl)
	}
	packLen := int(int32(binary.BigEndian.Uint32(h[packLenOff:])))
	if packLen < HeaderSize {
		return 0, fmt.Errorf("%w: packLen %d", ErrPackLen, packLen)
	}
	if maxBody < 0 {
		maxBody = 0
	}
	if packLen-HeaderSize > maxBody {
		return 0, fmt.Errorf("%w: packLen %d, at most %d", ErrBodyTooLarge, packLen, HeaderSize+maxBody)
	}
	p.Ver = int32(int16(binary.BigEndian.Uint16(h[verOff:])))
	p.Op = int32(binary.BigEndian.Uint32(h[opOff:]))
	p.Seq = int32(binary.BigEndian.Uint32(h[seqOff:]))
	return packLen, nil
}

// Decode decodes the frame at the front of b into p and returns how many
// bytes it took. p.Body points into b (nil when the body is empty). Use it to
// walk the inner frames of an op-9 body: decode, advance by n, repeat. On
// error p may be partly overwritten.
func (p *Proto) Decode(b []byte, maxBody int) (n int, err error) {
	if len(b) < HeaderSize {
		return 0, fmt.Errorf("%w: %d bytes", ErrShortHeader, len(b))
	}
	packLen, err := p.parseHeader(b, maxBody)
	if err != nil {
		return 0, err
	}
	if packLen > len(b) {
		return 0, fmt.Errorf("%w: packLen %d, %d bytes", ErrTruncated, packLen, len(b))
	}
	p.Body = body(b[:packLen])
	return packLen, nil
}

// body returns the body part of a complete frame, capacity-limited so an
// append by the caller cannot overwrite the bytes that follow.
func body(frame []byte) []byte {
	if len(frame) == HeaderSize {
		return nil
	}
	return frame[HeaderSize:len(frame):len(frame)]
}

// checkBody reports whether body fits a frame.
func checkBody(body []byte) error {
	if len(body) > MaxPackLen-HeaderSize {
		return fmt.Errorf("%w: %d-byte body does not fit packLen", ErrBodyTooLarge, len(body))
	}
	return nil
}
