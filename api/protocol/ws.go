package protocol

import "fmt"

// DecodeWS decodes the payload of one WebSocket message, which must carry
// exactly one frame: packLen must equal len(msg) (goim v2 read past short
// messages and ignored trailing bytes; both are errors here). Text and binary
// messages are decoded alike. p.Body points into msg.
func (p *Proto) DecodeWS(msg []byte, maxBody int) error {
	n, err := p.Decode(msg, maxBody)
	if err != nil {
		return err
	}
	if n != len(msg) {
		return fmt.Errorf("%w: packLen %d, message %d bytes", ErrTrailing, n, len(msg))
	}
	return nil
}

// AppendWS appends the payload of the WebSocket message that carries p. It
// is the frame itself, except for OpRaw: the carrier gets an outer header
// (ver 1, op 9, seq 0) in front of its body of inner frames, so a client
// walks the body from offset 16 (see Decode).
func (p *Proto) AppendWS(dst []byte) []byte {
	if p.Op == OpRaw {
		return AppendFrame(dst, Version, OpRaw, 0, p.Body)
	}
	return AppendFrame(dst, p.Ver, p.Op, p.Seq, p.Body)
}
