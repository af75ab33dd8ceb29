package logic

import (
	"context"
	"fmt"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/logic/dao"
)

// ReadStream reads a reliable delivery stream after an offset, for a
// comet's reliable connection: req names the stream (1 user by mid > 0,
// 2 key by a valid key, 3 room by a valid room id), the reader's epoch and
// offset (after), and limit, 0..[stream] max_read entries (a larger limit
// is capped; 0 asks for the state only). The reply has the stream's epoch
// (0: no such stream) and top, and the entries oldest first: those after
// after when req.epoch is the stream's and after <= top, recovered then
// saying whether entry after+1 is still held (or after == top); otherwise
// (another epoch, epoch 0, after beyond top) the entries start where the
// stream does and recovered is false. A bad request wraps
// ErrInvalidArgument. With [stream] disabled every stream reads as
// missing.
func (s *Service) ReadStream(ctx context.Context, req *logicpb.ReadStreamReq) (*logicpb.ReadStreamReply, error) {
	ref, limit, err := s.readRequest(req)
	if err != nil {
		s.metrics.streamReadBy[readInvalid].Inc()
		return nil, err
	}
	if !s.cfg.Stream.Enabled {
		s.metrics.streamReadBy[readMissing].Inc()
		return &logicpb.ReadStreamReply{}, nil
	}
	rd, err := s.redis.ReadStream(ctx, ref, req.GetEpoch(), req.GetAfter(), limit)
	if err != nil {
		s.metrics.streamReadBy[readError].Inc()
		s.metrics.redisErrors.WithLabelValues("read_stream").Inc()
		return nil, fmt.Errorf("logic: read stream: %w", err)
	}
	switch {
	case rd.Epoch == 0:
		s.metrics.streamReadBy[readMissing].Inc()
	case rd.Recovered:
		s.metrics.streamReadBy[readRecovered].Inc()
	default:
		s.metrics.streamReadBy[readReset].Inc()
	}
	reply := &logicpb.ReadStreamReply{Epoch: rd.Epoch, Top: rd.Top, Recovered: rd.Recovered}
	if len(rd.Entries) > 0 {
		reply.Entries = make([]*logicpb.StreamEntry, len(rd.Entries))
		for i, e := range rd.Entries {
			reply.Entries[i] = &logicpb.StreamEntry{Offset: e.Offset, MsgId: e.ID, Op: e.Op, Body: e.Body}
		}
	}
	return reply, nil
}

// readRequest checks a ReadStreamReq and returns the stream it names and
// its limit, capped at [stream] max_read.
func (s *Service) readRequest(req *logicpb.ReadStreamReq) (dao.StreamRef, int, error) {
	ref := dao.StreamRef{Stream: req.GetStream()}
	switch ref.Stream {
	case protocol.StreamUser:
		if ref.Mid = req.GetMid(); ref.Mid <= 0 {
			return ref, 0, fmt.Errorf("%w: read stream: user stream of mid %d, want > 0", ErrInvalidArgument, ref.Mid)
		}
	case protocol.StreamKey:
		ref.Key = req.GetKey()
		if err := protocol.CheckKey(ref.Key); err != nil {
			return ref, 0, fmt.Errorf("%w: read stream: key: %v", ErrInvalidArgument, err)
		}
	case protocol.StreamRoom:
		ref.Room = req.GetRoom()
		if err := protocol.CheckRoomID(ref.Room); err != nil {
			return ref, 0, fmt.Errorf("%w: read stream: room: %v", ErrInvalidArgument, err)
		}
	default:
		return ref, 0, fmt.Errorf("%w: read stream: stream %d, want 1 (user), 2 (key) or 3 (room)", ErrInvalidArgument, ref.Stream)
	}
	limit := req.GetLimit()
	if limit < 0 {
		return ref, 0, fmt.Errorf("%w: read stream: limit %d, want >= 0", ErrInvalidArgument, limit)
	}
	return ref, min(int(limit), s.cfg.Stream.MaxRead), nil
}

// MaxAcks bounds the acks of one Ack call, and the targets of one Defer
// call.
const MaxAcks = 4096

// Ack records the receipts of reliable connections. A call with more than
// MaxAcks acks, a msg id that is not 32 hex digits or a key that fails
// protocol.CheckKey is refused whole (ErrInvalidArgument). With receipts
// off the acks are checked and dropped.
func (s *Service) Ack(ctx context.Context, req *logicpb.AckReq) (*logicpb.AckReply, error) {
	acks := req.GetAcks()
	if err := checkAcks("ack", "acks", acks); err != nil {
		return nil, err
	}
	if s.receipts == nil || len(acks) == 0 {
		return &logicpb.AckReply{}, nil
	}
	if err := s.receipts.Acked(ctx, acks); err != nil {
		return nil, fmt.Errorf("logic: ack: %w", err)
	}
	return &logicpb.AckReply{}, nil
}

// Defer records job's report that it could not deliver pushes to their
// targets' comets while each target has the push in its stream: each
// named target's receipt turns deferred if it is still pending (see
// Receipts.Deferred). Its bounds are Ack's: more than MaxAcks targets, a
// msg id that is not 32 hex digits or a key that fails protocol.CheckKey
// refuse the call whole (ErrInvalidArgument). With receipts off the
// targets are checked and dropped.
func (s *Service) Defer(ctx context.Context, req *logicpb.DeferReq) (*logicpb.DeferReply, error) {
	defers := req.GetDeferred()
	if err := checkAcks("defer", "deferred", defers); err != nil {
		return nil, err
	}
	if s.receipts == nil || len(defers) == 0 {
		return &logicpb.DeferReply{}, nil
	}
	if err := s.receipts.Deferred(ctx, defers); err != nil {
		return nil, fmt.Errorf("logic: defer: %w", err)
	}
	return &logicpb.DeferReply{}, nil
}

// checkAcks checks the acks of call's field (at most MaxAcks, each with a
// 32-hex-digit msg id and a valid key): an error wraps
// ErrInvalidArgument.
func checkAcks(call, field string, acks []*logicpb.Ack) error {
	if len(acks) > MaxAcks {
		return fmt.Errorf("%w: %s: %d %s, at most %d", ErrInvalidArgument, call, len(acks), field, MaxAcks)
	}
	for i, a := range acks {
		if _, ok := protocol.ParseMsgID(a.GetMsgId()); !ok {
			return fmt.Errorf("%w: %s: %s[%d].msg_id is not 32 hex digits", ErrInvalidArgument, call, field, i)
		}
		if err := protocol.CheckKey(a.GetKey()); err != nil {
			return fmt.Errorf("%w: %s: %s[%d].key: %w", ErrInvalidArgument, call, field, i, err)
		}
	}
	return nil
}

// Receipts records delivery receipts; the Service's is nil when receipts
// are off.
type Receipts interface {
	// Record records that push msgID awaits an ack from each target
	// ("user:<mid>" or "key:<key>": the targets whose stream holds it):
	// those of live had a connection when the push was accepted (pending),
	// those of deferred had none (deferred: the push waits in their stream
	// for their client's next connect).
	Record(ctx context.Context, msgID string, live, deferred []string) error
	// Acked records acks of reliable connections (from comets' Ack calls).
	Acked(ctx context.Context, acks []*logicpb.Ack) error
	// Deferred records job's deferrals (from its Defer calls): each
	// target, named as an ack names it, turns deferred if still pending.
	Deferred(ctx context.Context, defers []*logicpb.Ack) error
}
