package comet

import (
	"encoding/json"
	"sync"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
)

// Reliable delivery, the comet's side. A connection whose auth logic
// answered with ConnectReply.reliable (TCP, TLS, WebSocket, WSS; never
// SSE) gets a reliable state (Channel.rel; nil on every other connection,
// which so costs nothing more than a nil pointer and a branch on it). Its
// pushes then arrive as op-18 envelopes carrying the push's id and stream
// position, and the comet is the sequencer of each of its streams (user,
// key, room): within one epoch every offset reaches the client once and in
// order. For a live message at position p on a stream:
//
//   - stream 0 (in no stream) or epoch 0: written at once;
//   - a fetch of the stream is in flight: dropped (it is in the stream,
//     the fetch writes it), seen = max(seen, offset);
//   - the epoch is not the connection's (or it has none): a gap from 0 in
//     the new epoch, filled by a fetch (which reports op 20
//     recovered=false);
//   - offset <= last: a duplicate, dropped and counted;
//   - offset == last+1: written, last++;
//   - beyond: a gap, filled by a fetch (fetch.go) from logic's ReadStream.
//
// Every reliable frame of a connection is written under its reliable lock
// (reliable.mu), live and fetched alike, so they never interleave out of
// order. Lock order: a room shard's lock, then reliable.mu, then the
// writer's mu.
//
// A room push is made into envelopes once per fan-out (relView) and those
// bytes are shared by every reliable member whose room stream the push
// continues exactly; only a member off sequence (fetching, behind, ahead)
// takes the per-member path, one envelope per message.

// streamState is the sequencer's state of one stream of a connection.
type streamState struct {
	epoch    uint64 // the epoch of last; 0: the connection follows no such stream
	last     uint64 // the last offset written to the client
	seen     uint64 // the highest offset received live while fetching
	fetching bool   // a fetch is due or in flight: live messages wait in the stream
	again    bool   // a live message of another epoch arrived while fetching
	hold     bool   // the reader is setting the state (a room change): no fetch runs
}

// reliable is a reliable connection's sequencer and recovery state.
type reliable struct {
	mu sync.Mutex // the reliable lock: guards the fields below and orders the connection's reliable frames
	st [protocol.StreamRoom + 1]streamState
	// room is the room the room stream follows ("" none); roomGen
	// changes with every room change, so a fetch of the old room's
	// stream is discarded.
	room    string
	roomGen uint64
	// ready is set once the auth's op 20 and recovered messages are
	// written; until then frames of no stream wait in pending.
	ready   bool
	pending [][]byte
	queued  bool          // the channel is in the fetch queue or a fetch worker has it
	initial *initialState // what the auth's recovery reads (nil once done)
	// counted is set when the connection is counted in
	// goim_comet_reliable_connections; owned by the reader goroutine.
	counted bool
}

// initialState is what a reliable connection's auth said about its
// streams: each stream's state at Connect and the client's since.
type initialState struct {
	tracked [protocol.StreamRoom + 1]bool
	epoch   [protocol.StreamRoom + 1]uint64
	top     [protocol.StreamRoom + 1]uint64
	since   [protocol.StreamRoom + 1]*protocol.Position
}

// newReliable returns the state of a reliable connection from logic's
// Connect reply: the streams it lists are followed (fetching until the
// auth's recovery reads them), the others not.
func newReliable(reply *logicpb.ConnectReply) *reliable {
	r := &reliable{room: reply.GetRoomID(), initial: &initialState{}}
	for _, p := range reply.GetStreams() {
		k := p.GetStream()
		if k < protocol.StreamUser || k > protocol.StreamRoom || p.GetEpoch() == 0 || (k == protocol.StreamRoom && r.room == "") {
			continue
		}
		r.initial.tracked[k] = true
		r.initial.epoch[k], r.initial.top[k] = p.GetEpoch(), p.GetOffset()
		r.st[k] = streamState{epoch: p.GetEpoch(), last: p.GetOffset(), fetching: true}
	}
	for _, p := range reply.GetSince() {
		if k := p.GetStream(); k >= protocol.StreamUser && k <= protocol.StreamRoom {
			r.initial.since[k] = p
		}
	}
	return r
}

// relMsg is one message of a push: its id, its stream position (nil: in
// no stream) and its frame's op and body.
type relMsg struct {
	id   string
	pos  *protocol.Position
	op   int32
	body []byte
}

// relView is a push made ready for reliable connections: its messages and
// their envelopes, for the connections the push continues exactly.
type relView struct {
	msgs []relMsg
	tcp  []byte // op-18 frames back to back
	ws   []byte // one WebSocket message: one op-18 frame, or an op-9 carrier of several
}

// reliableView returns f's view, built on first use by the goroutine that
// fans f out (a frame is fanned out by one goroutine).
func (f *frame) reliableView() *relView {
	if f.view != nil {
		return f.view
	}
	v := &relView{msgs: f.messages(nil)}
	for _, m := range v.msgs {
		v.tcp = appendEnvelopeTCP(v.tcp, m.id, m.pos, m.op, m.body)
	}
	if len(v.msgs) == 1 {
		v.ws = appendWS(nil, &protocol.Proto{Ver: protocol.Version, Op: protocol.OpMessage, Body: envelopeBody(v.msgs[0])})
	} else if len(v.msgs) > 1 {
		v.ws = appendWS(nil, &protocol.Proto{Ver: protocol.Version, Op: protocol.OpRaw, Body: v.tcp})
	}
	f.view = v
	return v
}

// messages appends f's messages to dst: the frames of f.tcp (the inner
// frames of an op-9 carrier, or the one frame) with f.ids (else f.id) and
// f.pos aligned to them, or those of the frames f was merged from.
func (f *frame) messages(dst []relMsg) []relMsg {
	if f.parts != nil {
		for _, p := range f.parts {
			dst = p.messages(dst)
		}
		return dst
	}
	i := 0
	for rest := f.tcp; len(rest) > 0; i++ {
		var p protocol.Proto
		n, err := p.Decode(rest, maxMsgSize)
		if err != nil {
			break // job sends well-formed carriers; what does not decode is not sent
		}
		m := relMsg{id: f.id, op: p.Op, body: p.Body}
		if i < len(f.ids) {
			m.id = f.ids[i]
		}
		if i < len(f.pos) {
			m.pos = f.pos[i]
		}
		dst = append(dst, m)
		rest = rest[n:]
	}
	return dst
}

func (v *relView) bytes(t transport) []byte {
	if t.ws() {
		return v.ws
	}
	return v.tcp
}

func envelopeBody(m relMsg) []byte {
	b := make([]byte, 0, protocol.EnvelopeHeaderSize+protocol.HeaderSize+len(m.body))
	return protocol.AppendEnvelope(b, m.id, m.pos, m.op, m.body)
}

// appendEnvelopeTCP appends one op-18 frame of a message to dst.
func appendEnvelopeTCP(dst []byte, id string, pos *protocol.Position, op int32, body []byte) []byte {
	return protocol.AppendFrame(dst, protocol.Version, protocol.OpMessage, 0, envelopeBody(relMsg{id: id, pos: pos, op: op, body: body}))
}

// envelopeFor frames one message as an op-18 frame for c's transport.
func (c *Channel) envelopeFor(m relMsg) []byte {
	if c.tr.ws() {
		return appendWS(nil, &protocol.Proto{Ver: protocol.Version, Op: protocol.OpMessage, Body: envelopeBody(m)})
	}
	return appendEnvelopeTCP(nil, m.id, m.pos, m.op, m.body)
}

// pushReliable delivers f to a reliable channel; keyPos, when not nil, is
// the position of a key push's one message for this channel. A push the
// channel's streams continue exactly goes out as the view's shared bytes;
// otherwise each message goes through the sequencer (accept).
func (c *Channel) pushReliable(f *frame, keyPos *protocol.Position) pushResult {
	v := f.reliableView()
	r := c.rel
	r.mu.Lock()
	defer r.mu.Unlock()
	if keyPos.GetStream() == protocol.StreamNone && r.inSequence(v) {
		r.advance(v)
		return c.relWrite(v.bytes(c.tr))
	}
	res := pushQueued
	for _, m := range v.msgs {
		if keyPos != nil {
			m.pos = keyPos
		}
		if !c.accept(r, m.pos) {
			continue
		}
		if out := c.relEmit(r, c.envelopeFor(m)); out != pushQueued {
			res = out
		}
	}
	return res
}

// inSequence reports whether v's messages are exactly what the channel's
// streams expect next (r.mu held): then the view's bytes are the
// channel's bytes.
func (r *reliable) inSequence(v *relView) bool {
	if !r.ready {
		return false
	}
	var next [protocol.StreamRoom + 1]uint64
	for _, m := range v.msgs {
		k := m.pos.GetStream()
		if k == protocol.StreamNone || m.pos.GetEpoch() == 0 {
			continue
		}
		if k > protocol.StreamRoom {
			return false
		}
		st := &r.st[k]
		if next[k] == 0 {
			next[k] = st.last + 1
		}
		if st.fetching || st.epoch != m.pos.GetEpoch() || m.pos.GetOffset() != next[k] {
			return false
		}
		next[k]++
	}
	return true
}

// advance moves the streams past v's messages (r.mu held; inSequence
// said yes).
func (r *reliable) advance(v *relView) {
	for _, m := range v.msgs {
		if k := m.pos.GetStream(); k > protocol.StreamNone && k <= protocol.StreamRoom && m.pos.GetEpoch() != 0 {
			r.st[k].last = m.pos.GetOffset()
		}
	}
}

// accept runs the sequencer for one live message at pos (r.mu held): true
// means write it now, false that it is dropped (a duplicate, or it waits
// in its stream for a fetch).
func (c *Channel) accept(r *reliable, pos *protocol.Position) bool {
	k := pos.GetStream()
	if k <= protocol.StreamNone || k > protocol.StreamRoom || pos.GetEpoch() == 0 {
		return true
	}
	st := &r.st[k]
	switch {
	case st.fetching:
		if pos.GetEpoch() == st.epoch {
			st.seen = max(st.seen, pos.GetOffset())
		} else {
			st.again = true
		}
		return false
	case st.epoch != pos.GetEpoch():
		st.fetching, st.again = true, true
		c.startFetch(r)
		return false
	case pos.GetOffset() <= st.last:
		c.srv.metrics.streamDups.Inc()
		return false
	case pos.GetOffset() == st.last+1:
		st.last++
		return true
	}
	st.seen, st.fetching = pos.GetOffset(), true
	c.startFetch(r)
	return false
}

// relEmit writes b, a frame of the channel's reliable output, or while
// the auth's recovery runs keeps it for after (r.mu held).
func (c *Channel) relEmit(r *reliable, b []byte) pushResult {
	if r.ready {
		return c.relWrite(b)
	}
	if len(r.pending) >= c.srv.cfg.Protocol.QueueFrames {
		c.close(ReasonSlow)
		return pushDropped
	}
	r.pending = append(r.pending, b)
	return pushQueued
}

// relWrite writes b to the channel (r.mu held). A reliable connection
// cannot lose a frame without breaking its sequence: a full queue closes
// it (slow_consumer) whatever protocol.slow_policy says, and the client
// recovers what it missed when it reconnects.
func (c *Channel) relWrite(b []byte) pushResult {
	res := c.push(b)
	if res == pushDropped {
		c.close(ReasonSlow)
	}
	return res
}

// streamsFrame frames an op-20 report of states for the channel.
func (c *Channel) streamsFrame(states ...protocol.StreamState) []byte {
	if states == nil {
		states = []protocol.StreamState{}
	}
	body, _ := json.Marshal(protocol.StreamsBody{Streams: states}) // cannot fail: strings, numbers, bools
	return c.encodeReply(&protocol.Proto{Ver: protocol.Version, Op: protocol.OpStreams, Body: body})
}

// streamReport is stream k's state for op 20.
func streamReport(k int32, epoch, offset uint64, recovered bool) protocol.StreamState {
	return protocol.StreamState{Stream: protocol.StreamName(k), Epoch: protocol.FormatEpoch(epoch), Offset: offset, Recovered: recovered}
}

// closed reports whether the channel no longer takes frames.
func (c *Channel) closed() bool {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	return c.out.closed
}
