package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/goim/goim/api/protocol"
)

// Reliable delivery, the client side. A Client with Config.Reliable
// authenticates with "reliable": true and the last position it saw in
// each stream ("since"); the comet then sends every push as an op-18
// envelope (id, stream, epoch, offset, inner frame), which the client
// unwraps into a Message, reports its streams with op 20 (a Message with
// Streams), and takes acks as op 19 frames.

// StreamState is one stream in an op-20 report (Message.Streams).
type StreamState struct {
	// Stream is protocol.StreamUser, StreamKey or StreamRoom.
	Stream int32
	// Epoch is the stream's epoch; offsets mean nothing without it.
	Epoch uint64
	// Offset is the stream's last offset when the comet made the report.
	Offset uint64
	// Recovered is true when every message after the client's position
	// follows the report without a gap; false when some are gone
	// (trimmed, expired, a new epoch) or the client had no position: the
	// application should resync that stream's state by other means.
	Recovered bool
}

// Bounds and periods of acks.
const (
	// ackDelay is the longest an automatic or Ack'ed id waits before it is
	// sent (unless MaxAckIDs are waiting, which go at once).
	ackDelay = 100 * time.Millisecond
	// maxPendingAcks is how many ids wait for a connection at most; past it
	// the oldest are dropped (receipts are best effort).
	maxPendingAcks = 4096
)

// streamPos is the client's view of one stream.
type streamPos struct {
	known bool
	epoch uint64
	last  uint64 // offset of the last message received in epoch
	floor uint64 // offset of the last recovered=false report in epoch
}

// offset is the position to resume from: after a report that could not
// recover, at least the reported offset (the application resyncs what
// came before it).
func (p streamPos) offset() uint64 { return max(p.last, p.floor) }

// reliable is a reliable Client's stream positions and unsent acks.
type reliable struct {
	auto bool          // acks sent automatically
	wake chan struct{} // cap 1: ids were queued
	done chan struct{} // closed when the ack loop returns

	mu   sync.Mutex // guards pos, acks, dups
	pos  [protocol.StreamRoom + 1]streamPos
	acks []string
	dups uint64
}

func newReliable(since *protocol.Since, auto bool) *reliable {
	r := &reliable{auto: auto, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if since == nil {
		return r
	}
	for i, sp := range []*protocol.SincePos{since.User, since.Key, since.Room} {
		if sp == nil {
			continue
		}
		epoch, _ := protocol.ParseEpoch(sp.Epoch) // checked by Config.check
		r.pos[i+1] = streamPos{known: true, epoch: epoch, last: sp.Offset}
	}
	return r
}

// checkSince validates a Config.Since.
func checkSince(s *protocol.Since) error {
	if s == nil {
		return nil
	}
	for _, f := range []struct {
		name string
		p    *protocol.SincePos
	}{{"user", s.User}, {"key", s.Key}, {"room", s.Room}} {
		if f.p == nil {
			continue
		}
		if _, err := protocol.ParseEpoch(f.p.Epoch); err != nil {
			return fmt.Errorf("client: config: since.%s: %w", f.name, err)
		}
	}
	return nil
}

// since returns the positions as an auth body's "since"; nil when no
// stream has one.
func (r *reliable) since() *protocol.Since {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s protocol.Since
	some := false
	for i, f := range []**protocol.SincePos{&s.User, &s.Key, &s.Room} {
		p := r.pos[i+1]
		if !p.known {
			continue
		}
		*f = &protocol.SincePos{Epoch: protocol.FormatEpoch(p.epoch), Offset: p.offset()}
		some = true
	}
	if !some {
		return nil
	}
	return &s
}

// accept records a message's position and reports whether it is new:
// false for an offset at or below the last one received in the same
// epoch. A message in no stream is always new.
func (r *reliable) accept(stream int32, epoch, offset uint64) bool {
	if stream <= protocol.StreamNone || stream > protocol.StreamRoom {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := &r.pos[stream]
	if p.known && p.epoch == epoch {
		if offset <= p.last {
			r.dups++
			return false
		}
		p.last = offset
		return true
	}
	// A new epoch without a report first: it starts here.
	*p = streamPos{known: true, epoch: epoch, last: offset}
	return true
}

// report applies an op-20 report. A stream in a new epoch starts over
// (every offset in it is new); one that could not recover resumes at
// least at the reported offset.
func (r *reliable) report(states []StreamState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range states {
		p := &r.pos[st.Stream]
		if !p.known || p.epoch != st.Epoch {
			*p = streamPos{known: true, epoch: st.Epoch}
		}
		if !st.Recovered {
			p.floor = max(p.floor, st.Offset)
		}
	}
}

// forgetRoom drops the room stream's position (the client changed rooms).
func (r *reliable) forgetRoom() {
	r.mu.Lock()
	r.pos[protocol.StreamRoom] = streamPos{}
	r.mu.Unlock()
}

// queue adds ids to the unsent acks (dropping the oldest past
// maxPendingAcks) and wakes the ack loop.
func (r *reliable) queue(ids ...string) {
	r.mu.Lock()
	r.acks = append(r.acks, ids...)
	if n := len(r.acks) - maxPendingAcks; n > 0 {
		r.acks = append(r.acks[:0], r.acks[n:]...)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// pending returns how many acks wait.
func (r *reliable) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acks)
}

// take removes and returns up to protocol.MaxAckIDs waiting ids.
func (r *reliable) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(len(r.acks), protocol.MaxAckIDs)
	ids := append([]string(nil), r.acks[:n]...)
	r.acks = append(r.acks[:0], r.acks[n:]...)
	return ids
}

// putBack returns ids that could not be sent to the front of the queue.
func (r *reliable) putBack(ids []string) {
	r.mu.Lock()
	r.acks = append(ids, r.acks...)
	if n := len(r.acks) - maxPendingAcks; n > 0 {
		r.acks = r.acks[n:]
	}
	r.mu.Unlock()
}

// parseStreams decodes an op-20 body; streams it does not know are
// skipped.
func parseStreams(b []byte) ([]StreamState, error) {
	var body protocol.StreamsBody
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("op-20 body: %w", err)
	}
	out := make([]StreamState, 0, len(body.Streams))
	for _, s := range body.Streams {
		stream := protocol.StreamByName(s.Stream)
		if stream == protocol.StreamNone {
			continue
		}
		epoch, err := protocol.ParseEpoch(s.Epoch)
		if err != nil {
			return nil, fmt.Errorf("op-20 body: stream %s: %w", s.Stream, err)
		}
		out = append(out, StreamState{Stream: stream, Epoch: epoch, Offset: s.Offset, Recovered: s.Recovered})
	}
	return out, nil
}

// receiveReliable handles ops 18 and 20 of a reliable connection; ok is
// false for any other op.
func (c *Client) receiveReliable(f Frame, hb *heartbeatState) (ok bool, err error) {
	switch f.Op {
	case protocol.OpMessage:
		env, err := protocol.DecodeEnvelope(f.Body)
		if err != nil {
			return true, &ProtocolError{Err: err}
		}
		if !c.rel.accept(env.Stream, env.Epoch, env.Offset) {
			return true, nil
		}
		m := Message{Op: env.Op, Body: cloneBody(env.Body), Stream: env.Stream, Epoch: env.Epoch, Offset: env.Offset}
		if env.MsgID != ([protocol.MsgIDSize]byte{}) {
			m.MsgID = env.ID()
		}
		c.deliver(m, hb)
		return true, nil
	case protocol.OpStreams:
		states, err := parseStreams(f.Body)
		if err != nil {
			return true, &ProtocolError{Err: err}
		}
		c.rel.report(states)
		c.deliver(Message{Op: f.Op, Seq: f.Seq, Body: cloneBody(f.Body), Streams: states}, hb)
		return true, nil
	}
	return false, nil
}

// cloneBody copies b (nil for empty).
func cloneBody(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// ErrNotReliable is the error of Ack on a Client without Config.Reliable.
var ErrNotReliable = errors.New("client: not a reliable client")

// Ack acknowledges pushes by id (Message.MsgID, 32 hex digits): they are
// sent as op-19 frames of up to 64 ids, within 100ms or at once when 64
// wait, on the current connection or, while disconnected, the next one
// (at most 4096 ids wait; past that the oldest are dropped). With
// automatic acks (the default of a reliable client) there is no need to
// call it. Errors: ErrNotReliable, ErrClosed, or an id that is not 32 hex
// digits (then none is queued).
func (c *Client) Ack(ids ...string) error {
	if c.rel == nil {
		return ErrNotReliable
	}
	for _, id := range ids {
		if _, ok := protocol.ParseMsgID(id); !ok {
			return fmt.Errorf("client: ack: %q is not a push id (32 hex digits)", id)
		}
	}
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	if len(ids) > 0 {
		c.rel.queue(ids...)
	}
	return nil
}

// Positions returns the last position the client received in each of its
// streams, in the form Config.Since takes (and the auth body's "since"):
// persist it (as JSON, say) to resume where the client stopped after a
// restart. It includes messages still waiting in the buffer for
// Messages or OnMessage; to resume exactly after the last message
// processed, keep that Message's Stream, Epoch and Offset instead. nil
// for a Client without Config.Reliable or before any stream position is
// known.
func (c *Client) Positions() *protocol.Since {
	if c.rel == nil {
		return nil
	}
	return c.rel.since()
}

// Duplicates returns how many messages the client dropped because their
// offset was not above the last one received in their stream (the comet
// sequences streams, so this stays 0 unless something upstream
// misbehaves).
func (c *Client) Duplicates() uint64 {
	if c.rel == nil {
		return 0
	}
	c.rel.mu.Lock()
	defer c.rel.mu.Unlock()
	return c.rel.dups
}

// acked queues the automatic ack of a message handed to the application.
// Only pushes by user or key are acked: receipts exist for them alone, so
// acks of room and broadcast pushes would cost logic work for nothing.
func (c *Client) acked(m *Message) {
	if c.rel != nil && c.rel.auto && m.MsgID != "" && (m.Stream == protocol.StreamUser || m.Stream == protocol.StreamKey) {
		c.rel.queue(m.MsgID)
	}
}

// ackLoop sends queued acks until Close: a full frame's worth at once,
// fewer after ackDelay.
func (c *Client) ackLoop() {
	r := c.rel
	defer close(r.done)
	t := time.NewTimer(ackDelay)
	t.Stop()
	armed := false
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-r.wake:
			if r.pending() < protocol.MaxAckIDs {
				if !armed {
					t.Reset(ackDelay)
					armed = true
				}
				continue
			}
		case <-t.C:
			armed = false
		}
		if !c.flushAcks() && !armed && r.pending() > 0 {
			t.Reset(ackDelay) // retry
			armed = true
		}
	}
}

// flushAcks sends every queued ack, waiting for a connection when there
// is none. false: a write failed (the ids are queued again) or Close.
func (c *Client) flushAcks() bool {
	r := c.rel
	for {
		ids := r.take()
		if len(ids) == 0 {
			return true
		}
		c.mu.Lock()
		conn, up := c.conn, c.up
		c.mu.Unlock()
		if conn == nil {
			r.putBack(ids)
			select {
			case <-up:
				continue
			case <-c.ctx.Done():
				return false
			}
		}
		if err := conn.Ack(ids...); err != nil {
			r.putBack(ids)
			return false
		}
	}
}

// Ack sends op-19 frames acknowledging ids (32 hex digits each), up to
// protocol.MaxAckIDs per frame. It is meant for connections that opted
// in to reliable delivery (Auth.Reliable); on others the comet takes op
// 19 as a business op. An id that is not 32 hex digits is an error and
// nothing is sent. Safe for concurrent use.
func (c *Conn) Ack(ids ...string) error {
	for _, id := range ids {
		if _, ok := protocol.ParseMsgID(id); !ok {
			return fmt.Errorf("client: ack: %q is not a push id (32 hex digits)", id)
		}
	}
	var body []byte
	for len(ids) > 0 {
		n := min(len(ids), protocol.MaxAckIDs)
		body, _ = protocol.AppendAck(body[:0], ids[:n]...)
		if err := c.WriteFrame(protocol.OpAck, 0, body); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// ackClosing sends the ids take returns, frame by frame, until it returns
// none, each write bounded by a second at most (Close's bound); it is the
// last write before Close.
func (c *Conn) ackClosing(take func() []string) error {
	var body []byte
	for {
		ids := take()
		if len(ids) == 0 {
			return nil
		}
		body, _ = protocol.AppendAck(body[:0], ids...)
		frame := protocol.AppendFrame(nil, protocol.Version, protocol.OpAck, 0, body)
		if c.ws != nil {
			frame = appendWSClientFrame(nil, wsBinary, frame)
		}
		c.wmu.Lock()
		if c.closed.Load() {
			c.wmu.Unlock()
			return ErrClosed
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(min(closeWait, c.wtimeout)))
		_, err := c.nc.Write(frame)
		c.wmu.Unlock()
		if err != nil {
			return err
		}
	}
}
