package protocol

// Batch encodes business messages once into the body of an op-9 carrier:
// complete inner frames (ver 1, seq 0) back to back. It is the room hot path:
// job fills one per room and sends it to comets as Proto{Op: OpRaw}; a comet
// writes Frames to TCP clients as they are and one carrier message to
// WebSocket clients, the same bytes for every member.
//
// The buffer keeps HeaderSize bytes free in front of the frames, so the
// WebSocket form is a view of the same bytes, not a copy. The zero value is
// ready to use; a Batch is not safe for concurrent use.
type Batch struct {
	buf   []byte // [outer header][frame][frame]...
	count int
}

// NewBatch returns a Batch whose buffer holds size bytes of frames before it
// has to grow.
func NewBatch(size int) *Batch {
	if size < 0 {
		size = 0
	}
	return &Batch{buf: make([]byte, HeaderSize, HeaderSize+size)}
}

// Append encodes one message as an inner frame. A body larger than
// MaxPackLen-HeaderSize is refused with ErrBodyTooLarge.
func (b *Batch) Append(op int32, body []byte) error {
	if err := checkBody(body); err != nil {
		return err
	}
	if len(b.buf) < HeaderSize {
		b.buf = append(b.buf[:0], make([]byte, HeaderSize)...)
	}
	b.buf = AppendFrame(b.buf, Version, op, 0, body)
	b.count++
	return nil
}

// Count is the number of frames in the batch.
func (b *Batch) Count() int { return b.count }

// Len is the size of the frames in bytes: the carrier body's length.
func (b *Batch) Len() int {
	if len(b.buf) < HeaderSize {
		return 0
	}
	return len(b.buf) - HeaderSize
}

// Frames returns the inner frames back to back: the body of the op-9 carrier
// and exactly what a TCP client receives. It aliases the batch's buffer until
// the next Append or Reset.
func (b *Batch) Frames() []byte {
	if len(b.buf) < HeaderSize {
		return nil
	}
	return b.buf[HeaderSize:]
}

// WSMessage returns the WebSocket payload for the batch: the outer op-9
// header followed by the frames. Like Frames, it aliases the buffer.
func (b *Batch) WSMessage() []byte {
	if len(b.buf) < HeaderSize {
		b.buf = append(b.buf[:0], make([]byte, HeaderSize)...)
	}
	putHeader(b.buf, len(b.buf), Version, OpRaw, 0)
	return b.buf
}

// Reset empties the batch and keeps its buffer for reuse. Slices returned
// earlier by Frames or WSMessage must no longer be in use.
func (b *Batch) Reset() {
	if cap(b.buf) >= HeaderSize {
		b.buf = b.buf[:HeaderSize]
	}
	b.count = 0
}
