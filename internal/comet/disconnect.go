package comet

import (
	"context"

	logicpb "github.com/goim/goim/api/logic"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Disconnects go to logic from a few long-lived workers instead of from
// each closing connection's goroutine: a mass disconnect (a network blip,
// a drain) then costs disconnectWorkers grown stacks and gRPC calls in
// flight, not one per connection at once (RSS 15 s after 10,000 clients
// left was 104 MB, more than the 88 MB they had held while connected). A
// closing connection waits only for room in the queue. A worker sends a
// lone disconnect as Disconnect and those queued meanwhile as one
// DisconnectBatch (one call and one Redis pipeline for many).
const (
	disconnectWorkers  = 4
	disconnectMaxBatch = 256
	disconnectQueue    = 4096
)

type disconnectReq struct {
	mid    int64
	key    string
	connID uint64 // the closed connection's: logic leaves a newer session of the key alone
}

// msgDisconnectFailed is logged rate-limited: a logic outage fails every
// disconnect.
const msgDisconnectFailed = "comet: logic disconnect failed"

// queueDisconnect hands a closed session to the workers (gather.go).
func (s *Server) queueDisconnect(mid int64, key string, connID uint64) {
	s.disconnects.put(disconnectReq{mid: mid, key: key, connID: connID})
}

// disconnect is a worker's turn. A logic without DisconnectBatch (an
// older version) answers Unimplemented; the comet then uses Disconnect
// for good. Failures are logged: the session expires in Redis anyway.
func (s *Server) disconnect(batch []disconnectReq) {
	if len(batch) > 1 && !s.disconnectOne.Load() && s.disconnectBatch(batch) {
		return
	}
	for _, r := range batch {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Logic.Timeout.D())
		if _, err := s.logic.Disconnect(ctx, &logicpb.DisconnectReq{Mid: r.mid, Key: r.key, Server: s.cfg.Host, ConnId: r.connID}); err != nil {
			s.warns.Warn(s.log, msgDisconnectFailed, "mid", r.mid, "key", r.key, "err", err)
		}
		cancel()
	}
}

// disconnectBatch sends batch as one DisconnectBatch; false means logic
// lacks it and the disconnects are still to be sent.
func (s *Server) disconnectBatch(batch []disconnectReq) bool {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Logic.Timeout.D())
	defer cancel()
	reqs := make([]*logicpb.DisconnectReq, len(batch))
	for i, r := range batch {
		reqs[i] = &logicpb.DisconnectReq{Mid: r.mid, Key: r.key, Server: s.cfg.Host, ConnId: r.connID}
	}
	reply, err := s.logic.DisconnectBatch(ctx, &logicpb.DisconnectBatchReq{Reqs: reqs})
	switch {
	case status.Code(err) == codes.Unimplemented:
		if !s.disconnectOne.Swap(true) {
			s.log.Warn("comet: logic has no DisconnectBatch (an older version); disconnects go one by one")
		}
		return false
	case err != nil:
		s.warns.Warn(s.log, msgDisconnectFailed, "sessions", len(batch), "err", err)
	default:
		for i, res := range reply.GetResults() {
			if res.GetCode() != int32(codes.OK) && i < len(batch) {
				s.warns.Warn(s.log, msgDisconnectFailed, "mid", batch[i].mid, "key", batch[i].key,
					"err", status.Error(codes.Code(res.GetCode()), res.GetMessage()))
			}
		}
	}
	return true
}
