package comet

import (
	"context"
	"fmt"
	"sync"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
)

// Fetches read a reliable connection's streams from logic (ReadStream):
// the auth's recovery and the filling of gaps (reliable.go). They run on
// a fixed pool of fetch workers fed by a FIFO of channels, not on a
// goroutine per message or per connection: a channel is in the queue at
// most once (reliable.queued), so the queue holds at most the comet's
// reliable connections (bounded by limits.max_conns) and never refuses
// one: a mass reconnect of reliable clients (their comet died) waits its
// turn instead of being closed and reconnecting again. Its worker reads
// every stream of it that needs reading, page by page, until they are
// caught up. A channel whose read fails is closed (logic_error): its
// client reconnects and recovers from its streams. A closed channel's
// fetch stops before its next read, and the reads in flight end with
// shutdown.
const (
	// fetchWorkers is the reads in flight per comet: a read waits on
	// logic and Redis, not on this comet's CPU.
	fetchWorkers = 32
	// fetchLimit is the entries one read asks for (logic caps it at its
	// stream.max_read).
	fetchLimit = 256
)

// fetchQueue is the FIFO of channels waiting for a fetch worker.
type fetchQueue struct {
	mu   sync.Mutex
	q    []*Channel
	wake chan struct{} // a token per push, up to fetchWorkers waiting
}

func newFetchQueue() *fetchQueue { return &fetchQueue{wake: make(chan struct{}, fetchWorkers)} }

// push adds c and wakes a worker.
func (f *fetchQueue) push(c *Channel) {
	f.mu.Lock()
	f.q = append(f.q, c)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default: // every worker has a token already
	}
}

// pop takes the oldest channel, nil when none waits.
func (f *fetchQueue) pop() *Channel {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.q) == 0 {
		return nil
	}
	c := f.q[0]
	f.q[0] = nil
	f.q = f.q[1:]
	if len(f.q) == 0 {
		f.q = nil // give a burst's memory back
	}
	return c
}

// fetchWorker runs the fetches queued on s.fetches until shutdown.
func (s *Server) fetchWorker() {
	for {
		if c := s.fetches.pop(); c != nil {
			c.runFetch()
			continue
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.fetches.wake:
		}
	}
}

// startFetch queues the channel for a fetch worker unless it is queued
// already (r.mu held).
func (c *Channel) startFetch(r *reliable) {
	if r.queued {
		return
	}
	r.queued = true
	c.srv.fetches.push(c)
}

// readStream reads one page of a stream for the channel, under the logic
// timeout and ending with shutdown.
func (c *Channel) readStream(k int32, room string, epoch, after uint64, limit int32) (*logicpb.ReadStreamReply, error) {
	s := c.srv
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Logic.Timeout.D())
	defer cancel()
	req := &logicpb.ReadStreamReq{Stream: k, Mid: c.mid, Key: c.key, Epoch: epoch, After: after, Limit: limit}
	if k == protocol.StreamRoom {
		req.Room = room
	}
	reply, err := s.logic.client.ReadStream(ctx, req)
	if err != nil {
		s.metrics.fetchError.Inc()
		return nil, fmt.Errorf("read %s stream: %w", protocol.StreamName(k), err)
	}
	if limit == 0 || (reply.GetRecovered() && reply.GetEpoch() == epoch) { // a state read, or one that continues
		s.metrics.fetchOK.Inc()
	} else {
		s.metrics.fetchUnrecovered.Inc()
	}
	return reply, nil
}

// fetchFailed closes a channel whose stream could not be read (a read
// that shutdown cancelled closes it for the shutdown).
func (c *Channel) fetchFailed(err error) {
	if c.srv.ctx.Err() != nil {
		c.close(ReasonShutdown)
		return
	}
	if !c.closed() {
		c.warn(msgFetchFailed, "err", err)
	}
	c.close(ReasonLogicError)
}

const msgFetchFailed = "comet: reading a reliable connection's stream failed; closing it"

// runFetch is a fetch worker's turn with the channel: the auth's recovery
// if it is due, then every stream marked fetching, until none is.
func (c *Channel) runFetch() {
	r := c.rel
	r.mu.Lock()
	initial := r.initial != nil
	r.mu.Unlock()
	if initial && !c.recoverStreams() {
		return
	}
	for {
		if c.closed() {
			return
		}
		r.mu.Lock()
		k := r.nextFetch()
		if k == protocol.StreamNone {
			r.queued = false
			r.mu.Unlock()
			return
		}
		st := &r.st[k]
		epoch, after, seen0 := st.epoch, st.last, st.seen
		st.again = false
		room, gen := r.room, r.roomGen
		r.mu.Unlock()

		reply, err := c.readStream(k, room, epoch, after, fetchLimit)
		if err != nil {
			c.fetchFailed(err)
			return
		}
		r.mu.Lock()
		if k != protocol.StreamRoom || r.roomGen == gen {
			c.applyFetch(r, k, epoch, after, seen0, reply)
		}
		r.mu.Unlock()
	}
}

// nextFetch returns a stream to fetch, or StreamNone (r.mu held).
func (r *reliable) nextFetch() int32 {
	for k := protocol.StreamUser; k <= protocol.StreamRoom; k++ {
		if st := &r.st[k]; st.fetching && !st.hold {
			return k
		}
	}
	return protocol.StreamNone
}

// follows reports whether reply continues a reader at (epoch, after)
// without a gap.
func follows(reply *logicpb.ReadStreamReply, epoch, after uint64) bool {
	e := reply.GetEntries()
	return reply.GetRecovered() && reply.GetEpoch() == epoch && (len(e) == 0 || e[0].GetOffset() == after+1)
}

// startOf is the offset before reply's first entry (the stream's top when
// it has none): where a reader that could not continue starts again.
func startOf(reply *logicpb.ReadStreamReply) uint64 {
	if e := reply.GetEntries(); len(e) > 0 {
		return e[0].GetOffset() - 1
	}
	return reply.GetTop()
}

// applyFetch writes what a read of stream k after (epoch, after) returned
// and ends the fetch of k when it has caught up (r.mu held): the stream's
// top reached, and no live message arrived during the read that the read
// may not hold (a new seen, or one of another epoch).
func (c *Channel) applyFetch(r *reliable, k int32, epoch, after, seen0 uint64, reply *logicpb.ReadStreamReply) {
	st := &r.st[k]
	if reply.GetEpoch() == 0 { // logic keeps no such stream (any more)
		*st = streamState{}
		c.relEmit(r, c.streamsFrame(streamReport(k, 0, 0, false)))
		return
	}
	if !follows(reply, epoch, after) {
		st.epoch, st.last = reply.GetEpoch(), startOf(reply)
		st.seen, seen0 = 0, 0
		c.relEmit(r, c.streamsFrame(streamReport(k, reply.GetEpoch(), reply.GetTop(), false)))
	}
	c.writeEntries(r, k, reply)
	if len(reply.GetEntries()) == 0 && st.last < reply.GetTop() {
		// Logic reports messages it returns none of: nothing can fill
		// the gap.
		st.last = reply.GetTop()
		c.relEmit(r, c.streamsFrame(streamReport(k, st.epoch, st.last, false)))
	}
	if st.last >= reply.GetTop() && !st.again && st.seen == seen0 {
		st.fetching, st.seen = false, 0
	}
}

// writeEntries writes a read's entries the client has not had (r.mu
// held).
func (c *Channel) writeEntries(r *reliable, k int32, reply *logicpb.ReadStreamReply) {
	st := &r.st[k]
	for _, e := range reply.GetEntries() {
		if e.GetOffset() <= st.last {
			continue
		}
		m := relMsg{id: e.GetMsgId(), pos: &protocol.Position{Stream: k, Epoch: st.epoch, Offset: e.GetOffset()}, op: e.GetOp(), body: e.GetBody()}
		c.relEmit(r, c.envelopeFor(m))
		st.last = e.GetOffset()
	}
}

// streamRead is one stream's first read at auth.
type streamRead struct {
	k       int32
	after   uint64
	matched bool // the client's since named this epoch
	reply   *logicpb.ReadStreamReply
}

// recoverStreams is the auth's recovery, run once after the channel was
// registered: the first read of each stream logic keeps for it decides
// whether the client's since is recovered (the since's epoch is the
// stream's and its messages after since.offset are all held); op 20
// reports every stream, then the recovered messages follow, then the
// frames that arrived meanwhile, then live. Streams not caught up by the
// first read stay fetching. It reports false when the channel closed.
func (c *Channel) recoverStreams() bool {
	r := c.rel
	r.mu.Lock()
	in := r.initial
	room, gen := r.room, r.roomGen
	r.mu.Unlock()
	var reads []streamRead
	for k := protocol.StreamUser; k <= protocol.StreamRoom; k++ {
		if !in.tracked[k] {
			continue
		}
		rd := streamRead{k: k, after: in.top[k]}
		if s := in.since[k]; s != nil && s.GetEpoch() == in.epoch[k] && s.GetOffset() <= in.top[k] {
			rd.after, rd.matched = s.GetOffset(), true
		}
		var err error
		if rd.reply, err = c.readStream(k, room, in.epoch[k], rd.after, fetchLimit); err != nil {
			c.fetchFailed(err)
			return false
		}
		reads = append(reads, rd)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if c.closed() {
		return false
	}
	states := make([]protocol.StreamState, 0, len(reads))
	for i := range reads {
		rd := &reads[i]
		if rd.k == protocol.StreamRoom && r.roomGen != gen {
			rd.reply = nil // a room change replaced the stream and reports it itself
			continue
		}
		st := &r.st[rd.k]
		if rd.reply.GetEpoch() == 0 {
			*st = streamState{}
			states = append(states, streamReport(rd.k, 0, 0, false))
			rd.reply = nil
			continue
		}
		ok := follows(rd.reply, in.epoch[rd.k], rd.after)
		st.epoch, st.last = rd.reply.GetEpoch(), rd.after
		if !ok {
			st.last, st.seen = startOf(rd.reply), 0
		}
		states = append(states, streamReport(rd.k, st.epoch, rd.reply.GetTop(), ok && rd.matched))
	}
	c.relWrite(c.streamsFrame(states...))
	r.ready = true // frames go out from here on, in the order they are written
	for _, rd := range reads {
		if rd.reply == nil {
			continue
		}
		st := &r.st[rd.k]
		c.writeEntries(r, rd.k, rd.reply)
		if st.last >= rd.reply.GetTop() && !st.again && st.seen <= st.last {
			st.fetching, st.seen = false, 0
		}
	}
	for i, b := range r.pending {
		c.relWrite(b)
		r.pending[i] = nil
	}
	r.pending, r.initial = nil, nil
	return true
}

// startReliable runs once the auth reply went out: it counts the
// connection and queues the auth's recovery.
func (c *Channel) startReliable() {
	c.srv.metrics.reliable.Inc()
	r := c.rel
	r.counted = true
	r.mu.Lock()
	c.startFetch(r)
	r.mu.Unlock()
}

// changeRoomReliable is op 12 on a reliable connection: the room stream
// follows the room. Joining a recoverable room (logic answers its state
// with an epoch) the client gets op 13, then op 20 with the room stream's
// position (recovered false: what the room said before is not replayed),
// then the room's pushes after that position. Leaving a room forgets its
// stream.
func (c *Channel) changeRoomReliable(p *protocol.Proto) error {
	id := string(p.Body)
	r := c.rel
	same := (c.room == nil && id == "") || (c.room != nil && c.room.id == id)
	if !same {
		r.mu.Lock()
		r.room, r.roomGen = "", r.roomGen+1
		r.st[protocol.StreamRoom] = streamState{fetching: id != "", hold: id != ""}
		r.mu.Unlock()
	}
	if err := c.changeRoom(id); err != nil {
		return err // no op 13: the connection closes with the reason
	}
	var state *logicpb.ReadStreamReply
	if !same && id != "" {
		var err error
		offStack(func() { state, err = c.readStream(protocol.StreamRoom, id, 0, 0, 0) })
		if err != nil {
			c.warn(msgRoomStateFailed, "room", id, "err", err)
		}
	}
	reply := c.encodeReply(&protocol.Proto{Ver: p.Ver, Op: protocol.OpChangeRoomReply, Seq: p.Seq, Body: p.Body})
	r.mu.Lock()
	defer r.mu.Unlock()
	c.relEmit(r, reply)
	if same {
		return nil
	}
	r.room = id
	st := &r.st[protocol.StreamRoom]
	if state.GetEpoch() == 0 { // no room, not recoverable, or its state unknown
		*st = streamState{}
		return nil
	}
	st.epoch, st.last, st.hold = state.GetEpoch(), state.GetTop(), false
	c.relEmit(r, c.streamsFrame(streamReport(protocol.StreamRoom, st.epoch, st.last, false)))
	if st.again || st.seen > st.last {
		c.startFetch(r)
	} else {
		st.fetching, st.seen = false, 0
	}
	return nil
}

const msgRoomStateFailed = "comet: reading a room stream's state failed; the stream is read from its start at the room's next push"
