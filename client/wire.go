package client

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/goim/goim/api/protocol"
)

// The client side of goim's wire protocol, written for many connections
// per process: every read goes through the connection's one small
// bufio.Reader, bodies alias it (valid until the next read), and a
// WebSocket op-9 batch is walked frame by frame as it streams in, so the
// buffer never has to hold a whole batch. Only a fragmented or masked
// server message (goim's comet sends neither) is assembled in memory.

// readTCP reads one TCP frame (the comet writes batches as bare inner
// frames; an op-9 carrier, should one come, is unpacked too).
func readTCP(br *bufio.Reader, maxBody int, fn func(Frame)) error {
	var p protocol.Proto
	if err := p.ReadTCP(br, maxBody); err != nil {
		return err
	}
	if p.Op == protocol.OpRaw {
		return walkBatch(p.Body, maxBody, fn)
	}
	fn(Frame{Op: p.Op, Seq: p.Seq, Body: p.Body})
	return nil
}

// walkBatch calls fn for each inner frame of an op-9 body.
func walkBatch(b []byte, maxBody int, fn func(Frame)) error {
	for len(b) > 0 {
		var in protocol.Proto
		n, err := in.Decode(b, maxBody)
		if err != nil {
			return fmt.Errorf("op-9 body: %w", err)
		}
		fn(Frame{Op: in.Op, Seq: in.Seq, Body: in.Body})
		b = b[n:]
	}
	return nil
}

// WebSocket opcodes (RFC 6455).
const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	wsPing         = 0x9
	wsPong         = 0xa
)

type wsHeader struct {
	fin    bool
	op     byte
	masked bool
	mask   [4]byte
	length int64
}

// readWSHeader reads one WebSocket frame header without allocating.
func readWSHeader(br *bufio.Reader) (wsHeader, error) {
	var h wsHeader
	b, err := br.Peek(2)
	if err != nil {
		return h, eofErr(err, len(b))
	}
	h.fin = b[0]&0x80 != 0
	if b[0]&0x70 != 0 {
		return h, fmt.Errorf("%w: reserved bits set", ErrWebSocket)
	}
	h.op = b[0] & 0x0f
	h.masked = b[1]&0x80 != 0
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if h.masked {
		n += 4
	}
	if b, err = br.Peek(n); err != nil {
		return h, eofErr(err, 1)
	}
	switch l := b[1] & 0x7f; l {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		h.length = int64(binary.BigEndian.Uint64(b[2:]))
	default:
		h.length = int64(l)
	}
	if h.length < 0 {
		return h, fmt.Errorf("%w: length overflows", ErrWebSocket)
	}
	if h.masked {
		copy(h.mask[:], b[n-4:])
	}
	_, _ = br.Discard(n)
	return h, nil
}

// eofErr turns an EOF after some bytes into io.ErrUnexpectedEOF.
func eofErr(err error, got int) error {
	if got > 0 && errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// wsReader reads goim frames from WebSocket messages. pong writes the
// answer to a ping.
type wsReader struct {
	br      *bufio.Reader
	maxBody int
	pong    func(payload []byte) error
}

// read reads the next data message and calls fn for its frame, or each
// inner frame of an op-9 batch. Pings are answered and pongs skipped on
// the way; a close frame returns a *CloseError.
func (r *wsReader) read(fn func(Frame)) error {
	for {
		h, err := readWSHeader(r.br)
		if err != nil {
			return err
		}
		switch h.op {
		case wsPing, wsPong, wsClose:
			if err := r.control(h); err != nil {
				return err
			}
			continue
		case wsText, wsBinary:
		default:
			return fmt.Errorf("%w: opcode %d where a message starts", ErrWebSocket, h.op)
		}
		if !h.fin || h.masked {
			return r.assemble(h, fn)
		}
		return r.stream(h.length, fn)
	}
}

// control handles a ping, pong or close frame.
func (r *wsReader) control(h wsHeader) error {
	if h.length > 125 || !h.fin {
		return fmt.Errorf("%w: control frame of %d bytes, fin %v", ErrWebSocket, h.length, h.fin)
	}
	var buf [125]byte
	p := buf[:h.length]
	if _, err := io.ReadFull(r.br, p); err != nil {
		return eofErr(err, 1)
	}
	if h.masked {
		unmask(p, h.mask)
	}
	switch h.op {
	case wsPing:
		return r.pong(p)
	case wsClose:
		ce := &CloseError{Code: 1005} // no status received
		if len(p) >= 2 {
			ce.Code = int(binary.BigEndian.Uint16(p))
			ce.Reason = string(p[2:])
		}
		return ce
	}
	return nil
}

// stream reads a message of n bytes, the frame or batch straight from the
// buffer: the 16-byte goim header says whether it is an op-9 batch, whose
// inner frames are then read one by one.
func (r *wsReader) stream(n int64, fn func(Frame)) error {
	if n < protocol.HeaderSize {
		_, _ = r.br.Discard(int(n))
		return fmt.Errorf("%w: %d-byte message", protocol.ErrShortHeader, n)
	}
	if n > int64(r.maxBody)+protocol.HeaderSize {
		return fmt.Errorf("%w: %d-byte message", protocol.ErrBodyTooLarge, n)
	}
	h, err := r.br.Peek(protocol.HeaderSize)
	if err != nil {
		return eofErr(err, 1)
	}
	packLen := int64(int32(binary.BigEndian.Uint32(h[0:])))
	op := int32(binary.BigEndian.Uint32(h[8:]))
	if hl := binary.BigEndian.Uint16(h[4:]); hl != protocol.HeaderSize {
		return fmt.Errorf("%w: headerLen %d", protocol.ErrHeaderLen, hl)
	}
	if packLen != n {
		return fmt.Errorf("%w: packLen %d in a %d-byte message", ErrWebSocket, packLen, n)
	}
	if op != protocol.OpRaw {
		var p protocol.Proto
		if err := p.ReadTCP(r.br, int(n)-protocol.HeaderSize); err != nil {
			return eofErr(err, 1)
		}
		fn(Frame{Op: p.Op, Seq: p.Seq, Body: p.Body})
		return nil
	}
	_, _ = r.br.Discard(protocol.HeaderSize)
	for rest := n - protocol.HeaderSize; rest > 0; {
		if rest < protocol.HeaderSize {
			return fmt.Errorf("%w: %d bytes left in the batch", ErrWebSocket, rest)
		}
		var p protocol.Proto
		if err := p.ReadTCP(r.br, int(rest)-protocol.HeaderSize); err != nil {
			return eofErr(err, 1)
		}
		rest -= int64(protocol.HeaderSize + len(p.Body))
		fn(Frame{Op: p.Op, Seq: p.Seq, Body: p.Body})
	}
	return nil
}

// assemble reads a fragmented or masked message whole, then decodes it.
func (r *wsReader) assemble(h wsHeader, fn func(Frame)) error {
	limit := int64(r.maxBody) + protocol.HeaderSize
	var msg []byte
	for {
		if int64(len(msg))+h.length > limit {
			return fmt.Errorf("%w: message over %d bytes", protocol.ErrBodyTooLarge, limit)
		}
		start := len(msg)
		msg = append(msg, make([]byte, h.length)...)
		if _, err := io.ReadFull(r.br, msg[start:]); err != nil {
			return eofErr(err, 1)
		}
		if h.masked {
			unmask(msg[start:], h.mask)
		}
		if h.fin {
			break
		}
		for {
			var err error
			if h, err = readWSHeader(r.br); err != nil {
				return err
			}
			if h.op < wsClose {
				break
			}
			if err := r.control(h); err != nil {
				return err
			}
		}
		if h.op != wsContinuation {
			return fmt.Errorf("%w: opcode %d inside a fragmented message", ErrWebSocket, h.op)
		}
	}
	var p protocol.Proto
	if err := p.DecodeWS(msg, r.maxBody); err != nil {
		return err
	}
	if p.Op == protocol.OpRaw {
		return walkBatch(p.Body, r.maxBody, fn)
	}
	fn(Frame{Op: p.Op, Seq: p.Seq, Body: p.Body})
	return nil
}

// unmask applies a WebSocket mask in place.
func unmask(p []byte, mask [4]byte) {
	for i := range p {
		p[i] ^= mask[i&3]
	}
}

// appendWSClientFrame appends one final, masked client frame (RFC 6455
// requires clients to mask). The mask comes from math/rand/v2's
// ChaCha8-seeded generator: it only has to keep intermediaries from
// predicting the bytes on the wire.
func appendWSClientFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	unmask(dst[start:], mask)
	return dst
}

// isProtocolErr reports whether err is a malformed-input error of the
// decoders above.
func isProtocolErr(err error) bool {
	for _, s := range []error{ErrWebSocket, protocol.ErrShortHeader, protocol.ErrHeaderLen, protocol.ErrPackLen,
		protocol.ErrBodyTooLarge, protocol.ErrTruncated, protocol.ErrTrailing} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
