package comet

import (
	"github.com/gobwas/ws"
	"github.com/goim/goim/api/protocol"
)

// transport is how a channel frames what it sends.
type transport uint8

const (
	transportTCP transport = iota
	transportTLS
	transportWS
	transportWSS
	// transportSSE is a Server-Sent Events stream (server_sse.go), over a
	// WebSocket or WSS listener: a channel accepted there becomes one when
	// its request is for sse.path. It is given the TCP bytes of a frame
	// and turns them into events on its own write path.
	transportSSE
	numTransports
)

var transportNames = [numTransports]string{"tcp", "tls", "ws", "wss", "sse"}

func (t transport) String() string { return transportNames[t] }

// ws reports whether the transport frames goim frames as WebSocket messages.
func (t transport) ws() bool { return t == transportWS || t == transportWSS }

// frame is one server frame encoded once for each transport and shared,
// read-only, by every recipient: no per-recipient copy or allocation.
type frame struct {
	tcp []byte // the goim frame; for op 9 the inner frames alone
	ws  []byte // one complete WebSocket message (header and payload)
	// For reliable connections: the push's ids and stream positions, one
	// per message (frame of tcp) or fewer, and the envelopes made of
	// them (reliable.go), built when the first reliable recipient needs
	// them. id is the id of a push of one message (keys, broadcast),
	// kept apart so that setting it allocates nothing.
	id   string
	ids  []string
	pos  []*protocol.Position
	view *relView
	// parts are the frames a room fan-out merged into this one, when
	// they carry ids or positions.
	parts []*frame
}

func newFrame(p *protocol.Proto) *frame {
	f := &frame{}
	if p.Op == protocol.OpRaw {
		f.tcp = p.Body // aliases the request: it is never modified
	} else {
		f.tcp = p.AppendTCP(nil)
	}
	f.ws = appendWS(nil, p)
	return f
}

// bytes returns the bytes a channel of transport t is given: the
// WebSocket message, else the TCP frames (an SSE channel turns them into
// events as it writes them).
func (f *frame) bytes(t transport) []byte {
	if t.ws() {
		return f.ws
	}
	return f.tcp
}

// appendWS appends p as one unmasked binary WebSocket message.
func appendWS(dst []byte, p *protocol.Proto) []byte {
	n := protocol.HeaderSize + len(p.Body)
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(n)}
	dst = appendWSHeader(dst, h)
	return p.AppendWS(dst)
}

func appendWSHeader(dst []byte, h ws.Header) []byte {
	w := appendWriter{b: dst}
	_ = ws.WriteHeader(&w, h) // cannot fail on an appendWriter
	return w.b
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// encodeReply frames a reply for one channel.
func (c *Channel) encodeReply(p *protocol.Proto) []byte {
	if c.tr.ws() {
		return appendWS(nil, p)
	}
	return p.AppendTCP(nil)
}
