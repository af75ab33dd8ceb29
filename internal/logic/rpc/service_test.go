package rpc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/logic/dao"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	errAuth    = errors.New("logic: auth refused")
	errInvalid = errors.New("logic: invalid argument")
)

// fake answers every call with err (and the batches with errs per entry).
type fake struct {
	err  error
	errs []error
}

func (f fake) Connect(context.Context, *logicpb.ConnectReq) (*logicpb.ConnectReply, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &logicpb.ConnectReply{Key: "k"}, nil
}

func (f fake) ConnectBatch(_ context.Context, reqs []*logicpb.ConnectReq) ([]*logicpb.ConnectReply, []error, error) {
	if f.err != nil {
		return nil, nil, f.err
	}
	replies := make([]*logicpb.ConnectReply, len(reqs))
	for i := range reqs {
		if f.errs[i] == nil {
			replies[i] = &logicpb.ConnectReply{Key: fmt.Sprint("k", i)}
		}
	}
	return replies, f.errs, nil
}

func (f fake) Disconnect(context.Context, *logicpb.DisconnectReq) (*logicpb.DisconnectReply, error) {
	return &logicpb.DisconnectReply{Has: f.err == nil}, f.err
}

func (f fake) DisconnectBatch(_ context.Context, reqs []*logicpb.DisconnectReq) ([]bool, []error, error) {
	if f.err != nil {
		return nil, nil, f.err
	}
	has := make([]bool, len(reqs))
	for i := range has {
		has[i] = f.errs[i] == nil
	}
	return has, f.errs, nil
}

func (f fake) Heartbeat(context.Context, *logicpb.HeartbeatReq) (*logicpb.HeartbeatReply, error) {
	return &logicpb.HeartbeatReply{}, f.err
}

func (f fake) Receive(context.Context, *logicpb.ReceiveReq) (*logicpb.ReceiveReply, error) {
	return &logicpb.ReceiveReply{}, f.err
}

func (f fake) RenewOnline(context.Context, *logicpb.OnlineReq) (*logicpb.OnlineReply, error) {
	return &logicpb.OnlineReply{}, f.err
}

func (f fake) Nodes(platform, _ string) *logicpb.NodesReply {
	return &logicpb.NodesReply{Domain: platform}
}

func (f fake) ReadStream(context.Context, *logicpb.ReadStreamReq) (*logicpb.ReadStreamReply, error) {
	return &logicpb.ReadStreamReply{}, f.err
}

func (f fake) Ack(context.Context, *logicpb.AckReq) (*logicpb.AckReply, error) {
	return &logicpb.AckReply{}, f.err
}

func (f fake) Defer(context.Context, *logicpb.DeferReq) (*logicpb.DeferReply, error) {
	return &logicpb.DeferReply{}, f.err
}

// codeCases are the Service's errors and the codes comets act on.
var codeCases = []struct {
	err  error
	want codes.Code
}{
	{err: fmt.Errorf("%w: token: expired", errAuth), want: codes.Unauthenticated},
	// An auth body that is not the auth JSON is the client's bug, even
	// when the refusal wraps the auth error too.
	{err: fmt.Errorf("%w: %w", errAuth, protocol.ErrAuthBody), want: codes.InvalidArgument},
	{err: fmt.Errorf("%w: room_id: %w", errAuth, protocol.ErrRoomID), want: codes.InvalidArgument},
	{err: fmt.Errorf("%w: connect: empty server", errInvalid), want: codes.InvalidArgument},
	{err: fmt.Errorf("logic: disconnect: %w", dao.ErrInvalidArgument), want: codes.InvalidArgument},
	{err: fmt.Errorf("logic: connect: %w", context.DeadlineExceeded), want: codes.DeadlineExceeded},
	{err: fmt.Errorf("logic: connect: %w", context.Canceled), want: codes.Canceled},
	{err: fmt.Errorf("logic: connect: %w", dao.ErrRedis), want: codes.Unavailable},
	{err: fmt.Errorf("logic: publish: %w", dao.ErrKafka), want: codes.Unavailable},
	{err: errors.New("something else"), want: codes.Internal},
}

// TestCodes: every call answers the Service's error with its code and
// its text as the message.
func TestCodes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range codeCases {
		s := &service{svc: fake{err: tc.err}, errs: Errors{Auth: errAuth, InvalidArgument: errInvalid}}
		calls := map[string]func() error{
			"Connect":         func() error { _, err := s.Connect(ctx, &logicpb.ConnectReq{}); return err },
			"ConnectBatch":    func() error { _, err := s.ConnectBatch(ctx, &logicpb.ConnectBatchReq{}); return err },
			"Disconnect":      func() error { _, err := s.Disconnect(ctx, &logicpb.DisconnectReq{}); return err },
			"DisconnectBatch": func() error { _, err := s.DisconnectBatch(ctx, &logicpb.DisconnectBatchReq{}); return err },
			"Heartbeat":       func() error { _, err := s.Heartbeat(ctx, &logicpb.HeartbeatReq{}); return err },
			"Receive":         func() error { _, err := s.Receive(ctx, &logicpb.ReceiveReq{}); return err },
			"RenewOnline":     func() error { _, err := s.RenewOnline(ctx, &logicpb.OnlineReq{}); return err },
		}
		for name, call := range calls {
			st := status.Convert(call())
			if st.Code() != tc.want || st.Message() != tc.err.Error() {
				t.Errorf("%s with %q: %v %q, want %v and the error's text", name, tc.err, st.Code(), st.Message(), tc.want)
			}
		}
	}
	s := &service{svc: fake{}}
	if r, err := s.Connect(ctx, &logicpb.ConnectReq{}); err != nil || r.Key != "k" {
		t.Fatalf("Connect without error: %v, %v", r, err)
	}
	if r, err := s.Nodes(ctx, &logicpb.NodesReq{Platform: "web"}); err != nil || r.Domain != "web" {
		t.Fatalf("Nodes: %v, %v", r, err)
	}
}

// TestBatchItems: each entry of a batch's answer carries the code and
// message the single call would have returned; accepted ones code 0.
func TestBatchItems(t *testing.T) {
	ctx := context.Background()
	errs := []error{nil}
	for _, tc := range codeCases {
		errs = append(errs, tc.err)
	}
	s := &service{svc: fake{errs: errs}, errs: Errors{Auth: errAuth, InvalidArgument: errInvalid}}
	reqs := make([]*logicpb.ConnectReq, len(errs))
	cr, err := s.ConnectBatch(ctx, &logicpb.ConnectBatchReq{Reqs: reqs})
	if err != nil || len(cr.Results) != len(errs) {
		t.Fatalf("ConnectBatch: %v, %v", cr, err)
	}
	dr, err := s.DisconnectBatch(ctx, &logicpb.DisconnectBatchReq{Reqs: make([]*logicpb.DisconnectReq, len(errs))})
	if err != nil || len(dr.Results) != len(errs) {
		t.Fatalf("DisconnectBatch: %v, %v", dr, err)
	}
	if r := cr.Results[0]; r.Code != 0 || r.Message != "" || r.Reply.GetKey() != "k0" {
		t.Errorf("accepted connect: %v", r)
	}
	if r := dr.Results[0]; r.Code != 0 || r.Message != "" || !r.Has {
		t.Errorf("accepted disconnect: %v", r)
	}
	for i, tc := range codeCases {
		c, d := cr.Results[i+1], dr.Results[i+1]
		if codes.Code(c.Code) != tc.want || c.Message != tc.err.Error() || c.Reply != nil {
			t.Errorf("connect entry with %q: %v", tc.err, c)
		}
		if codes.Code(d.Code) != tc.want || d.Message != tc.err.Error() || d.Has {
			t.Errorf("disconnect entry with %q: %v", tc.err, d)
		}
	}
}
