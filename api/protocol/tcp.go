package protocol

import (
	"bufio"
	"errors"
	"io"
)

// ReadTCP reads one frame from a TCP stream into p. The header is validated
// before any body byte is read: headerLen must be 16 and packLen between 16
// and 16+maxBody (MaxBodySize for frames the server reads from clients).
//
// p.Body points into r's buffer when the whole frame fits in it (no copy, no
// allocation) and is valid only until the next read from r; a frame larger
// than r.Size() gets a freshly allocated body. It is nil for an empty body.
//
// A stream that ends cleanly between frames returns io.EOF; one that ends
// inside a frame returns io.ErrUnexpectedEOF. On a validation error nothing
// is consumed and the connection is not worth reading any further; after any
// error p may be partly overwritten.
func (p *Proto) ReadTCP(r *bufio.Reader, maxBody int) error {
	h, err := r.Peek(HeaderSize)
	if err != nil {
		return streamErr(err, len(h))
	}
	packLen, err := p.parseHeader(h, maxBody)
	if err != nil {
		return err
	}
	if packLen <= r.Size() {
		frame, err := r.Peek(packLen)
		if err != nil {
			return streamErr(err, len(frame))
		}
		p.Body = body(frame)
		_, _ = r.Discard(packLen) // cannot fail: the bytes are buffered
		return nil
	}
	_, _ = r.Discard(HeaderSize)
	b := make([]byte, packLen-HeaderSize)
	if _, err := io.ReadFull(r, b); err != nil {
		return streamErr(err, 1)
	}
	p.Body = b
	return nil
}

// streamErr turns an EOF after some bytes of a frame into io.ErrUnexpectedEOF.
func streamErr(err error, got int) error {
	if got > 0 && errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// WriteTCP writes p to a TCP stream: a frame, or for OpRaw the body alone
// (the inner frames back to back, as goim v2 TCP clients expect). It does not
// flush, so a writer can queue many frames and send them in one syscall.
func (p *Proto) WriteTCP(w *bufio.Writer) error {
	if p.Op == OpRaw {
		_, err := w.Write(p.Body)
		return err
	}
	if err := checkBody(p.Body); err != nil {
		return err
	}
	if w.Available() < HeaderSize {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	// Encoding into the writer's own free space avoids a header buffer that
	// would escape to the heap through the writer's io.Writer.
	hdr := appendHeader(w.AvailableBuffer(), HeaderSize+len(p.Body), p.Ver, p.Op, p.Seq)
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	_, err := w.Write(p.Body)
	return err
}

// AppendTCP appends the bytes WriteTCP would write to dst.
func (p *Proto) AppendTCP(dst []byte) []byte {
	if p.Op == OpRaw {
		return append(dst, p.Body...)
	}
	return AppendFrame(dst, p.Ver, p.Op, p.Seq, p.Body)
}
