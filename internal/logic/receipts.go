package logic

import (
	"context"
	"fmt"

	"github.com/goim/goim/internal/logic/httpapi"
	"github.com/goim/goim/internal/logic/receipts"
)

// statusReader is what PushStatus needs of the receipts: the tracker's
// Status.
type statusReader interface {
	Status(ctx context.Context, msgID string) (targets []receipts.Status, found bool, err error)
}

// PushStatus answers /goim/push/status from the delivery receipts: the
// error wraps httpapi.ErrReceiptsOff when they are off, httpapi.ErrNoRecord
// when the push has no record, else Redis's error.
func (s *Service) PushStatus(ctx context.Context, msgID string) ([]httpapi.TargetStatus, error) {
	r, ok := s.receipts.(statusReader)
	if !ok {
		return nil, httpapi.ErrReceiptsOff
	}
	targets, found, err := r.Status(ctx, msgID)
	if err != nil {
		return nil, fmt.Errorf("logic: push status: %w", err)
	}
	if !found {
		return nil, httpapi.ErrNoRecord
	}
	out := make([]httpapi.TargetStatus, len(targets))
	for i, t := range targets {
		out[i] = httpapi.TargetStatus{Target: t.Target, Status: t.Status, At: t.At}
	}
	return out, nil
}
