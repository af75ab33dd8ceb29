package comet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/rpcauth"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// gRPC settings of the comet's server. Its clients (job) ping every 30 s;
// the server allows pings every serverMinPing (goim v2's servers refused
// their own clients' pings).
const (
	serverMinPing = 10 * time.Second
	maxMsgSize    = 16 << 20 // room batches can be large
)

// newGRPCServer returns the server of the Comet service. Every call must
// carry one of keys' secrets (unless keys are insecure); one without is
// answered Unauthenticated before its handler runs and counted in
// goim_comet_rpc_unauthenticated_total, registered on reg.
func newGRPCServer(keys *rpcauth.Keys, reg prometheus.Registerer, log *slog.Logger) (*grpc.Server, error) {
	unauth, err := rpcauth.NewCounter(reg, "comet")
	if err != nil {
		return nil, fmt.Errorf("comet: %w", err)
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMsgSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: serverMinPing, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	}
	return grpc.NewServer(append(opts, keys.ServerOptions(unauth, log)...)...), nil
}

// rpcServer is the goim.comet.Comet service job calls.
type rpcServer struct {
	cometpb.UnimplementedCometServer
	s *Server
}

// PushMsg queues a frame for the connections of the given keys that
// watch its op.
func (r *rpcServer) PushMsg(_ context.Context, req *cometpb.PushMsgReq) (*cometpb.PushMsgReply, error) {
	if len(req.GetKeys()) == 0 || req.GetProto() == nil {
		return nil, status.Error(codes.InvalidArgument, "comet: PushMsg needs keys and proto")
	}
	res := r.s.pushKeys(req.GetKeys(), req.GetProtoOp(), req.GetProto(), req.GetMsgId(), req.GetPositions())
	return &cometpb.PushMsgReply{Delivered: res.Delivered, Absent: res.Absent, Filtered: res.Filtered, Dropped: res.Dropped}, nil
}

// BroadcastRoom queues a frame for every member of a room on this comet.
func (r *rpcServer) BroadcastRoom(ctx context.Context, req *cometpb.BroadcastRoomReq) (*cometpb.BroadcastRoomReply, error) {
	if req.GetRoomID() == "" || req.GetProto() == nil {
		return nil, status.Error(codes.InvalidArgument, "comet: BroadcastRoom needs roomID and proto")
	}
	if err := protocol.CheckRoomID(req.GetRoomID()); err != nil {
		return nil, status.Error(codes.InvalidArgument, "comet: BroadcastRoom: "+err.Error())
	}
	if err := r.s.broadcastRoom(ctx, req.GetRoomID(), req.GetProto(), req.GetMsgIds(), req.GetPositions()); err != nil {
		return nil, rpcError(err)
	}
	return &cometpb.BroadcastRoomReply{}, nil
}

// Broadcast queues a frame for every connection of this comet that
// watches its op, paced when the request gives a speed.
func (r *rpcServer) Broadcast(ctx context.Context, req *cometpb.BroadcastReq) (*cometpb.BroadcastReply, error) {
	if req.GetProto() == nil {
		return nil, status.Error(codes.InvalidArgument, "comet: Broadcast needs proto")
	}
	if err := r.s.broadcastMsg(ctx, req.GetProtoOp(), req.GetSpeed(), req.GetProto(), req.GetMsgId()); err != nil {
		return nil, rpcError(err)
	}
	return &cometpb.BroadcastReply{}, nil
}

// Rooms lists the rooms with members on this comet.
func (r *rpcServer) Rooms(context.Context, *cometpb.RoomsReq) (*cometpb.RoomsReply, error) {
	counts := r.s.rooms.counts()
	rooms := make(map[string]bool, len(counts))
	for id := range counts {
		rooms[id] = true
	}
	return &cometpb.RoomsReply{Rooms: rooms}, nil
}

func rpcError(err error) error {
	switch {
	case errors.Is(err, ErrBusy):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ErrServerClosed):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
