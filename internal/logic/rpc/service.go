package rpc

import (
	"context"
	"errors"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/logic/dao"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Service is what goim.logic.Logic serves; logic's Service implements it.
// The methods take the generated requests, a batch as its requests; their
// errors are answered with the gRPC codes of Register.
type Service interface {
	// Connect authenticates a connection and stores its session.
	Connect(ctx context.Context, req *logicpb.ConnectReq) (*logicpb.ConnectReply, error)
	// ConnectBatch is Connect for each of reqs: errs[i] is what Connect
	// would have returned for reqs[i], replies[i] its reply otherwise; err
	// refuses the whole batch.
	ConnectBatch(ctx context.Context, reqs []*logicpb.ConnectReq) (replies []*logicpb.ConnectReply, errs []error, err error)
	// Disconnect removes a connection's session if it still belongs to it.
	Disconnect(ctx context.Context, req *logicpb.DisconnectReq) (*logicpb.DisconnectReply, error)
	// DisconnectBatch is Disconnect for each of reqs: has[i] answers
	// reqs[i], errs[i] is set for a malformed one; err fails the whole
	// batch.
	DisconnectBatch(ctx context.Context, reqs []*logicpb.DisconnectReq) (has []bool, errs []error, err error)
	// Heartbeat renews a connection's session.
	Heartbeat(ctx context.Context, req *logicpb.HeartbeatReq) (*logicpb.HeartbeatReply, error)
	// Receive takes an upstream frame a client sent.
	Receive(ctx context.Context, req *logicpb.ReceiveReq) (*logicpb.ReceiveReply, error)
	// RenewOnline stores a comet's online report.
	RenewOnline(ctx context.Context, req *logicpb.OnlineReq) (*logicpb.OnlineReply, error)
	// Nodes answers where a client of platform at clientIP should connect.
	// Never nil.
	Nodes(platform, clientIP string) *logicpb.NodesReply
	// ReadStream reads a reliable delivery stream after an offset.
	ReadStream(ctx context.Context, req *logicpb.ReadStreamReq) (*logicpb.ReadStreamReply, error)
	// Ack records the receipts of reliable connections.
	Ack(ctx context.Context, req *logicpb.AckReq) (*logicpb.AckReply, error)
	// Defer records job's deferrals of pushes it could not deliver.
	Defer(ctx context.Context, req *logicpb.DeferReq) (*logicpb.DeferReply, error)
}

// Errors are the Service's own errors that decide a gRPC code. The others
// are dao's and protocol's, which the codes know directly.
type Errors struct {
	// Auth is wrapped by the refusal of a token: Unauthenticated.
	Auth error
	// InvalidArgument is wrapped by the errors of calls whose arguments
	// cannot be served: InvalidArgument.
	InvalidArgument error
}

// Register serves svc as goim.logic.Logic on s (a server of NewServer).
// Its errors get the gRPC code a comet acts on: Unauthenticated for a
// refused token (errs.Auth; the comet closes the connection as rejected),
// InvalidArgument for a bad request (errs.InvalidArgument,
// dao.ErrInvalidArgument) or an auth body that is not the auth JSON or
// whose room_id is not a valid room id (protocol.ErrAuthBody,
// protocol.ErrRoomID; the comet closes it as bad_auth_body), Unavailable
// for Redis and Kafka (dao.ErrRedis, dao.ErrKafka), DeadlineExceeded or
// Canceled when the call's context ended, Internal otherwise; the message
// is the error's text. An entry of a batch's answer carries the code and
// message the single call would have returned.
func Register(s *grpc.Server, svc Service, errs Errors) {
	logicpb.RegisterLogicServer(s, &service{svc: svc, errs: errs})
}

// service adapts a Service to the generated gRPC interface.
type service struct {
	logicpb.UnimplementedLogicServer
	svc  Service
	errs Errors
}

var _ logicpb.LogicServer = (*service)(nil)

// rpcError gives err the gRPC code a comet acts on (see Register).
func (s *service) rpcError(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Internal
	switch {
	case errors.Is(err, protocol.ErrAuthBody), errors.Is(err, protocol.ErrRoomID):
		// Not the auth JSON, or a room_id no room can have: the client's
		// bug, not a refusal.
		code = codes.InvalidArgument
	case s.is(err, s.errs.Auth):
		code = codes.Unauthenticated
	case s.is(err, s.errs.InvalidArgument), errors.Is(err, dao.ErrInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, dao.ErrRedis), errors.Is(err, dao.ErrKafka):
		code = codes.Unavailable
	}
	return status.Error(code, err.Error())
}

// is is errors.Is for one of Errors, which may be unset.
func (s *service) is(err, target error) bool { return target != nil && errors.Is(err, target) }

// results are the entries of a batch's answer, one per entry of errs:
// result(i, code, message) with the code and message the single call
// would have returned for errs[i] (0 and "" for nil).
func results[R any](s *service, errs []error, result func(i int, code int32, message string) R) []R {
	out := make([]R, len(errs))
	for i, err := range errs {
		var code int32
		var message string
		if err != nil {
			st := status.Convert(s.rpcError(err))
			code, message = int32(st.Code()), st.Message()
		}
		out[i] = result(i, code, message)
	}
	return out
}

// Nodes answers as /goim/nodes/weighted does, for a client of
// req.Platform at req.ClientIP.
func (s *service) Nodes(_ context.Context, req *logicpb.NodesReq) (*logicpb.NodesReply, error) {
	return s.svc.Nodes(req.GetPlatform(), req.GetClientIP()), nil
}

func (s *service) Connect(ctx context.Context, req *logicpb.ConnectReq) (*logicpb.ConnectReply, error) {
	r, err := s.svc.Connect(ctx, req)
	return r, s.rpcError(err)
}

func (s *service) ConnectBatch(ctx context.Context, req *logicpb.ConnectBatchReq) (*logicpb.ConnectBatchReply, error) {
	replies, errs, err := s.svc.ConnectBatch(ctx, req.GetReqs())
	if err != nil {
		return nil, s.rpcError(err)
	}
	return &logicpb.ConnectBatchReply{Results: results(s, errs, func(i int, code int32, message string) *logicpb.ConnectResult {
		return &logicpb.ConnectResult{Reply: replies[i], Code: code, Message: message}
	})}, nil
}

func (s *service) Disconnect(ctx context.Context, req *logicpb.DisconnectReq) (*logicpb.DisconnectReply, error) {
	r, err := s.svc.Disconnect(ctx, req)
	return r, s.rpcError(err)
}

func (s *service) DisconnectBatch(ctx context.Context, req *logicpb.DisconnectBatchReq) (*logicpb.DisconnectBatchReply, error) {
	has, errs, err := s.svc.DisconnectBatch(ctx, req.GetReqs())
	if err != nil {
		return nil, s.rpcError(err)
	}
	return &logicpb.DisconnectBatchReply{Results: results(s, errs, func(i int, code int32, message string) *logicpb.DisconnectResult {
		return &logicpb.DisconnectResult{Has: has[i], Code: code, Message: message}
	})}, nil
}

func (s *service) Heartbeat(ctx context.Context, req *logicpb.HeartbeatReq) (*logicpb.HeartbeatReply, error) {
	r, err := s.svc.Heartbeat(ctx, req)
	return r, s.rpcError(err)
}

func (s *service) Receive(ctx context.Context, req *logicpb.ReceiveReq) (*logicpb.ReceiveReply, error) {
	r, err := s.svc.Receive(ctx, req)
	return r, s.rpcError(err)
}

func (s *service) RenewOnline(ctx context.Context, req *logicpb.OnlineReq) (*logicpb.OnlineReply, error) {
	r, err := s.svc.RenewOnline(ctx, req)
	return r, s.rpcError(err)
}

func (s *service) ReadStream(ctx context.Context, req *logicpb.ReadStreamReq) (*logicpb.ReadStreamReply, error) {
	r, err := s.svc.ReadStream(ctx, req)
	return r, s.rpcError(err)
}

func (s *service) Ack(ctx context.Context, req *logicpb.AckReq) (*logicpb.AckReply, error) {
	r, err := s.svc.Ack(ctx, req)
	return r, s.rpcError(err)
}

func (s *service) Defer(ctx context.Context, req *logicpb.DeferReq) (*logicpb.DeferReply, error) {
	r, err := s.svc.Defer(ctx, req)
	return r, s.rpcError(err)
}
