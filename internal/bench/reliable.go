package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
)

// Reliable delivery, the tool's side (conns -reliable): every connection
// opts in, so each push arrives as an op-18 envelope whose inner frame the
// usual accounting reads (run, stream, seq and send time of the body), and
// each stream position is checked as it arrives: an offset at or below the
// last one of its stream and epoch is a duplicate, one beyond the next a
// gap. Op-20 reports set the epochs and bound where the next message may
// be (see report); a report that says a stream was not recovered, after
// the connection's first one, means pushes were lost.
// Ids are acked in op-19 frames of up to 64, sent by the reader as soon as
// 64 wait, else by one ticker per process every ackEvery.
//
// The state lives in the link (relLink), so connections without the flag
// cost nothing more; a reliable one costs 120 bytes plus its
// waiting ids (16 bytes each, at most 64).

// ackEvery is the longest an id waits before it is acked (unless 64 wait).
const ackEvery = 100 * time.Millisecond

// Stream kinds as the record names them (protocol.StreamNone ..
// protocol.StreamRoom).
var relStreamNames = [4]string{"none", "user", "key", "room"}

// relLink is a reliable connection: the client connection and its
// reliable state. A reconnect makes a new one (positions start again at
// the new connection's op-20 report).
type relLink struct {
	*client.Conn

	mu   sync.Mutex // guards acks
	acks []byte     // ids to ack, 16 bytes each, at most MaxAckIDs

	// Only the reader touches the fields below.
	pos      [3]relPos // user, key, room streams
	reported bool      // an op-20 report arrived
}

// relPos is a connection's position in one stream: its epoch (0: not
// known yet), the last offset received and, after a report that did not
// recover the stream, the highest offset the next message may have
// (0: none, the next one follows the last).
type relPos struct{ epoch, last, ceil uint64 }

// ReliableCounts is what reliable connections received and sent: in a
// conns record and, merged, in the summary.
type ReliableCounts struct {
	// Streams counts the op-18 messages by stream ("none", "user", "key",
	// "room"): Duplicates arrived at or below the last offset of their
	// stream and epoch, Gaps beyond the next one (or in an epoch no report
	// announced).
	Streams map[string]*StreamCounts `json:"streams"`
	// Reports counts op-20 frames; Unrecovered the streams they said were
	// not recovered, except in each connection's first report (which
	// always says so: the tool names no position at auth).
	Reports     uint64 `json:"reports"`
	Unrecovered uint64 `json:"unrecovered"`
	// Plain counts pushes that arrived without an envelope; Bad op-18 and
	// op-20 bodies that did not decode.
	Plain uint64 `json:"plain"`
	Bad   uint64 `json:"bad"`
	// NoID counts messages whose envelope carried no id (not acked).
	NoID uint64 `json:"no_id"`
	// AckFrames and AckedIDs are the op-19 frames sent and the ids in them.
	AckFrames uint64 `json:"ack_frames"`
	AckedIDs  uint64 `json:"acked_ids"`
}

// StreamCounts is one stream kind's messages.
type StreamCounts struct {
	Messages   uint64 `json:"messages"`
	Duplicates uint64 `json:"duplicates"`
	Gaps       uint64 `json:"gaps"`
}

// merge adds o to r.
func (r *ReliableCounts) merge(o *ReliableCounts) {
	if r.Streams == nil {
		r.Streams = map[string]*StreamCounts{}
	}
	for k, v := range o.Streams {
		s := r.Streams[k]
		if s == nil {
			s = &StreamCounts{}
			r.Streams[k] = s
		}
		s.Messages += v.Messages
		s.Duplicates += v.Duplicates
		s.Gaps += v.Gaps
	}
	r.Reports += o.Reports
	r.Unrecovered += o.Unrecovered
	r.Plain += o.Plain
	r.Bad += o.Bad
	r.NoID += o.NoID
	r.AckFrames += o.AckFrames
	r.AckedIDs += o.AckedIDs
}

// totals are the messages, duplicates and gaps over every stream.
func (r *ReliableCounts) totals() (msgs, dups, gaps uint64) {
	for _, s := range r.Streams {
		msgs += s.Messages
		dups += s.Duplicates
		gaps += s.Gaps
	}
	return msgs, dups, gaps
}

// fmtStreams lists the streams' counts: "room 100 (dup 0, gaps 0), ...".
func (r *ReliableCounts) fmtStreams() string {
	var parts []string
	for _, name := range relStreamNames {
		if v := r.Streams[name]; v != nil {
			parts = append(parts, fmt.Sprintf("%s %d (dup %d, gaps %d)", name, v.Messages, v.Duplicates, v.Gaps))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// relTally is what one read brought of reliable frames (part of tally).
type relTally struct {
	msgs, dups, gaps                 [4]uint64
	reports, unrecovered, plain, bad uint64
	noID                             uint64
}

// relCounters are a Conns' reliable totals.
type relCounters struct {
	msgs, dups, gaps                 [4]atomic.Uint64
	reports, unrecovered, plain, bad atomic.Uint64
	noID, ackFrames, ackedIDs        atomic.Uint64
}

// add adds t to the counters and resets it.
func (r *relCounters) add(t *relTally) {
	for i := range t.msgs {
		if t.msgs[i] > 0 {
			r.msgs[i].Add(t.msgs[i])
		}
		if t.dups[i] > 0 {
			r.dups[i].Add(t.dups[i])
		}
		if t.gaps[i] > 0 {
			r.gaps[i].Add(t.gaps[i])
		}
	}
	for _, f := range []struct {
		v uint64
		c *atomic.Uint64
	}{{t.reports, &r.reports}, {t.unrecovered, &r.unrecovered}, {t.plain, &r.plain}, {t.bad, &r.bad}, {t.noID, &r.noID}} {
		if f.v > 0 {
			f.c.Add(f.v)
		}
	}
	*t = relTally{}
}

// record returns the counters as a record.
func (r *relCounters) record() *ReliableCounts {
	out := &ReliableCounts{Streams: map[string]*StreamCounts{},
		Reports: r.reports.Load(), Unrecovered: r.unrecovered.Load(), Plain: r.plain.Load(), Bad: r.bad.Load(),
		NoID: r.noID.Load(), AckFrames: r.ackFrames.Load(), AckedIDs: r.ackedIDs.Load()}
	for i, name := range relStreamNames {
		if m := r.msgs[i].Load(); m > 0 || r.dups[i].Load() > 0 || r.gaps[i].Load() > 0 {
			out.Streams[name] = &StreamCounts{Messages: m, Duplicates: r.dups[i].Load(), Gaps: r.gaps[i].Load()}
		}
	}
	return out
}

// unwrap handles an op-18 or op-20 frame of a reliable connection: it
// checks and acks an envelope and returns its inner frame, or takes in a
// report (ok false: nothing more to do with the frame).
func (c *Conns) unwrap(rl *relLink, op int32, body []byte, t *relTally) (int32, []byte, bool) {
	if op == protocol.OpStreams {
		rl.report(body, t)
		return 0, nil, false
	}
	env, err := protocol.DecodeEnvelope(body)
	if err != nil {
		t.bad++
		return 0, nil, false
	}
	t.msgs[env.Stream]++
	switch rl.check(env.Stream, env.Epoch, env.Offset) {
	case posDup:
		t.dups[env.Stream]++
	case posGap:
		t.gaps[env.Stream]++
	}
	// Only pushes by user or key are acked, as the client package does:
	// receipts exist for them alone.
	if env.MsgID == ([protocol.MsgIDSize]byte{}) {
		t.noID++
	} else if (env.Stream == protocol.StreamUser || env.Stream == protocol.StreamKey) && rl.queueAck(env.MsgID[:]) {
		c.sendAcks(rl)
	}
	return env.Op, env.Body, true
}

// What a message's position was.
const (
	posOK = iota
	posDup
	posGap
)

// check moves the connection's position in stream to the message at
// (epoch, offset) and says whether it was the next one. A message in no
// stream, or in a stream whose epoch is not known yet, is taken as it is.
func (rl *relLink) check(stream int32, epoch, offset uint64) int {
	if stream <= protocol.StreamNone || stream > protocol.StreamRoom {
		return posOK
	}
	p := &rl.pos[stream-1]
	switch {
	case p.epoch == 0:
		*p = relPos{epoch: epoch, last: offset}
		return posOK
	case epoch != p.epoch:
		// A new epoch comes after a report saying so; without one, what
		// the old epoch still held is gone.
		*p = relPos{epoch: epoch, last: offset}
		return posGap
	case offset <= p.last:
		return posDup
	}
	next := p.last + 1
	if p.ceil != 0 {
		next = p.ceil
	}
	p.last, p.ceil = offset, 0
	if offset > next {
		return posGap
	}
	return posOK
}

// report takes in an op-20 body. A stream it says was not recovered (the
// first report of a connection always does: the tool names no position
// at auth) continues with the messages appended since the connection's
// stream was opened, if any, whose last is the reported offset, then
// the live ones after it: so the next message may skip ahead, up to the
// reported offset + 1. A recovered stream continues where it was.
func (rl *relLink) report(body []byte, t *relTally) {
	t.reports++
	var b protocol.StreamsBody
	if err := json.Unmarshal(body, &b); err != nil {
		t.bad++
		return
	}
	first := !rl.reported
	rl.reported = true
	for _, s := range b.Streams {
		k := protocol.StreamByName(s.Stream)
		epoch, err := protocol.ParseEpoch(s.Epoch)
		if k == protocol.StreamNone || err != nil {
			t.bad++
			continue
		}
		if !s.Recovered && !first {
			t.unrecovered++
		}
		p := &rl.pos[k-1]
		switch {
		case s.Recovered && epoch == p.epoch:
		case epoch == 0: // no such stream: its first message will tell
			*p = relPos{}
		case epoch != p.epoch:
			*p = relPos{epoch: epoch, ceil: s.Offset + 1}
		default:
			p.ceil = s.Offset + 1
		}
	}
}

// queueAck adds id to the ids to ack and reports whether a full frame's
// worth waits.
func (rl *relLink) queueAck(id []byte) bool {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.acks = append(rl.acks, id...)
	return len(rl.acks) >= protocol.MaxAckIDs*protocol.MsgIDSize
}

// sendAcks sends the waiting ids in op-19 frames of up to 64. The buffer
// is taken out while it is written, so neither the reader nor the ticker
// waits on the other's write.
func (c *Conns) sendAcks(rl *relLink) {
	rl.mu.Lock()
	b := rl.acks
	rl.acks = nil
	rl.mu.Unlock()
	if len(b) == 0 {
		if b != nil {
			rl.putAcks(b)
		}
		return
	}
	var frames, ids uint64
	for rest := b; len(rest) > 0; {
		n := min(len(rest), protocol.MaxAckIDs*protocol.MsgIDSize)
		if err := rl.WriteFrame(protocol.OpAck, 0, rest[:n]); err != nil {
			if !errors.Is(err, client.ErrClosed) { // closed: the reader tells why
				c.countErr(phaseAck, err)
			}
			break
		}
		frames++
		ids += uint64(n / protocol.MsgIDSize)
		rest = rest[n:]
	}
	c.rel.ackFrames.Add(frames)
	c.rel.ackedIDs.Add(ids)
	rl.putAcks(b)
}

// putAcks gives the (written) buffer back for reuse, unless ids arrived
// meanwhile in a new one.
func (rl *relLink) putAcks(b []byte) {
	rl.mu.Lock()
	if rl.acks == nil {
		rl.acks = b[:0]
	}
	rl.mu.Unlock()
}

// ackLoop acks what every reliable connection received, every ackEvery.
func (c *Conns) ackLoop() {
	t := time.NewTicker(ackEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		all := c.conns
		c.mu.Unlock()
		c.ackAll(all)
	}
}

// ackAll sends what every open reliable connection of all has to ack.
func (c *Conns) ackAll(all []*conn) {
	for _, cn := range all {
		if cn.closing.Load() || cn.down.Load() != 0 {
			continue
		}
		if rl, ok := cn.link().(*relLink); ok {
			c.sendAcks(rl)
		}
	}
}
