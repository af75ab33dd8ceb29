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
// closing connection never waits: when the queue is full its disconnect
// goes to the retrier (disconnect_retry.go), which sends it at once. A
// worker sends a lone disconnect as Disconnect and those queued meanwhile
// as one DisconnectBatch (one call and one Redis pipeline for many).
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
	s.disconnects.Put(disconnectReq{mid: mid, key: key, connID: connID})
}

// disconnect is a worker's turn: the disconnects that fail because logic
// is unavailable or too slow go to the retrier (disconnect_retry.go).
func (s *Server) disconnect(batch []disconnectReq) {
	if retry := s.sendDisconnects(batch); len(retry) > 0 {
		s.dretry.failed(retry)
	}
}

// sendDisconnects sends batch to logic as one DisconnectBatch, or as one
// Disconnect each against a logic without it (an older version, which
// answers Unimplemented: the comet then uses Disconnect for good). It
// returns the disconnects worth sending again (retryable); those that
// failed otherwise (a malformed request, a refused secret) are given up
// and counted.
func (s *Server) sendDisconnects(batch []disconnectReq) (retry []disconnectReq) {
	if len(batch) > 1 && !s.disconnectOne.Load() {
		if retry, ok := s.disconnectBatch(batch); ok {
			return retry
		}
	}
	lost := 0
	for _, r := range batch {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Logic.Timeout.D())
		_, err := s.logic.Disconnect(ctx, &logicpb.DisconnectReq{Mid: r.mid, Key: r.key, Server: s.cfg.Host, ConnId: r.connID})
		cancel()
		if err == nil {
			continue
		}
		again := retryable(status.Code(err))
		if again {
			retry = append(retry, r)
		} else {
			lost++
		}
		s.warns.Warn(s.log, msgDisconnectFailed, "mid", r.mid, "key", r.key, "err", err, "retry", again)
	}
	if lost > 0 {
		s.disconnectsLost(lost)
	}
	return retry
}

// disconnectBatch sends batch as one DisconnectBatch; false means logic
// lacks it and the disconnects are still to be sent. It returns the
// disconnects to send again.
func (s *Server) disconnectBatch(batch []disconnectReq) (retry []disconnectReq, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Logic.Timeout.D())
	defer cancel()
	reqs := make([]*logicpb.DisconnectReq, len(batch))
	for i, r := range batch {
		reqs[i] = &logicpb.DisconnectReq{Mid: r.mid, Key: r.key, Server: s.cfg.Host, ConnId: r.connID}
	}
	reply, err := s.logic.DisconnectBatch(ctx, &logicpb.DisconnectBatchReq{Reqs: reqs})
	code := status.Code(err)
	switch {
	case code == codes.Unimplemented:
		if !s.disconnectOne.Swap(true) {
			s.log.Warn("comet: logic has no DisconnectBatch (an older version); disconnects go one by one")
		}
		return nil, false
	case err != nil:
		again := retryable(code)
		s.warns.Warn(s.log, msgDisconnectFailed, "sessions", len(batch), "err", err, "retry", again)
		if again {
			return batch, true
		}
		s.disconnectsLost(len(batch))
		return nil, true
	}
	lost := 0
	for i, res := range reply.GetResults() {
		if i >= len(batch) || res.GetCode() == int32(codes.OK) {
			continue
		}
		code := codes.Code(res.GetCode())
		again := retryable(code)
		if again {
			retry = append(retry, batch[i])
		} else {
			lost++
		}
		s.warns.Warn(s.log, msgDisconnectFailed, "mid", batch[i].mid, "key", batch[i].key,
			"err", status.Error(code, res.GetMessage()), "retry", again)
	}
	if lost > 0 {
		s.disconnectsLost(lost)
	}
	return retry, true
}

// retryable reports whether a disconnect that failed with code may succeed
// later: logic or its Redis unavailable, overloaded or too slow.
func retryable(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// disconnectsLost counts n disconnects given up: their sessions' routing
// stays in Redis until it expires.
func (s *Server) disconnectsLost(n int) {
	s.metrics.disconnectsAbandoned.Add(float64(n))
	s.warns.Warn(s.log, "comet: disconnects given up; their routing stays in Redis until logic's session_ttl", "sessions", n)
}
