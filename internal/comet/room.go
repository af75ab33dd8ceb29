package comet

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"unique"

	"github.com/goim/goim/api/protocol"
)

// Room is the set of channels in one room on this comet. Membership is
// explicit: a channel is in members exactly while its reader has it joined.
type Room struct {
	id      string
	members map[*Channel]struct{} // guarded by the room's shard mu
	online  atomic.Int32          // len(members), readable without the lock
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

// rooms holds every room with members, sharded by room id.
type rooms struct {
	seed   maphash.Seed
	shards []roomShard
	n      atomic.Int64 // rooms in every shard
}

type roomShard struct {
	mu sync.RWMutex
	m  map[string]*Room // guarded by mu; a room is removed when it empties
}

func newRooms(n int) *rooms {
	rs := &rooms{seed: maphash.MakeSeed(), shards: make([]roomShard, n)}
	for i := range rs.shards {
		rs.shards[i].m = make(map[string]*Room)
	}
	return rs
}

func (rs *rooms) shard(id string) *roomShard {
	return &rs.shards[maphash.String(rs.seed, id)%uint64(len(rs.shards))]
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
	}
	if len(r.members) == 0 && sh.m[r.id] == r {
		delete(sh.m, r.id)
		rs.n.Add(-1)
	}
	sh.mu.Unlock()
}

// broadcast pushes f to every member of room id and returns how many
// channels queued it.
func (rs *rooms) broadcast(id string, f *frame) (queued, dropped int) {
	sh := rs.shard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	r := sh.m[id]
	if r == nil {
		return 0, 0
	}
	for c := range r.members {
		switch c.push(f.bytes(c.tr)) {
		case pushQueued:
			queued++
		case pushDropped:
			dropped++
		}
	}
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
