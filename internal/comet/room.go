package comet

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/goim/goim/api/protocol"
)

// A room push on its way through the comet:
//
//  1. job's BroadcastRoom RPC (rpc.go) calls Server.BroadcastRoom, which
//     encodes the push once for every transport (newFrame) and queues it
//     for the room's fan-out worker; a room always goes to the same queue
//     (rooms.queue), so its pushes keep their order;
//  2. the worker (roomWorker) takes everything queued meanwhile, holds the
//     pushes of a big room whose last fan-out was moments ago until its
//     linger ends (roomPacer), and merges each room's consecutive pushes
//     into one frame (fanOut);
//  3. rooms.broadcast hands that frame to the writer of every member of
//     the room (Channel.push, writer.go), which writes it to the socket
//     inline or queues it for its write loop; in a room of minRingFanout
//     members or more, the members found idle get it through the
//     worker's io_uring instead, up to ringEntries sends per system call
//     (ringBatch, uring_fanout.go).
//
// Members join and leave from their reader goroutine: at auth (publish in
// conn.go), on op 12 (changeRoom) and at cleanup.

// roomJob is one room push waiting in a fan-out worker's queue.
type roomJob struct {
	room string
	f    *frame
	to   audience // the members it is for (roomseq.go)
	seq  bool     // the room sequencer made f (roomseq.go)
}

// BroadcastRoom queues p for every member of room. Batches for one room are
// delivered in the order the calls arrive: a room always goes to the same
// worker. It waits for room in the worker's queue until ctx ends.
func (s *Server) BroadcastRoom(ctx context.Context, room string, p *protocol.Proto) error {
	return s.broadcastRoom(ctx, room, p, nil, nil)
}

// broadcastRoom is BroadcastRoom of messages with ids and positions:
// reliable members get each message of p (each inner frame of an op-9
// carrier) as an envelope with its id and room stream position (ids and
// positions aligned with the messages; either may be empty).
func (s *Server) broadcastRoom(ctx context.Context, room string, p *protocol.Proto, ids []string, positions []*protocol.Position) error {
	f := newFrame(p)
	f.ids, f.pos = ids, positions
	return enqueueTimeout(ctx, s.ctx.Done(), s.rooms.queue(room), roomJob{room: room, f: f})
}

// Room batches that queued while a room worker was busy are merged per
// room (in order) before the fan-out, up to these bounds, so a member gets
// them in one write. This is what adapts the batching to load: a lone push
// goes out at once; while a big room's fan-out takes time, the pushes that
// arrive meanwhile share the next one.
const (
	maxRoomMerge      = 64       // batches merged into one fan-out at most
	maxRoomMergeBytes = 64 << 10 // bytes of one merged frame at most (either form)
)

// roomWorker is one fan-out worker: it takes the room pushes queued on q,
// as many as have queued up to maxRoomMerge, holds those of rooms its
// pacer holds back, and fans out the rest, until shutdown. What is held
// or queued at shutdown is not sent: the connections are closing.
func (s *Server) roomWorker(q chan roomJob) {
	pc := newRoomPacer(s.cfg.Bucket.RoomLingerFactor, s.cfg.Bucket.RoomLingerMax.D())
	defer pc.stop()
	seq := newRoomSeq(s)
	defer seq.stop()
	rb := newRingBatch(s)
	defer rb.close()
	jobs := make([]roomJob, 0, maxRoomMerge)
	for {
		jobs = jobs[:0]
		select {
		case <-s.ctx.Done():
			return
		case j := <-q:
			jobs = append(jobs, j)
		gather:
			for len(jobs) < maxRoomMerge {
				select {
				case j := <-q:
					jobs = append(jobs, j)
				default:
					break gather
				}
			}
			jobs = seq.order(jobs, time.Now())
		case rd := <-seq.reads:
			jobs = seq.apply(jobs, rd, time.Now())
		case <-seq.timer.C:
			seq.expire(time.Now())
		case <-pc.timer.C:
		}
		now := time.Now()
		jobs = pc.admit(jobs, now)
		jobs = pc.due(jobs, now)
		s.fanOut(jobs, pc, rb)
		clear(jobs)
		pc.arm()
		seq.arm(now)
	}
}

// fanOut broadcasts jobs, merging each room's consecutive frames (in
// their order) while they fit maxRoomMergeBytes, and tells pc (nil: no
// pacing) how long each room's fan-out took. Big rooms go through rb's
// io_uring (nil: the write path only). Rooms are independent: only the
// order within a room is kept. Merged jobs are set to nil frames.
func (s *Server) fanOut(jobs []roomJob, pc *roomPacer, rb *ringBatch) {
	for i := range jobs {
		first := jobs[i]
		if first.f == nil {
			continue
		}
		n, tcpLen, wsLen := 1, len(first.f.tcp), len(first.f.ws)
		last := i
		for k := i + 1; k < len(jobs); k++ {
			j := jobs[k]
			if j.f == nil || j.room != first.room {
				continue
			}
			if j.to != first.to {
				if j.to != toAll && first.to != toAll {
					continue // the other members: its order against first's does not matter
				}
				break // the room's later pushes go in a later fan-out, in order
			}
			if tcpLen+len(j.f.tcp) > maxRoomMergeBytes || wsLen+len(j.f.ws) > maxRoomMergeBytes {
				break // the rest of this room goes in a later fan-out, in order
			}
			tcpLen += len(j.f.tcp)
			wsLen += len(j.f.ws)
			n++
			last = k
		}
		f := first.f
		if n > 1 {
			f = &frame{tcp: make([]byte, 0, tcpLen), ws: make([]byte, 0, wsLen)}
			for k := i; k <= last; k++ {
				if j := jobs[k]; j.f != nil && j.room == first.room && j.to == first.to && (len(j.f.ids)+len(j.f.pos) > 0 || j.f.id != "") {
					// ids and positions stay with their frames, for
					// reliable members (frame.messages)
					f.parts = make([]*frame, 0, n)
					break
				}
			}
			for k := i; k <= last; k++ {
				if j := jobs[k]; j.f != nil && j.room == first.room && j.to == first.to {
					f.tcp = append(f.tcp, j.f.tcp...)
					f.ws = append(f.ws, j.f.ws...)
					if f.parts != nil {
						f.parts = append(f.parts, j.f)
					}
					jobs[k].f = nil
				}
			}
		}
		jobs[i].f = nil
		start := time.Now()
		queued, dropped := s.rooms.broadcast(first.room, f, first.to, rb, s.metrics)
		pc.took(first.room, start, time.Now())
		s.metrics.kindPushes("room", queued*n, dropped*n)
		s.metrics.roomMerged.Observe(float64(n))
	}
}

// roomPacer is one room worker's linger for rooms whose fan-outs are
// long: after a fan-out of a room that took d, the room's next fan-out
// waits until factor × d (at most max) after it ended, and the pushes
// arriving meanwhile are held and then go out merged, one write per
// member. A big room's fan-outs thus keep its worker busy at most
// 1/(1+factor) of the time, however fast its pushes come, and a busy
// comet (whose fan-outs take longer) merges more. Small rooms (a wait
// under minRoomLinger) and quiet rooms (their wait has passed when the
// next push comes) are never held.
type roomPacer struct {
	factor float64
	max    time.Duration
	rooms  map[string]*pacedRoom // rooms with a wait, held pushes or both
	held   map[string]*pacedRoom // the rooms of rooms holding pushes
	timer  *time.Timer           // armed for the first held room's end of wait
	swept  time.Time             // when rooms was last swept of passed waits
}

// pacedRoom is one room's wait and the pushes held for its end.
type pacedRoom struct {
	next time.Time // no fan-out before
	jobs []roomJob
}

// minRoomLinger is the shortest wait the pacer keeps: a room whose wait
// would be shorter is a small room, cheap to write to push by push.
const minRoomLinger = time.Millisecond

// roomPacerSweep is how often a pacer forgets rooms whose wait passed.
const roomPacerSweep = 10 * time.Second

func newRoomPacer(factor float64, max time.Duration) *roomPacer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &roomPacer{factor: factor, max: max, rooms: map[string]*pacedRoom{}, held: map[string]*pacedRoom{}, timer: t, swept: time.Now()}
}

func (pc *roomPacer) stop() { pc.timer.Stop() }

// admit moves the jobs of rooms in a wait, or already holding pushes,
// to those rooms' held pushes (in order), and returns the rest in order,
// in jobs' array.
func (pc *roomPacer) admit(jobs []roomJob, now time.Time) []roomJob {
	if len(pc.rooms) == 0 {
		return jobs
	}
	out := jobs[:0]
	for _, j := range jobs {
		r := pc.rooms[j.room]
		if r == nil || (len(r.jobs) == 0 && !now.Before(r.next)) {
			out = append(out, j)
			continue
		}
		if len(r.jobs) == 0 {
			pc.held[j.room] = r
		}
		r.jobs = append(r.jobs, j)
	}
	clear(jobs[len(out):])
	return out
}

// due appends to jobs the held pushes of every room whose wait ended by
// now, each room's in order, and returns jobs.
func (pc *roomPacer) due(jobs []roomJob, now time.Time) []roomJob {
	for id, r := range pc.held {
		if now.Before(r.next) {
			continue
		}
		jobs = append(jobs, r.jobs...)
		clear(r.jobs)
		r.jobs = r.jobs[:0]
		delete(pc.held, id)
	}
	if now.Sub(pc.swept) >= roomPacerSweep {
		pc.swept = now
		for id, r := range pc.rooms {
			if len(r.jobs) == 0 && now.After(r.next) {
				delete(pc.rooms, id)
			}
		}
	}
	return jobs
}

// took records that a fan-out of room ran from start to end.
func (pc *roomPacer) took(room string, start, end time.Time) {
	if pc == nil || pc.factor <= 0 {
		return
	}
	wait := min(time.Duration(pc.factor*float64(end.Sub(start))), pc.max)
	r := pc.rooms[room]
	if wait < minRoomLinger {
		// A short fan-out ends a wait that has passed, not one that a
		// longer fan-out of the same room (to its other members) set.
		if r != nil && len(r.jobs) == 0 && !end.Before(r.next) {
			delete(pc.rooms, room)
		}
		return
	}
	if r == nil {
		r = &pacedRoom{}
		pc.rooms[room] = r
	}
	r.next = later(r.next, end.Add(wait))
}

// arm sets the timer for the first end of wait among the rooms holding
// pushes.
func (pc *roomPacer) arm() {
	var first time.Time
	for _, r := range pc.held {
		if first.IsZero() || r.next.Before(first) {
			first = r.next
		}
	}
	if first.IsZero() {
		pc.timer.Stop()
		return
	}
	pc.timer.Reset(time.Until(first))
}

// Room is the set of channels in one room on this comet. Membership is
// explicit: a channel is in members exactly while its reader has it joined.
type Room struct {
	id      string
	members map[*Channel]struct{} // guarded by the room's shard mu
	online  atomic.Int32          // len(members), readable without the lock
	rel     int                   // reliable members; guarded by the room's shard mu
	all     atomic.Int32          // cluster-wide count from logic; 0 = unknown
}

// onlineCount is what a heartbeat reply carries: the cluster-wide count when
// logic has reported one, else this comet's own.
func (r *Room) onlineCount() int32 {
	if n := r.all.Load(); n > 0 {
		return n
	}
	return r.online.Load()
}

// rooms holds every room with members, sharded by room id, and the queues
// of the fan-out workers.
type rooms struct {
	seed   maphash.Seed
	shards []roomShard
	n      atomic.Int64 // rooms in every shard
	// queues are the fan-out workers' queues (one worker each), picked
	// by room id with qseed, a seed of their own so that a worker's rooms
	// spread over every shard.
	queues []chan roomJob
	qseed  maphash.Seed
}

type roomShard struct {
	mu sync.RWMutex
	m  map[string]*Room // guarded by mu; a room is removed when it empties
}

// newRooms returns rooms of n shards with workers fan-out queues of
// queueLen pushes each.
func newRooms(n, workers, queueLen int) *rooms {
	rs := &rooms{seed: maphash.MakeSeed(), shards: make([]roomShard, n), queues: make([]chan roomJob, workers), qseed: maphash.MakeSeed()}
	for i := range rs.shards {
		rs.shards[i].m = make(map[string]*Room)
	}
	for i := range rs.queues {
		rs.queues[i] = make(chan roomJob, queueLen)
	}
	return rs
}

func (rs *rooms) shard(id string) *roomShard {
	return &rs.shards[maphash.String(rs.seed, id)%uint64(len(rs.shards))]
}

// queue returns the fan-out queue of room id.
func (rs *rooms) queue(id string) chan roomJob {
	return rs.queues[maphash.String(rs.qseed, id)%uint64(len(rs.queues))]
}

// join adds c to room id, creating the room, and returns it; nil when the
// room does not exist and limit rooms (0 = unlimited) already do.
func (rs *rooms) join(id string, c *Channel, limit int) *Room {
	sh := rs.shard(id)
	sh.mu.Lock()
	r := sh.m[id]
	if r == nil {
		if n := rs.n.Add(1); limit > 0 && n > int64(limit) {
			rs.n.Add(-1)
			sh.mu.Unlock()
			return nil
		}
		r = &Room{id: id, members: make(map[*Channel]struct{})}
		sh.m[id] = r
	}
	if _, ok := r.members[c]; !ok {
		r.members[c] = struct{}{}
		r.online.Add(1)
		if c.rel != nil {
			r.rel++
		}
	}
	sh.mu.Unlock()
	return r
}

// leave removes c from r and drops r once it is empty.
func (rs *rooms) leave(r *Room, c *Channel) {
	sh := rs.shard(r.id)
	sh.mu.Lock()
	if _, ok := r.members[c]; ok {
		delete(r.members, c)
		r.online.Add(-1)
		if c.rel != nil {
			r.rel--
		}
	}
	if len(r.members) == 0 && sh.m[r.id] == r {
		delete(sh.m, r.id)
		rs.n.Add(-1)
	}
	sh.mu.Unlock()
}

// lookup returns room id (nil: it has no members) and whether it has
// reliable members, and members that are not.
func (rs *rooms) lookup(id string) (r *Room, reliable, plain bool) {
	sh := rs.shard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if r = sh.m[id]; r == nil {
		return nil, false, false
	}
	return r, r.rel > 0, len(r.members) > r.rel
}

// broadcast pushes f to every member of room id that to names and
// returns how many channels took it (sent or queued) and how many dropped
// it. A member found idle is written to inline, or, when rb takes a room
// this big, sent to in rb's batch, flushed before broadcast returns; the
// others get f queued. m counts the members by path
// (goim_comet_room_sends_total).
func (rs *rooms) broadcast(id string, f *frame, to audience, rb *ringBatch, m *metrics) (queued, dropped int) {
	sh := rs.shard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	r := sh.m[id]
	if r == nil {
		return 0, 0
	}
	ring := to != toReliable && rb.ready(len(r.members)-r.rel)
	var written, behind, sent int
	for c := range r.members {
		if (c.rel != nil && to == toPlain) || (c.rel == nil && to == toReliable) {
			continue
		}
		if c.rel != nil {
			switch c.pushReliable(f, nil) {
			case pushQueued:
				queued++
			case pushDropped:
				dropped++
			}
			continue
		}
		b := f.bytes(c.tr)
		viaRing := ring && !rb.off && c.out.fd >= 0 // off: the ring failed in this fan-out
		res := c.claim(b, viaRing)
		switch {
		case res == pushInline && viaRing:
			queued -= rb.add(c, b)
			res = pushQueued
			sent++
		case res == pushInline:
			res = c.writeInline(b)
			written++
		case res == pushQueued:
			behind++
		}
		switch res {
		case pushQueued:
			queued++
		case pushDropped:
			dropped++
		}
	}
	if ring {
		queued -= rb.flush()
	}
	m.roomSends(sent, written, behind)
	return queued, dropped
}

// len returns the number of rooms with members.
func (rs *rooms) len() int { return int(rs.n.Load()) }

// counts returns the member count of every room.
func (rs *rooms) counts() map[string]int32 {
	out := make(map[string]int32)
	for i := range rs.shards {
		sh := &rs.shards[i]
		sh.mu.RLock()
		for id, r := range sh.m {
			out[id] = int32(len(r.members))
		}
		sh.mu.RUnlock()
	}
	return out
}

// setAll records the cluster-wide counts logic returned; rooms logic did not
// mention fall back to their local count.
func (rs *rooms) setAll(all map[string]int32) {
	for i := range rs.shards {
		sh := &rs.shards[i]
		sh.mu.RLock()
		for id, r := range sh.m {
			r.all.Store(all[id])
		}
		sh.mu.RUnlock()
	}
}

// roomGrant is the rooms a connection may join, from logic's auth answer
// (ConnectReply.rooms and rooms_limited). The zero value allows every room
// (goim v2, and logic in insecure mode). Connections with the same list
// share one copy of it: the patterns are interned (unique.Make), so a
// grant costs a connection a pointer, however long its list.
type roomGrant struct {
	// patterns are the patterns joined by "\n"; the zero handle means
	// not limited (a limited grant with no pattern holds "").
	patterns unique.Handle[string]
}

// newRoomGrant returns the grant of a Connect reply. Patterns failing
// protocol.CheckRoomPattern (logic checks them; a bad one here is a bug)
// are dropped, which only narrows the grant.
func newRoomGrant(limited bool, patterns []string) roomGrant {
	if !limited {
		return roomGrant{}
	}
	valid := make([]string, 0, len(patterns))
	for _, p := range patterns {
		if protocol.CheckRoomPattern(p) == nil {
			valid = append(valid, p)
		}
	}
	return roomGrant{patterns: unique.Make(strings.Join(valid, "\n"))}
}

// allows reports whether the grant lets the connection join room id (a
// valid room id).
func (g roomGrant) allows(id string) bool {
	if g.patterns == (unique.Handle[string]{}) {
		return true
	}
	all := g.patterns.Value()
	if all == "" {
		return false
	}
	for p := range strings.SplitSeq(all, "\n") {
		if protocol.RoomMatches(p, id) {
			return true
		}
	}
	return false
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
