package comet

import (
	"context"
	"slices"
	"time"

	"github.com/gobwas/ws"
	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
)

// The room sequencer. A recoverable room's offsets are given by its
// appends in logic, and job and the comets keep the order pushes are
// published in; but several logic instances pushing to one room can
// publish them out of order (logic A appends 5, logic B appends 6, B
// publishes first). Every reliable member would then see a gap and read
// the room's stream for itself: one ReadStream per member per gap, which
// a busy room cannot afford. So each room worker orders the room stream
// once for all its reliable members:
//
//   - a push that continues the room's sequence exactly (the common case)
//     goes to every member as it is, as before;
//   - otherwise its messages are sorted into the room's sequence for the
//     reliable members: the next offset goes out, along with every held
//     message it makes contiguous; one beyond a missing offset is held;
//     one already sent (a duplicate, or an offset a read sent) is
//     dropped. The members that are not reliable get the push as it
//     arrived, at once: their order is goim v2's, whatever the stream's.
//     In a room without such members the ordered messages go out for
//     every member instead (one joining meanwhile gets them in order),
//     so they merge with the room's other fan-outs (fanOut, roomPacer);
//   - a gap that bucket.room_gap_wait does not fill (the missing push is
//     late by more, or job never delivered it) is filled by one
//     ReadStream of the room (reads in flight at most fetchWorkers per
//     comet), and the result goes to every reliable member at once;
//   - what the sequencer cannot fill (the read failed, the stream no
//     longer holds the missing offsets, more than roomSeqMaxHeld messages
//     wait) goes on to the members as it is: each reliable member's own
//     sequencer then fills or reports the gap, as without this.
//
// A room is sequenced while it has reliable members on this comet. The
// first push its worker sees of it then (or after a minute without
// pushes) starts its sequence: the members' own sequencers deal with
// whatever came before.

// roomSeqMaxHeld bounds the messages a room holds beyond a missing
// offset; one more passes the gap to the members' own sequencers.
const roomSeqMaxHeld = 1024

// roomSeqForget is how long a sequenced room that holds nothing is
// remembered after its last push.
const roomSeqForget = time.Minute

// audience is the members of a room a fan-out is for.
type audience uint8

const (
	toAll      audience = iota // every member
	toPlain                    // the members that are not reliable: the push as it arrived
	toReliable                 // the reliable members: the room stream in order
)

// roomSeq is one room worker's sequencer of recoverable rooms. Only its
// worker's goroutine uses it, except reads, which its read goroutines
// send to.
type roomSeq struct {
	s     *Server
	wait  time.Duration
	rooms map[string]*seqRoom
	// waiting are the rooms of rooms holding messages.
	waiting map[string]*seqRoom
	timer   *time.Timer // armed for the first end of wait among waiting rooms not reading
	reads   chan roomRead
	spare   []roomJob // order's other buffer
	swept   time.Time
	// applying is set while a read's entries are placed: a gap they
	// close was filled by the read, not live.
	applying bool
}

// seqRoom is one room's sequence: its epoch and next offset, and what it
// holds beyond a missing offset.
type seqRoom struct {
	of      *Room    // the room it sequences (a room that empties is made anew)
	to      audience // who gets the sequence: toReliable, or toAll in a room without plain members
	epoch   uint64
	next    uint64    // the next offset the reliable members get; 0: no sequence yet
	held    []relMsg  // messages beyond a missing offset, by offset, each > next
	since   time.Time // when the gap began to wait (the first held message, or the last read)
	reading bool      // a read of the room's stream is in flight
	last    time.Time // the room's last push
}

// roomRead is what one read of a room's stream returned.
type roomRead struct {
	room         string
	seq          *seqRoom
	epoch, after uint64
	reply        *logicpb.ReadStreamReply
	err          error
}

func newRoomSeq(s *Server) *roomSeq {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &roomSeq{s: s, wait: s.cfg.Bucket.RoomGapWait.D(), rooms: map[string]*seqRoom{}, waiting: map[string]*seqRoom{},
		timer: t, reads: make(chan roomRead, 16), swept: time.Now()}
}

func (q *roomSeq) stop() { q.timer.Stop() }

// order runs jobs through the sequencer and returns what is to be fanned
// out now, in order; jobs' array is reused.
func (q *roomSeq) order(jobs []roomJob, now time.Time) []roomJob {
	if !slices.ContainsFunc(jobs, func(j roomJob) bool { return roomPositions(j.f.pos) }) {
		return jobs // no recoverable room among them
	}
	out := q.spare[:0]
	for _, j := range jobs {
		out = q.add(out, j, now)
	}
	sealWS(out)
	clear(jobs)
	q.spare = jobs[:0]
	if now.Sub(q.swept) >= roomPacerSweep {
		q.swept = now
		for id, r := range q.rooms {
			if len(r.held) == 0 && !r.reading && now.Sub(r.last) >= roomSeqForget {
				delete(q.rooms, id)
			}
		}
	}
	return out
}

// roomPositions reports whether pos places a message in a room stream.
func roomPositions(pos []*protocol.Position) bool {
	for _, p := range pos {
		if p.GetStream() == protocol.StreamRoom && p.GetEpoch() != 0 {
			return true
		}
	}
	return false
}

// add sequences one push.
func (q *roomSeq) add(out []roomJob, j roomJob, now time.Time) []roomJob {
	if !roomPositions(j.f.pos) {
		return append(out, j)
	}
	cur, reliable, plain := q.s.rooms.lookup(j.room)
	r := q.rooms[j.room]
	if !reliable { // no reliable member here: nothing to sequence
		if r != nil {
			q.forget(j.room)
		}
		return append(out, j)
	}
	if r == nil || r.of != cur { // new here, or the room emptied and was made anew
		q.forget(j.room)
		r = &seqRoom{of: cur}
		q.rooms[j.room] = r
	}
	r.last = now
	if len(r.held) == 0 && r.continues(j.f.pos) {
		return append(out, j)
	}
	r.to = toAll
	if plain {
		out = append(out, roomJob{room: j.room, f: j.f, to: toPlain})
		r.to = toReliable
	}
	for _, m := range j.f.messages(nil) {
		out = q.place(out, j.room, r, m, now)
	}
	return out
}

// forget drops room's sequence; a read in flight finds it gone.
func (q *roomSeq) forget(room string) {
	delete(q.rooms, room)
	delete(q.waiting, room)
}

// continues reports whether the messages at pos continue r's sequence
// exactly, and if so moves r past them. A room's first message, or one of
// another epoch (its stream was made anew), starts the sequence.
func (r *seqRoom) continues(pos []*protocol.Position) bool {
	epoch, next := r.epoch, r.next
	for _, p := range pos {
		if p.GetStream() != protocol.StreamRoom || p.GetEpoch() == 0 {
			continue // in no stream: it goes as it comes
		}
		if next == 0 || p.GetEpoch() != epoch {
			epoch, next = p.GetEpoch(), p.GetOffset()
		}
		if p.GetOffset() != next {
			return false
		}
		next++
	}
	r.epoch, r.next = epoch, next
	return true
}

// place sorts one message into room's sequence for its reliable members.
func (q *roomSeq) place(out []roomJob, room string, r *seqRoom, m relMsg, now time.Time) []roomJob {
	p := m.pos
	if p.GetStream() != protocol.StreamRoom || p.GetEpoch() == 0 {
		return emit(out, room, r.to, m)
	}
	if r.next == 0 || p.GetEpoch() != r.epoch {
		// A new sequence: what the old one holds goes out as it is.
		out = q.pass(out, room, r)
		r.epoch, r.next = p.GetEpoch(), p.GetOffset()
	}
	switch off := p.GetOffset(); {
	case off < r.next:
		return out // sent already
	case off == r.next:
		out = emit(out, room, r.to, m)
		r.next++
		return q.drain(out, room, r)
	}
	i, found := slices.BinarySearchFunc(r.held, p.GetOffset(), func(h relMsg, off uint64) int {
		return cmpOffset(h.pos.GetOffset(), off)
	})
	if found {
		return out
	}
	if len(r.held) == 0 {
		r.since = now
		q.waiting[room] = r
	}
	r.held = slices.Insert(r.held, i, m)
	if len(r.held) > roomSeqMaxHeld {
		out = q.pass(out, room, r)
	}
	return out
}

func cmpOffset(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// drain sends the held messages r.next now reaches.
func (q *roomSeq) drain(out []roomJob, room string, r *seqRoom) []roomJob {
	n := 0
	for ; n < len(r.held); n++ {
		off := r.held[n].pos.GetOffset()
		if off > r.next {
			break
		}
		if off == r.next {
			out = emit(out, room, r.to, r.held[n])
			r.next++
		}
	}
	if n > 0 {
		clear(r.held[:n])
		r.held = r.held[n:]
		if len(r.held) == 0 {
			r.held = nil
			delete(q.waiting, room)
			if q.applying {
				q.s.metrics.roomGapRead.Inc()
			} else {
				q.s.metrics.roomGapFilled.Inc()
			}
		}
	}
	return out
}

// pass gives up r's gap: what it holds goes to the reliable members as
// it is, in order, and each member's own sequencer fills or reports the
// gap.
func (q *roomSeq) pass(out []roomJob, room string, r *seqRoom) []roomJob {
	if len(r.held) == 0 {
		return out
	}
	q.s.metrics.roomGapPassed.Inc()
	for _, m := range r.held {
		out = emit(out, room, r.to, m)
	}
	r.next = r.held[len(r.held)-1].pos.GetOffset() + 1
	r.held = nil
	delete(q.waiting, room)
	return out
}

// emit appends m for room's members to (toReliable, or toAll when the
// room had no plain member) to out: to the frame out ends with when emit
// made it for this room and audience and it has room, else in a new one.
func emit(out []roomJob, room string, to audience, m relMsg) []roomJob {
	size := protocol.HeaderSize + len(m.body)
	if n := len(out); n > 0 && out[n-1].seq && out[n-1].to == to && out[n-1].room == room && len(out[n-1].f.tcp)+size <= maxRoomMergeBytes {
		f := out[n-1].f
		f.tcp = protocol.AppendFrame(f.tcp, protocol.Version, m.op, 0, m.body)
		f.ids, f.pos = append(f.ids, m.id), append(f.pos, m.pos)
		f.ws = nil // made by fanOut when a plain member needs it (frame.wsBytes)
		return out
	}
	f := &frame{tcp: protocol.AppendFrame(make([]byte, 0, size), protocol.Version, m.op, 0, m.body), ids: []string{m.id}, pos: []*protocol.Position{m.pos}}
	return append(out, roomJob{room: room, f: f, to: to, seq: true})
}

// sealWS makes the WebSocket message of every frame emit built for
// every member: its one frame, or an op-9 carrier of its frames, as job
// would have sent them.
func sealWS(out []roomJob) {
	for _, j := range out {
		if !j.seq || j.to != toAll || j.f.ws != nil {
			continue
		}
		if len(j.f.ids) == 1 {
			j.f.ws = appendWSHeader(nil, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(j.f.tcp))})
			j.f.ws = append(j.f.ws, j.f.tcp...)
			continue
		}
		j.f.ws = appendWS(nil, &protocol.Proto{Ver: protocol.Version, Op: protocol.OpRaw, Body: j.f.tcp})
	}
}

// expire starts a read for every room whose gap waited its time.
func (q *roomSeq) expire(now time.Time) {
	for room, r := range q.waiting {
		if !r.reading && now.Sub(r.since) >= q.wait {
			q.startRead(room, r)
		}
	}
}

// arm sets the timer for the first end of wait among the waiting rooms
// that are not reading.
func (q *roomSeq) arm(now time.Time) {
	var first time.Time
	for _, r := range q.waiting {
		if r.reading {
			continue
		}
		if end := r.since.Add(q.wait); first.IsZero() || end.Before(first) {
			first = end
		}
	}
	if first.IsZero() {
		q.timer.Stop()
		return
	}
	q.timer.Reset(max(first.Sub(now), 0))
}

// startRead reads room's stream after r.next-1 on a goroutine of its own
// (one per room at most, fetchWorkers of them reading at once), which
// sends the result to q.reads.
func (q *roomSeq) startRead(room string, r *seqRoom) {
	r.reading = true
	epoch, after := r.epoch, r.next-1
	s := q.s
	s.goFunc(func() { // false at shutdown: the room is not read
		rd := roomRead{room: room, seq: r, epoch: epoch, after: after}
		select {
		case s.roomReads <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		rd.reply, rd.err = s.readRoomStream(room, epoch, after)
		<-s.roomReads
		select {
		case q.reads <- rd:
		case <-s.ctx.Done():
		}
	})
}

// readRoomStream reads one page of room's stream after (epoch, after),
// under the logic timeout and ending with shutdown.
func (s *Server) readRoomStream(room string, epoch, after uint64) (*logicpb.ReadStreamReply, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Logic.Timeout.D())
	defer cancel()
	return s.logic.client.ReadStream(ctx, &logicpb.ReadStreamReq{Stream: protocol.StreamRoom, Room: room, Epoch: epoch, After: after, Limit: fetchLimit})
}

const msgRoomReadFailed = "comet: reading a room's stream failed; its reliable members read it themselves"

// apply sorts what a read returned into its room's sequence.
func (q *roomSeq) apply(out []roomJob, rd roomRead, now time.Time) []roomJob {
	out = q.applyRead(out, rd, now)
	sealWS(out)
	return out
}

func (q *roomSeq) applyRead(out []roomJob, rd roomRead, now time.Time) []roomJob {
	r := q.rooms[rd.room]
	if r == nil || r != rd.seq || !r.reading {
		return out // forgotten meanwhile
	}
	r.reading = false
	r.to = toAll
	if _, _, plain := q.s.rooms.lookup(rd.room); plain {
		r.to = toReliable
	}
	if r.epoch != rd.epoch || len(r.held) == 0 {
		if len(r.held) > 0 {
			r.since = now // another epoch began: its own gap waits anew
		}
		return out
	}
	reply := rd.reply
	switch {
	case rd.err != nil:
		q.s.metrics.roomReadError.Inc()
		q.s.warns.Warn(q.s.log, msgRoomReadFailed, "room", rd.room, "err", rd.err)
		return q.pass(out, rd.room, r)
	case !follows(reply, rd.epoch, rd.after) || (len(reply.GetEntries()) == 0 && reply.GetTop() >= r.next):
		// The stream no longer holds the missing offsets (trimmed, made
		// anew, gone), or logic returns none of them.
		return q.pass(out, rd.room, r)
	}
	q.applying = true
	for _, e := range reply.GetEntries() {
		if len(r.held) == 0 {
			break // filled
		}
		m := relMsg{id: e.GetMsgId(), pos: &protocol.Position{Stream: protocol.StreamRoom, Epoch: rd.epoch, Offset: e.GetOffset()}, op: e.GetOp(), body: e.GetBody()}
		out = q.place(out, rd.room, r, m, now)
	}
	q.applying = false
	if len(r.held) == 0 {
		return out
	}
	if len(reply.GetEntries()) >= fetchLimit {
		q.startRead(rd.room, r) // a full page: there is more to read
	} else {
		r.since = now // the rest was appended after the read: it may still come live
	}
	return out
}
