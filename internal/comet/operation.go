package comet

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/jitter"
)

// maxWatched bounds the ops one connection may watch.
const maxWatched = 1024

// handle answers one client frame after auth. Replies echo ver and seq and
// carry copies of request bodies, never the reader's buffer. An error ends
// the connection (the channel is already closing).
func (c *Channel) handle(p *protocol.Proto) error {
	if c.rel != nil {
		// A reliable connection acks with op 19 and its room changes
		// move its room stream. Ops 18 and 20 are server ops, and any op
		// on another connection keeps its goim v2 meaning.
		switch p.Op {
		case protocol.OpAck:
			return c.ack(p.Body)
		case protocol.OpChangeRoom:
			return c.changeRoomReliable(p)
		}
	}
	reply := protocol.Proto{Ver: p.Ver, Op: p.Op, Seq: p.Seq}
	switch p.Op {
	case protocol.OpHeartbeat:
		c.srv.wheel.Reset(&c.timer, c.session)
		var online int32
		if c.room != nil {
			online = c.room.onlineCount()
		}
		reply.Op = protocol.OpHeartbeatReply
		reply.Body = binary.BigEndian.AppendUint32(make([]byte, 0, 4), uint32(online))
		c.pushReply(c.encodeReply(&reply))
		c.renewSession()
	case protocol.OpChangeRoom:
		if err := c.changeRoom(string(p.Body)); err != nil {
			return err // no op 13: the connection closes with the reason
		}
		reply.Op = protocol.OpChangeRoomReply
		reply.Body = p.Body // encodeReply copies it
		c.pushReply(c.encodeReply(&reply))
	case protocol.OpSub, protocol.OpUnsub:
		if ops, ok := parseOps(p.Body); ok {
			c.setWatch(ops, p.Op == protocol.OpSub)
		}
		reply.Op = p.Op + 1
		reply.Body = p.Body
		c.pushReply(c.encodeReply(&reply))
	default:
		ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.Logic.Timeout.D())
		up := &protocol.Proto{Ver: p.Ver, Op: p.Op, Seq: p.Seq, Body: bytes.Clone(p.Body)}
		var err error
		offStack(func() { _, err = c.srv.logic.client.Receive(ctx, &logicpb.ReceiveReq{Mid: c.mid, Proto: up}) })
		cancel()
		if err != nil {
			c.warn(msgReceiveFailed, "op", p.Op, "err", err)
		}
		c.pushReply(c.encodeReply(&reply)) // goim v2: same op, empty body
	}
	return nil
}

// Warnings a connection may repeat, rate-limited by Server.warns.
const (
	msgReceiveFailed = "comet: logic receive failed"
	msgRenewFailed   = "comet: session renewal failed, retrying at the next heartbeat"
)

// warn logs msg on the connection's logger unless Server.warns holds it
// back (the logger is built only for a line written).
func (c *Channel) warn(msg string, args ...any) {
	ok, n := c.srv.warns.Allow(msg)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	c.logger().Warn(msg, args...)
}

// changeRoom leaves the current room and joins id; an empty id only leaves.
// Changing to the room the channel is in changes nothing. An id failing
// protocol.CheckRoomID (bad_room), outside the connection's rooms
// (room_denied) or a new room past limits.max_rooms (too_many_rooms)
// closes the connection with that reason.
func (c *Channel) changeRoom(id string) error {
	if id != "" {
		if reason, err := c.roomRefusal(id); err != nil {
			c.closePolicy(reason)
			return fail(reason, err)
		}
	}
	if c.room != nil && c.room.id == id {
		return nil
	}
	if c.room != nil {
		c.srv.rooms.leave(c.room, c)
		c.room = nil
	}
	if id != "" {
		if c.room = c.srv.rooms.join(id, c, c.srv.cfg.Limits.MaxRooms); c.room == nil {
			c.closePolicy(ReasonTooManyRooms)
			return fail(ReasonTooManyRooms, fmt.Errorf("limits.max_rooms (%d) reached", c.srv.cfg.Limits.MaxRooms))
		}
	}
	return nil
}

// roomRefusal says why the connection may not join room id (not empty):
// an id failing protocol.CheckRoomID (bad_room) or outside the
// connection's rooms (room_denied); a nil error allows it.
func (c *Channel) roomRefusal(id string) (CloseReason, error) {
	if err := protocol.CheckRoomID(id); err != nil {
		return ReasonBadRoom, err
	}
	if !c.grant.allows(id) {
		return ReasonRoomDenied, errors.New("room not in the connection's rooms")
	}
	return reasonNone, nil
}

// parseOps parses "1000,1001" into ops. Any malformed entry rejects the
// whole list (goim v2: nothing changes, the body is still echoed).
func parseOps(b []byte) ([]int32, bool) {
	fields := strings.Split(string(b), ",")
	if len(fields) > maxWatched {
		return nil, false
	}
	ops := make([]int32, 0, len(fields))
	for _, f := range fields {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32)
		if err != nil {
			return nil, false
		}
		ops = append(ops, int32(n))
	}
	return ops, true
}

// renewSession renews the session in logic when it is due, so the routing
// never expires while the client keeps heart-beating, or at once when
// logic's Redis lost its data since the last renewal (logicLink.noteEpoch).
func (c *Channel) renewSession() {
	s := c.srv
	now := time.Since(s.born)
	gen := s.logic.generation()
	if now < c.nextRenew && gen == c.renewGen {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Logic.Timeout.D())
	defer cancel()
	var err error
	offStack(func() {
		_, err = s.logic.client.Heartbeat(ctx, &logicpb.HeartbeatReq{Mid: c.mid, Key: c.key, Server: s.cfg.Host, ConnId: c.connID})
	})
	if err != nil {
		c.warn(msgRenewFailed, "err", err)
		return
	}
	c.renewed(now, gen)
}

// renewed notes the session registered in logic at now (since
// Server.born) in session generation gen: the next renewal is due after
// protocol.session_renew ±10 %, or at the next heartbeat after the
// generation changes.
func (c *Channel) renewed(now time.Duration, gen uint64) {
	c.nextRenew = now + jitter.Spread(c.srv.cfg.Protocol.SessionRenew.D(), 0.1)
	c.renewGen = gen
}
