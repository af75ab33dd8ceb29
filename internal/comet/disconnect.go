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
// flight, not one per connection at once, which left the comet holding
// more memory after its clients had gone than while they were connected. A
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

// queueDisconnect hands a closed session to the workers.
func (l *logicLink) queueDisconnect(mid int64, key string, connID uint64) {
	l.disconnects.Put(disconnectReq{mid: mid, key: key, connID: connID})
}

// disconnect is a worker's turn: the disconnects that fail because logic
// is unavailable or too slow go to the retrier (disconnect_retry.go).
func (l *logicLink) disconnect(batch []disconnectReq) {
	if retry := l.sendDisconnects(batch); len(retry) > 0 {
		l.retrier.failed(retry)
	}
}

// sendDisconnects sends batch to logic as one DisconnectBatch, or as one
// Disconnect each against a logic without it (an older version, which
// answers Unimplemented: the comet then uses Disconnect for good). It
// returns the disconnects worth sending again (retryable); those that
// failed otherwise (a malformed request, a refused secret) are given up
// and counted.
func (l *logicLink) sendDisconnects(batch []disconnectReq) (retry []disconnectReq) {
	if len(batch) > 1 && !l.disconnectOne.Load() {
		if retry, ok := l.disconnectBatch(batch); ok {
			return retry
		}
	}
	lost := 0
	for _, r := range batch {
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout.D())
		_, err := l.client.Disconnect(ctx, &logicpb.DisconnectReq{Mid: r.mid, Key: r.key, Server: l.host, ConnId: r.connID})
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
		l.warns.Warn(l.log, msgDisconnectFailed, "mid", r.mid, "key", r.key, "err", err, "retry", again)
	}
	if lost > 0 {
		l.disconnectsLost(lost)
	}
	return retry
}

// disconnectBatch sends batch as one DisconnectBatch; false means logic
// lacks it and the disconnects are still to be sent. It returns the
// disconnects to send again.
func (l *logicLink) disconnectBatch(batch []disconnectReq) (retry []disconnectReq, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout.D())
	defer cancel()
	reqs := make([]*logicpb.DisconnectReq, len(batch))
	for i, r := range batch {
		reqs[i] = &logicpb.DisconnectReq{Mid: r.mid, Key: r.key, Server: l.host, ConnId: r.connID}
	}
	reply, err := l.client.DisconnectBatch(ctx, &logicpb.DisconnectBatchReq{Reqs: reqs})
	code := status.Code(err)
	switch {
	case code == codes.Unimplemented:
		if !l.disconnectOne.Swap(true) {
			l.log.Warn("comet: logic has no DisconnectBatch (an older version); disconnects go one by one")
		}
		return nil, false
	case err != nil:
		again := retryable(code)
		l.warns.Warn(l.log, msgDisconnectFailed, "sessions", len(batch), "err", err, "retry", again)
		if again {
			return batch, true
		}
		l.disconnectsLost(len(batch))
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
		l.warns.Warn(l.log, msgDisconnectFailed, "mid", batch[i].mid, "key", batch[i].key,
			"err", status.Error(code, res.GetMessage()), "retry", again)
	}
	if lost > 0 {
		l.disconnectsLost(lost)
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
func (l *logicLink) disconnectsLost(n int) {
	l.metrics.disconnectsAbandoned.Add(float64(n))
	l.warns.Warn(l.log, "comet: disconnects given up; their routing stays in Redis until logic's session_ttl", "sessions", n)
}
