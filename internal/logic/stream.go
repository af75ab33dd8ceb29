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
