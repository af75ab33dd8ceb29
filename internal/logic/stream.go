package logic

import (
	"context"
	"fmt"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
)

// ReadStream reads a reliable delivery stream after an offset.
func (s *Service) ReadStream(ctx context.Context, req *logicpb.ReadStreamReq) (*logicpb.ReadStreamReply, error) {
	return nil, fmt.Errorf("%w: streams are not built yet", ErrInvalidArgument)
}

// MaxAcks bounds the acks of one Ack call.
const MaxAcks = 4096

// Ack records the receipts of reliable connections. A call with more than
// MaxAcks acks, a msg id that is not 32 hex digits or a key that fails
// protocol.CheckKey is refused whole (ErrInvalidArgument). With receipts
// off the acks are checked and dropped.
func (s *Service) Ack(ctx context.Context, req *logicpb.AckReq) (*logicpb.AckReply, error) {
	acks := req.GetAcks()
	if len(acks) > MaxAcks {
		return nil, fmt.Errorf("%w: ack: %d acks, at most %d", ErrInvalidArgument, len(acks), MaxAcks)
	}
	for i, a := range acks {
		if _, ok := protocol.ParseMsgID(a.GetMsgId()); !ok {
			return nil, fmt.Errorf("%w: ack: acks[%d].msg_id is not 32 hex digits", ErrInvalidArgument, i)
		}
		if err := protocol.CheckKey(a.GetKey()); err != nil {
			return nil, fmt.Errorf("%w: ack: acks[%d].key: %w", ErrInvalidArgument, i, err)
		}
	}
	if s.receipts == nil || len(acks) == 0 {
		return &logicpb.AckReply{}, nil
	}
	if err := s.receipts.Acked(ctx, acks); err != nil {
		return nil, fmt.Errorf("logic: ack: %w", err)
	}
	return &logicpb.AckReply{}, nil
}

// Receipts records delivery receipts; the Service's is nil when receipts
// are off.
type Receipts interface {
	// Pending records that push msgID awaits an ack from each of targets
	// ("user:<mid>" or "key:<key>": the targets whose stream holds it).
	Pending(ctx context.Context, msgID string, targets []string) error
	// Acked records acks of reliable connections (from comets' Ack calls).
	Acked(ctx context.Context, acks []*logicpb.Ack) error
}
