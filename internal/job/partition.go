package job

import (
	"container/heap"
	"context"
	"hash/maphash"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	cometpb "github.com/goim/goim/api/comet"
	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/job/cometpool"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

// entry is one Kafka message between its dispatch and the end of every
// comet call it needs. Its offset may be committed once it and every
// message before it in the partition have finished.
type entry struct {
	offset int64
	left   atomic.Int32 // comet calls (or room batches) not yet ended
}

// partition processes one claimed partition. Everything but the atomic
// counters is owned by the goroutine running run (sarama's ConsumeClaim),
// so it needs no lock; comet calls end on the pool's goroutines and only
// decrement counters and nudge wake.
//
// At least once: a message's offset is marked only when it and every
// earlier message of the partition finished (delivered to every comet it
// targets, or lost with a counted reason; deferred rather than lost when
// every target of a failed call has the message in its stream, where a
// reliable client recovers it), and marked offsets are committed
// every commit_interval and when the partition is handed back.
type partition struct {
	j       *Job
	sess    sarama.ConsumerGroupSession
	topic   string
	id      int32
	lag     prometheus.Gauge // goim_job_consumer_lag of this partition
	hwm     func() int64     // the partition's high water mark (claim.HighWaterMarkOffset)
	pending []*entry
	marked  int64 // next offset to consume, as marked; -1 before the first
	dirty   bool  // marked since the last commit

	rooms map[string]*roomState
	open  dueBatches // rooms with an open batch, the one due first on top
	timer *time.Timer
	wake  chan struct{} // capacity 1: a comet call ended
}

// roomState is one room's batching in one partition (Kafka keys ROOM
// pushes by room, so a room lives in one partition).
type roomState struct {
	id      string
	shard   uint32
	batch   *protocol.Batch // open batch; nil when none
	entries []*entry        // the messages in batch
	// ids and pos are the msg ids and positions of the messages in batch,
	// aligned with entries; each stays nil until a message of the batch
	// has one (the earlier ones then get "" or a zero Position), so a
	// batch of messages without either allocates neither.
	ids      []string
	pos      []*protocol.Position
	opened   time.Time
	sent     time.Time    // when the previous batch was sent; zero before the first
	gen      uint64       // incremented per batch, to recognise stale openBatch refs
	inflight atomic.Int32 // batches sent and not yet ended
}

// openBatch is a room's open batch in the partition's timer heap: it is
// sent at due at the latest.
type openBatch struct {
	r   *roomState
	gen uint64
	due time.Time
}

// dueBatches is a min-heap of open batches by due time (container/heap).
type dueBatches []openBatch

func (h dueBatches) Len() int           { return len(h) }
func (h dueBatches) Less(i, k int) bool { return h[i].due.Before(h[k].due) }
func (h dueBatches) Swap(i, k int)      { h[i], h[k] = h[k], h[i] }
func (h *dueBatches) Push(x any)        { *h = append(*h, x.(openBatch)) }
func (h *dueBatches) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = openBatch{}
	*h = old[:len(old)-1]
	return x
}

func newPartition(j *Job, sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) *partition {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &partition{
		j: j, sess: sess, topic: claim.Topic(), id: claim.Partition(),
		lag:    j.metrics.lag.WithLabelValues(strconv.Itoa(int(claim.Partition()))),
		hwm:    claim.HighWaterMarkOffset,
		marked: -1,
		rooms:  make(map[string]*roomState),
		timer:  t,
		wake:   make(chan struct{}, 1),
	}
}

// run consumes msgs until the claim ends (a rebalance or shutdown), then
// flushes the open room batches, waits for what is in flight (bounded) and
// commits.
func (p *partition) run(msgs <-chan *sarama.ConsumerMessage) {
	cfg := p.j.cfg.Kafka
	commit := time.NewTicker(cfg.CommitInterval.D())
	defer commit.Stop()
	defer p.timer.Stop()
	done := p.sess.Context().Done()
loop:
	for {
		in := msgs
		if len(p.pending) >= cfg.MaxInflight {
			in = nil // wait for the oldest to finish
		}
		select {
		case m, ok := <-in:
			if !ok {
				break loop
			}
			p.handle(m)
		case <-p.wake:
			p.advance()
			p.flushIdle(time.Now())
		case <-p.timer.C:
			p.flushDue(time.Now())
		case <-commit.C:
			p.advance()
			p.commit()
			p.sweepRooms()
		case <-done:
			break loop
		case <-p.j.abort:
			return // a simulated crash: no flush, no commit
		}
	}
	p.drain()
}

// drain flushes the open batches, waits until every dispatched message has
// finished (at most half the rebalance timeout, and not past the shutdown
// deadline), then marks and commits what finished.
func (p *partition) drain() {
	for _, ob := range p.open {
		if ob.r.gen == ob.gen {
			p.flush(ob.r)
		}
	}
	p.open = nil
	ctx, cancel := context.WithTimeout(p.j.drainCtx, p.j.cfg.Kafka.RebalanceTimeout.D()/2)
	defer cancel()
	for p.advance(); len(p.pending) > 0; p.advance() {
		select {
		case <-p.wake:
		case <-ctx.Done():
			p.j.log.Warn("job: partition handed back with pushes in flight; the next owner delivers them again",
				"partition", p.id, "in_flight", len(p.pending))
			p.commit()
			return
		case <-p.j.abort:
			return
		}
	}
	p.commit()
}

// handle dispatches one Kafka message.
func (p *partition) handle(m *sarama.ConsumerMessage) {
	j := p.j
	j.metrics.consumed.Inc()
	p.lag.Set(float64(max(p.hwm()-m.Offset-1, 0)))
	e := &entry{offset: m.Offset}
	p.pending = append(p.pending, e)
	j.metrics.inflight.Inc()
	var pm logicpb.PushMsg
	if err := proto.Unmarshal(m.Value, &pm); err != nil {
		p.skip(e, "undecodable")
		return
	}
	if age := j.cfg.Kafka.MaxAge.D(); age > 0 && !m.Timestamp.IsZero() && time.Since(m.Timestamp) > age {
		j.metrics.expired.Inc()
		p.finish(e)
		return
	}
	switch pm.GetType() {
	case logicpb.PushMsg_PUSH:
		p.push(e, &pm)
	case logicpb.PushMsg_ROOM:
		p.room(e, &pm)
	case logicpb.PushMsg_BROADCAST:
		p.broadcast(e, &pm)
	default:
		p.skip(e, "unknown_type")
	}
}

// skip finishes a message that cannot be delivered, counted by reason.
func (p *partition) skip(e *entry, reason string) {
	p.j.metrics.invalid.WithLabelValues(reason).Inc()
	p.finish(e)
}

// finish ends one part of e (a message with no parts is finished at once).
func (p *partition) finish(e *entry) {
	if e.left.Load() == 0 || e.left.Add(-1) == 0 {
		p.j.metrics.finished.Inc()
		p.j.metrics.inflight.Dec()
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// partDone returns the done func of a call carrying one part of e to
// targets at positions pos (aligned with the call's targets, or empty).
func (p *partition) partDone(e *entry, pos []*protocol.Position) func(cometpool.Outcome) {
	return func(o cometpool.Outcome) {
		if o != cometpool.Delivered {
			p.j.metrics.failed(o.String(), pos, 1)
		}
		p.finish(e)
	}
}

// pushDone is partDone for a PUSH call of push id to g's keys: a failed
// call whose every key has the push in a stream (deferred) is also
// reported to logic, so that the targets' receipts say so.
func (p *partition) pushDone(e *entry, id string, g keyGroup) func(cometpool.Outcome) {
	return func(o cometpool.Outcome) {
		if o != cometpool.Delivered && p.j.metrics.failed(o.String(), g.pos, 1) {
			p.j.deferrals.pushTargets(id, g.keys, g.mids, g.pos)
		}
		p.finish(e)
	}
}

// Streams a position may name, by message type (bit 1<<stream).
const (
	pushStreams = 1<<protocol.StreamUser | 1<<protocol.StreamKey
	roomStreams = 1 << protocol.StreamRoom
)

// positions returns pm's positions when there are n of them, each of the
// streams in kinds (or in none: stream 0 with epoch and offset 0); nil
// when pm has none or when they do not fit: the message then goes without
// positions, counted invalid (bad_positions).
func (p *partition) positions(pm *logicpb.PushMsg, n int, kinds uint) []*protocol.Position {
	pos := pm.GetPositions()
	if len(pos) == 0 {
		return nil
	}
	ok := len(pos) == n
	for i := 0; ok && i < len(pos); i++ {
		ok = validPosition(pos[i], kinds)
	}
	if !ok {
		p.j.metrics.invalid.WithLabelValues("bad_positions").Inc()
		return nil
	}
	return pos
}

// validPosition reports whether x is a position in one of the streams in
// kinds (a non-zero epoch and an offset from 1), or in none.
func validPosition(x *protocol.Position, kinds uint) bool {
	switch s := x.GetStream(); {
	case x == nil:
		return false
	case s == protocol.StreamNone:
		return x.GetEpoch() == 0 && x.GetOffset() == 0
	default:
		return s > 0 && s < 32 && kinds&(1<<s) != 0 && x.GetEpoch() != 0 && x.GetOffset() != 0
	}
}

// inStreams reports whether every position of pos names a stream (so its
// target can recover the message from there): false for none.
func inStreams(pos []*protocol.Position) bool {
	for _, x := range pos {
		if x.GetStream() == protocol.StreamNone {
			return false
		}
	}
	return len(pos) > 0
}

// msgID returns pm's msg id, or "" when it is not 32 hex digits (counted
// invalid, bad_msg_id: the message goes without it).
func (p *partition) msgID(pm *logicpb.PushMsg) string {
	id := pm.GetMsgId()
	if id == "" {
		return ""
	}
	if _, ok := protocol.ParseMsgID(id); !ok {
		p.j.metrics.invalid.WithLabelValues("bad_msg_id").Inc()
		return ""
	}
	return id
}

// carrier frames one message as goim v2 does for a push: an op-9 carrier
// holding one inner frame (ver 1, op, seq 0, body).
func carrier(op int32, msg []byte) (*protocol.Proto, error) {
	b := protocol.NewBatch(protocol.HeaderSize + len(msg))
	if err := b.Append(op, msg); err != nil {
		return nil, err
	}
	return &protocol.Proto{Ver: 1, Op: protocol.OpRaw, Body: b.Frames()}, nil
}

// keyGroup is the keys of a PUSH that go to one shard's worker, with
// their positions and member ids (each aligned with keys, or nil).
type keyGroup struct {
	shard uint32
	keys  []string
	pos   []*protocol.Position
	mids  []int64
}

// push sends a PUSH to its comet, the keys split by shard so that one
// key's pushes always take the same worker, in Kafka order, each key with
// its position.
func (p *partition) push(e *entry, pm *logicpb.PushMsg) {
	j := p.j
	keys := pm.GetKeys()
	if pm.GetServer() == "" || len(keys) == 0 {
		p.skip(e, "no_target")
		return
	}
	body, err := carrier(pm.GetOperation(), pm.GetMsg())
	if err != nil {
		p.skip(e, "too_large")
		return
	}
	id := p.msgID(pm)
	pos := p.positions(pm, len(keys), pushStreams)
	// The member of each key, for the reports of deferred deliveries only:
	// ignored unless there is one per key and the push is in streams.
	mids := pm.GetMids()
	if len(mids) != len(keys) || pos == nil {
		mids = nil
	}
	shards := uint32(j.cfg.Comet.Shards)
	var groups []keyGroup
	if len(keys) == 1 || shards == 1 {
		groups = []keyGroup{{shard: j.shard(keys[0]) % shards, keys: keys, pos: pos, mids: mids}}
	} else {
		at := make(map[uint32]int, 1) // shard -> its group in groups
		for i, k := range keys {
			s := j.shard(k) % shards
			g, ok := at[s]
			if !ok {
				g = len(groups)
				at[s] = g
				groups = append(groups, keyGroup{shard: s})
			}
			groups[g].keys = append(groups[g].keys, k)
			if pos != nil {
				groups[g].pos = append(groups[g].pos, pos[i])
			}
			if mids != nil {
				groups[g].mids = append(groups[g].mids, mids[i])
			}
		}
	}
	e.left.Store(int32(len(groups)))
	j.metrics.dispatchedPush.Inc()
	for _, g := range groups {
		j.pool.Send(pm.GetServer(), g.shard, &cometpool.Call{
			Push: &cometpb.PushMsgReq{Keys: g.keys, Proto: body, ProtoOp: pm.GetOperation(), MsgId: id, Positions: g.pos},
			Done: p.pushDone(e, id, g),
		})
	}
}

// broadcast sends a BROADCAST to every comet, the speed split evenly and
// rounded up, so each comet paces at least 1 connection per second and
// the cluster at least speed (never 0 = unpaced by integer division). It
// goes on each comet's broadcast worker, never one of key or room pushes.
func (p *partition) broadcast(e *entry, pm *logicpb.PushMsg) {
	j := p.j
	body, err := carrier(pm.GetOperation(), pm.GetMsg())
	if err != nil {
		p.skip(e, "too_large")
		return
	}
	id := p.msgID(pm)
	_ = p.positions(pm, 0, 0) // a broadcast is in no stream: any position is counted bad
	hosts := j.pool.Hosts()
	j.metrics.dispatchedBroadcast.Inc()
	if len(hosts) == 0 {
		j.metrics.lost.WithLabelValues("no_comets").Inc()
		p.finish(e)
		return
	}
	speed := pm.GetSpeed()
	if speed > 0 {
		speed = int32((int64(speed) + int64(len(hosts)) - 1) / int64(len(hosts)))
	}
	e.left.Store(int32(len(hosts)))
	for _, h := range hosts {
		j.pool.Send(h, 0, &cometpool.Call{
			Broadcast: &cometpb.BroadcastReq{ProtoOp: pm.GetOperation(), Proto: body, Speed: speed, MsgId: id},
			Done:      p.partDone(e, nil),
		})
	}
}

// room adds a ROOM push to its room's batch; the batch goes at once when
// it is full, or when the room has none in flight and its previous batch
// left linger ago or more (see RoomConfig).
func (p *partition) room(e *entry, pm *logicpb.PushMsg) {
	j := p.j
	id := pm.GetRoom()
	if id == "" {
		p.skip(e, "no_target")
		return
	}
	if protocol.HeaderSize+len(pm.GetMsg()) > protocol.MaxPackLen {
		p.skip(e, "too_large")
		return
	}
	msgID := p.msgID(pm)
	var pos *protocol.Position
	if ps := p.positions(pm, 1, roomStreams); ps != nil {
		pos = ps[0]
	}
	r := p.rooms[id]
	if r == nil {
		r = &roomState{id: id, shard: j.shard(id) % uint32(j.cfg.Comet.Shards)}
		p.rooms[id] = r
	}
	size := protocol.HeaderSize + len(pm.GetMsg())
	if r.batch != nil && r.batch.Len()+size > j.cfg.Room.MaxBytes {
		p.flush(r)
	}
	now := time.Now()
	if r.batch == nil {
		r.batch = protocol.NewBatch(min(size*4, j.cfg.Room.MaxBytes))
		r.opened = now
		r.gen++
		due := now.Add(j.cfg.Room.Window.D())
		if next := r.sent.Add(j.cfg.Room.Linger.D()); next.After(due) {
			due = next
		}
		p.schedule(openBatch{r: r, gen: r.gen, due: due})
	}
	_ = r.batch.Append(pm.GetOperation(), pm.GetMsg()) // size checked above
	e.left.Store(1)
	r.add(msgID, pos)
	r.entries = append(r.entries, e)
	if r.batch.Count() >= j.cfg.Room.MaxFrames || r.batch.Len() >= j.cfg.Room.MaxBytes || p.idle(r, now) {
		p.flush(r)
	}
}

// add records the id and position of the message appended to r's batch,
// before its entry is: ids and pos stay nil while no message has one.
func (r *roomState) add(id string, pos *protocol.Position) {
	n := len(r.entries) // messages before this one
	if id != "" && r.ids == nil {
		r.ids = make([]string, n, n+1)
	}
	if r.ids != nil {
		r.ids = append(r.ids, id)
	}
	if pos != nil && r.pos == nil {
		r.pos = make([]*protocol.Position, n, n+1)
		for i := range n {
			r.pos[i] = &protocol.Position{}
		}
	}
	if r.pos != nil {
		if pos == nil {
			pos = &protocol.Position{}
		}
		r.pos = append(r.pos, pos)
	}
}

// idle reports whether r's open batch may go now: none of its batches is
// in flight and its previous batch left linger ago or more. A quiet room
// is always idle, so its pushes wait for nothing.
func (p *partition) idle(r *roomState, now time.Time) bool {
	return r.inflight.Load() == 0 && now.Sub(r.sent) >= p.j.cfg.Room.Linger.D()
}

// schedule adds an open batch to the timer heap, re-arming the timer when
// it is now the first due.
func (p *partition) schedule(ob openBatch) {
	heap.Push(&p.open, ob)
	if p.open[0].gen == ob.gen && p.open[0].r == ob.r {
		p.timer.Reset(time.Until(ob.due))
	}
}

// flush sends r's open batch to every comet as one BroadcastRoom, with
// the msg ids and positions of its messages when any has one. Its
// messages finish when every comet's call has ended.
func (p *partition) flush(r *roomState) {
	j := p.j
	batch, entries, ids, pos := r.batch, r.entries, r.ids, r.pos
	if batch == nil {
		return
	}
	r.batch, r.entries, r.ids, r.pos = nil, nil, nil, nil
	r.gen++ // the openBatch ref, if still queued, is stale now
	r.sent = time.Now()
	j.metrics.roomBatch.Observe(float64(len(entries)))
	j.metrics.dispatchedRoom.Add(float64(len(entries)))
	hosts := j.pool.Hosts()
	if len(hosts) == 0 {
		j.metrics.failed("no_comets", pos, len(entries))
		for _, e := range entries {
			p.finish(e)
		}
		return
	}
	r.inflight.Add(1)
	var left atomic.Int32
	left.Store(int32(len(hosts)))
	body := &protocol.Proto{Ver: 1, Op: protocol.OpRaw, Body: batch.Frames()}
	done := func(o cometpool.Outcome) {
		if o != cometpool.Delivered {
			j.metrics.failed(o.String(), pos, len(entries))
		}
		if left.Add(-1) == 0 {
			r.inflight.Add(-1)
			for _, e := range entries {
				p.finish(e)
			}
		}
	}
	for _, h := range hosts {
		j.pool.Send(h, r.shard, &cometpool.Call{Room: &cometpb.BroadcastRoomReq{RoomID: r.id, Proto: body, MsgIds: ids, Positions: pos}, Done: done})
	}
}

// flushDue flushes the batches due by now and re-arms the timer for the
// next one.
func (p *partition) flushDue(now time.Time) {
	for len(p.open) > 0 {
		ob := p.open[0]
		if ob.r.gen != ob.gen {
			heap.Pop(&p.open)
			continue
		}
		if wait := ob.due.Sub(now); wait > 0 {
			p.timer.Reset(wait)
			return
		}
		heap.Pop(&p.open)
		p.flush(ob.r)
	}
}

// flushIdle flushes the open batches of rooms that became idle (their
// previous batch ended, linger passed): the adaptive half of batching.
func (p *partition) flushIdle(now time.Time) {
	for _, ob := range p.open {
		if ob.r.gen == ob.gen && p.idle(ob.r, now) {
			p.flush(ob.r)
		}
	}
}

// advance marks the offset after the longest finished prefix of pending.
func (p *partition) advance() {
	n := 0
	for n < len(p.pending) && p.pending[n].left.Load() == 0 {
		n++
	}
	if n == 0 {
		return
	}
	p.marked = p.pending[n-1].offset + 1
	p.sess.MarkOffset(p.topic, p.id, p.marked, "")
	p.dirty = true
	p.pending = append(p.pending[:0], p.pending[n:]...)
}

// commit commits the marked offsets, if any changed.
func (p *partition) commit() {
	if !p.dirty {
		return
	}
	p.dirty = false
	p.sess.Commit()
	p.j.metrics.committed.Inc()
}

// sweepRooms forgets rooms with nothing open or in flight whose previous
// batch left linger ago or more: forgetting a room sooner would forget
// when it last sent, and its next push would go at once instead of
// waiting out the linger.
func (p *partition) sweepRooms() {
	now, linger := time.Now(), p.j.cfg.Room.Linger.D()
	for id, r := range p.rooms {
		if r.batch == nil && r.inflight.Load() == 0 && now.Sub(r.sent) >= linger {
			delete(p.rooms, id)
		}
	}
}

// shard hashes s for the choice of a comet worker.
func (j *Job) shard(s string) uint32 {
	return uint32(maphash.String(j.seed, s))
}
