package logic

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/logic/dao"
)

// Every accepted push has one msg_id (dao.NewMsgID), which the Push
// methods return and the HTTP API answers as data.msg_id. It names the
// push, not a Kafka record: a keys or mids push is published as one
// PushMsg per comet, and all of them carry the push's id. A keys or mids
// push whose targets are all offline publishes nothing and still returns
// an id, that of an accepted push that reached nobody live (an open stream
// of an offline target still gets the append). job passes the id to the
// comets, which give it to reliable connections; nothing de-duplicates
// by it. With [stream] enabled the id is also stored with the push in
// every stream it is appended to.

// PushKeys publishes msg to the connections keys: one PushMsg per comet
// that holds some of them (the session routing in Redis says which), all
// with the push's msg_id, which it returns. Keys with no session are
// skipped: the push succeeds with nothing to send for them, as in goim v2.
// With [stream] enabled, the push is also appended to the open key stream
// of each key (see pushKeysStreams).
func (s *Service) PushKeys(ctx context.Context, op int32, keys []string, msg []byte) (string, error) {
	if s.cfg.Stream.Enabled {
		return s.pushKeysStreams(ctx, op, keys, msg)
	}
	servers, err := s.redis.ServersByKeys(ctx, keys)
	if err != nil {
		s.metrics.redisErrors.WithLabelValues("servers_by_keys").Inc()
		return "", fmt.Errorf("logic: push keys: %w", err)
	}
	return s.pushServers(ctx, dao.NewMsgID(), op, servers, nil, nil, msg)
}

// pushKeysStreams is PushKeys with streams: each key whose key stream a
// reliable connection opened gets the push appended by a script that also
// reads its routing, so the push is in the stream before (or as) it is
// routed (dao.ServersByKeysAppend); the other keys cost their lookup and an
// EXISTS. Each PushMsg's positions give every key's place in its stream
// (stream 0 for a key that keeps none); a PushMsg none of whose keys keeps
// a stream carries no positions, as without streams.
func (s *Service) pushKeysStreams(ctx context.Context, op int32, keys []string, msg []byte) (string, error) {
	id := dao.NewMsgID()
	routed, appended, offline, err := s.redis.ServersByKeysAppend(ctx, keys, dao.StreamMsg{ID: id, Op: op, Body: msg}, s.cfg.Stream.userRetention())
	if err != nil {
		s.metrics.redisErrors.WithLabelValues("servers_by_keys").Inc()
		return "", fmt.Errorf("logic: push keys: %w", err)
	}
	if len(appended) > 0 {
		s.metrics.streamAppendBy[protocol.StreamKey].Add(float64(len(appended)))
		if s.receipts != nil {
			target := func(k string) string { return "key:" + k }
			record(ctx, s, id, appended, offline, target)
		}
	}
	servers, positions, _ := splitRouted(routed, protocol.StreamKey)
	return s.pushServers(ctx, id, op, servers, positions, nil, msg)
}

// PushMids publishes msg to every connection of the users mids, one
// PushMsg per comet, all with the push's msg_id, which it returns. With
// [stream] enabled, the push is also appended to the open user stream of
// each member (see pushMidsStreams).
func (s *Service) PushMids(ctx context.Context, op int32, mids []int64, msg []byte) (string, error) {
	if s.cfg.Stream.Enabled {
		return s.pushMidsStreams(ctx, op, mids, msg)
	}
	servers, err := s.redis.KeysByMids(ctx, mids)
	if err != nil {
		s.metrics.redisErrors.WithLabelValues("keys_by_mids").Inc()
		return "", fmt.Errorf("logic: push mids: %w", err)
	}
	return s.pushServers(ctx, dao.NewMsgID(), op, servers, nil, nil, msg)
}

// pushMidsStreams is PushMids with streams: each member whose user stream
// a reliable connection opened gets the push appended by a script that
// also reads its connections (dao.KeysByMidsAppend). Every key of a member carries the member's
// position (positions as in pushKeysStreams). A member with an open stream
// and no connection still gets the append: its client recovers the push
// when it reconnects.
func (s *Service) pushMidsStreams(ctx context.Context, op int32, mids []int64, msg []byte) (string, error) {
	id := dao.NewMsgID()
	routed, appended, offline, err := s.redis.KeysByMidsAppend(ctx, mids, dao.StreamMsg{ID: id, Op: op, Body: msg}, s.cfg.Stream.userRetention())
	if err != nil {
		s.metrics.redisErrors.WithLabelValues("keys_by_mids").Inc()
		return "", fmt.Errorf("logic: push mids: %w", err)
	}
	if len(appended) > 0 {
		s.metrics.streamAppendBy[protocol.StreamUser].Add(float64(len(appended)))
		if s.receipts != nil {
			target := func(mid int64) string { return "user:" + strconv.FormatInt(mid, 10) }
			record(ctx, s, id, appended, offline, target)
		}
	}
	servers, positions, midsOf := splitRouted(routed, protocol.StreamUser)
	return s.pushServers(ctx, id, op, servers, positions, midsOf, msg)
}

// splitRouted turns the routing with positions into the keys of each
// server and, for the servers where some key has a position in stream,
// the positions aligned with those keys (stream 0 for a key without).
// For the user stream (a mids push) those servers also get their member
// ids, aligned with their keys: job names a key's receipt target
// ("user:<mid>") by them when it reports the push deferred. A server
// without a position in stream gets neither, so goim v2 clients' pushes
// carry nothing more.
func splitRouted(routed map[string][]dao.Routed, stream int32) (servers map[string][]string, positions map[string][]*protocol.Position, mids map[string][]int64) {
	servers = make(map[string][]string, len(routed))
	for server, rs := range routed {
		keys := make([]string, len(rs))
		inStream := false
		for i, r := range rs {
			keys[i] = r.Key
			inStream = inStream || r.Pos.Epoch != 0
		}
		servers[server] = keys
		if !inStream {
			continue
		}
		if positions == nil {
			positions = make(map[string][]*protocol.Position)
		}
		ps := make([]*protocol.Position, len(rs))
		for i, r := range rs {
			if r.Pos.Epoch == 0 {
				ps[i] = &protocol.Position{}
				continue
			}
			ps[i] = &protocol.Position{Stream: stream, Epoch: r.Pos.Epoch, Offset: r.Pos.Offset}
		}
		positions[server] = ps
		if stream == protocol.StreamUser {
			if mids == nil {
				mids = make(map[string][]int64)
			}
			ms := make([]int64, len(rs))
			for i, r := range rs {
				ms[i] = r.Mid
			}
			mids[server] = ms
		}
	}
	return servers, positions, mids
}

// record records the receipts of push id for the targets whose stream got
// it (appended): deferred for those of offline (no connection; a subset
// of appended, in its order), pending for the others. A failure is logged
// (rate-limited) and counted; the push goes on.
func record[T comparable](ctx context.Context, s *Service, id string, appended, offline []T, target func(T) string) {
	live := make([]string, 0, len(appended)-len(offline))
	deferred := make([]string, 0, len(offline))
	j := 0
	for _, t := range appended {
		if j < len(offline) && offline[j] == t {
			deferred = append(deferred, target(t))
			j++
			continue
		}
		live = append(live, target(t))
	}
	if err := s.receipts.Record(ctx, id, live, deferred); err != nil {
		s.metrics.pendingErrors.Inc()
		s.warns.Fail(s.log, "logic: recording pending receipts failed; the push goes on without them", "msg_id", id, "targets", len(appended), "err", err)
	}
}

// PushRoom publishes msg to room ("type://id") and returns the push's
// msg_id; the room is the Kafka key, so one room's pushes stay in order.
// A recoverable room's push ([stream] rooms) is appended to the room's
// stream first (creating it), and the PushMsg carries its position; if the
// append fails, nothing is published.
func (s *Service) PushRoom(ctx context.Context, op int32, room string, msg []byte) (string, error) {
	id := dao.NewMsgID()
	pm := &logicpb.PushMsg{Type: logicpb.PushMsg_ROOM, Operation: op, Room: room, Msg: msg, MsgId: id}
	if s.cfg.Stream.recoverable(room) {
		// One recoverable room's pushes are appended and published one
		// at a time by this logic, so its offsets reach Kafka, and the
		// comets, in order: out of order, every reliable member of the
		// room on every comet would see a gap and read the stream. This
		// caps one room's rate at one publish round trip per push per
		// logic; other rooms are not held (striped locks).
		mu := &s.roomLocks[roomStripe(room)]
		mu.Lock()
		defer mu.Unlock()
		pos, err := s.redis.AppendRoom(ctx, room, dao.StreamMsg{ID: id, Op: op, Body: msg}, s.cfg.Stream.roomRetention())
		if err != nil {
			s.metrics.redisErrors.WithLabelValues("append_room").Inc()
			return "", fmt.Errorf("logic: push room: %w", err)
		}
		s.metrics.streamAppendBy[protocol.StreamRoom].Inc()
		pm.Positions = []*protocol.Position{{Stream: protocol.StreamRoom, Epoch: pos.Epoch, Offset: pos.Offset}}
	}
	if err := s.publish(ctx, pm); err != nil {
		return "", err
	}
	return id, nil
}

// roomStripes is how many locks serialize recoverable rooms' pushes.
const roomStripes = 64

// roomStripe is the index of room's lock in Service.roomLocks (FNV-1a).
func roomStripe(room string) int {
	h := uint32(2166136261)
	for i := 0; i < len(room); i++ {
		h = (h ^ uint32(room[i])) * 16777619
	}
	return int(h % roomStripes)
}

// PushAll publishes msg to every connection that accepts op, paced at
// speed connections per second across the cluster (0: unpaced), and
// returns the push's msg_id.
func (s *Service) PushAll(ctx context.Context, op, speed int32, msg []byte) (string, error) {
	id := dao.NewMsgID()
	if err := s.publish(ctx, &logicpb.PushMsg{Type: logicpb.PushMsg_BROADCAST, Operation: op, Speed: speed, Msg: msg, MsgId: id}); err != nil {
		return "", err
	}
	return id, nil
}

// pushServers publishes one PushMsg per comet, concurrently when there are
// several, all with msg_id id, which it returns (with no comet it
// publishes nothing and returns the id all the same); positions and mids,
// when they have a server's entry, are that PushMsg's positions and mids. If some fail, the
// error names them and no id is returned; the others are published (a
// retry by the caller repeats those, under a new id).
func (s *Service) pushServers(ctx context.Context, id string, op int32, servers map[string][]string, positions map[string][]*protocol.Position, mids map[string][]int64, msg []byte) (string, error) {
	names := make([]string, 0, len(servers))
	for server := range servers {
		names = append(names, server)
	}
	slices.Sort(names)
	one := func(server string) error {
		return s.publish(ctx, &logicpb.PushMsg{Type: logicpb.PushMsg_PUSH, Operation: op, Server: server, Keys: servers[server], Msg: msg, MsgId: id, Positions: positions[server], Mids: mids[server]})
	}
	switch len(names) {
	case 0:
		return id, nil
	case 1:
		if err := one(names[0]); err != nil {
			return "", err
		}
		return id, nil
	}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, server := range names {
		wg.Go(func() { errs[i] = one(server) })
	}
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed == 0 {
		return id, nil
	}
	return "", fmt.Errorf("logic: %d of %d comets' pushes failed: %w", failed, len(names), errors.Join(errs...))
}

// publish sends one PushMsg to Kafka and records its latency.
func (s *Service) publish(ctx context.Context, pm *logicpb.PushMsg) error {
	start := time.Now()
	err := s.kafka.Publish(ctx, pm)
	result := 0
	if err != nil {
		result = 1
	}
	if t := int(pm.GetType()); t < len(s.metrics.publishBy) {
		s.metrics.publishBy[t][result].Observe(time.Since(start).Seconds())
	}
	if err != nil {
		return fmt.Errorf("logic: publish: %w", err)
	}
	return nil
}
