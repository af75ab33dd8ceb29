package logic

import (
	"context"
	"fmt"

	logicpb "github.com/goim/goim/api/logic"
)

// ReadStream reads a reliable delivery stream after an offset.
func (s *Service) ReadStream(ctx context.Context, req *logicpb.ReadStreamReq) (*logicpb.ReadStreamReply, error) {
	return nil, fmt.Errorf("%w: streams are not built yet", ErrInvalidArgument)
}

// Ack records the receipts of reliable connections.
func (s *Service) Ack(ctx context.Context, req *logicpb.AckReq) (*logicpb.AckReply, error) {
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
