package logic

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/logic/dao"
)

// Every accepted push has one msg_id (dao.NewMsgID), which the Push
// methods return and the HTTP API answers as data.msg_id. It names the
// push, not a Kafka record: a keys or mids push is published as one
// PushMsg per comet, and all of them carry the push's id. A keys or mids
// push whose targets are all offline publishes nothing and still returns
// an id, that of an accepted push that reached nobody. Nothing reads the
// id downstream (job does not pass it to comets), so nothing
// de-duplicates by it.

// PushKeys publishes msg to the connections keys: one PushMsg per comet
// that holds some of them (the session routing in Redis says which), all
// with the push's msg_id, which it returns. Keys with no session are
// skipped: the push succeeds with nothing to send for them, as in goim v2.
func (s *Service) PushKeys(ctx context.Context, op int32, keys []string, msg []byte) (string, error) {
	servers, err := s.redis.ServersByKeys(ctx, keys)
	if err != nil {
		s.metrics.redisErrors.WithLabelValues("servers_by_keys").Inc()
		return "", fmt.Errorf("logic: push keys: %w", err)
	}
	return s.pushServers(ctx, op, servers, msg)
}

// PushMids publishes msg to every connection of the users mids, one
// PushMsg per comet, all with the push's msg_id, which it returns.
func (s *Service) PushMids(ctx context.Context, op int32, mids []int64, msg []byte) (string, error) {
	servers, err := s.redis.KeysByMids(ctx, mids)
	if err != nil {
		s.metrics.redisErrors.WithLabelValues("keys_by_mids").Inc()
		return "", fmt.Errorf("logic: push mids: %w", err)
	}
	return s.pushServers(ctx, op, servers, msg)
}

// PushRoom publishes msg to room ("type://id") and returns the push's
// msg_id; the room is the Kafka key, so one room's pushes stay in order.
func (s *Service) PushRoom(ctx context.Context, op int32, room string, msg []byte) (string, error) {
	id := dao.NewMsgID()
	if err := s.publish(ctx, &logicpb.PushMsg{Type: logicpb.PushMsg_ROOM, Operation: op, Room: room, Msg: msg, MsgId: id}); err != nil {
		return "", err
	}
	return id, nil
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
// several, all with one new msg_id, which it returns (with no comet it
// publishes nothing and returns an id all the same). If some fail, the
// error names them and no id is returned; the others are published (a
// retry by the caller repeats those, under a new id).
func (s *Service) pushServers(ctx context.Context, op int32, servers map[string][]string, msg []byte) (string, error) {
	id := dao.NewMsgID()
	names := make([]string, 0, len(servers))
	for server := range servers {
		names = append(names, server)
	}
	slices.Sort(names)
	one := func(server string) error {
		return s.publish(ctx, &logicpb.PushMsg{Type: logicpb.PushMsg_PUSH, Operation: op, Server: server, Keys: servers[server], Msg: msg, MsgId: id})
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
