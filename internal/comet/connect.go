package comet

import (
	"context"
	"fmt"
	"sync"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Handshakes reach logic through a few long-lived workers (a
// gather.Gatherer). A worker sends a lone handshake as a Connect at once;
// the handshakes that queued meanwhile go out together in one
// ConnectBatch. In a connect burst each gRPC call and its system calls
// then serve many connections on both sides, and the workers' stacks stay
// grown instead of every handshake growing its own for the gRPC call.
const (
	connectWorkers  = 4   // calls to logic in flight at once
	connectMaxBatch = 128 // handshakes per ConnectBatch at most
	connectQueue    = 4096
)

// connectCall is one handshake waiting for logic's answer.
type connectCall struct {
	req      *logicpb.ConnectReq
	deadline time.Time     // the handshake gives up on logic then
	done     chan struct{} // closed when reply or err is set
	reply    *logicpb.ConnectReply
	err      error
}

func (c *connectCall) finish(reply *logicpb.ConnectReply, err error) {
	c.reply, c.err = reply, err
	close(c.done)
}

// connect asks logic to accept a connection; it returns within about
// twice the logic timeout (waiting in the queue, then the call).
func (l *logicLink) connect(req *logicpb.ConnectReq) (*logicpb.ConnectReply, error) {
	call := &connectCall{req: req, deadline: time.Now().Add(l.cfg.Timeout.D()), done: make(chan struct{})}
	l.connects.Put(call)
	<-call.done
	return call.reply, call.err
}

// connectBatch is a worker's turn: the handshakes it gathered, in one call.
// A logic without ConnectBatch (an older version, during a rolling
// upgrade) answers Unimplemented; the comet then uses Connect for good.
func (l *logicLink) connectBatch(batch []*connectCall) {
	now := time.Now()
	live := batch[:0:0]
	for _, c := range batch {
		if now.After(c.deadline) {
			c.finish(nil, status.Error(codes.DeadlineExceeded, "comet: handshake waited too long for a call to logic"))
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout.D())
	defer cancel()
	if len(live) == 1 || l.connectOne.Load() {
		l.connectEach(ctx, live)
		return
	}
	reqs := make([]*logicpb.ConnectReq, len(live))
	for i, c := range live {
		reqs[i] = c.req
	}
	reply, err := l.client.ConnectBatch(ctx, &logicpb.ConnectBatchReq{Reqs: reqs})
	if status.Code(err) == codes.Unimplemented {
		if !l.connectOne.Swap(true) {
			l.log.Warn("comet: logic has no ConnectBatch (an older version); handshakes use Connect one by one")
		}
		l.connectEach(ctx, live)
		return
	}
	results := reply.GetResults()
	if err == nil && len(results) != len(live) {
		err = status.Error(codes.Internal, fmt.Sprintf("comet: logic answered %d results for %d connections", len(results), len(live)))
	}
	for i, c := range live {
		switch {
		case err != nil:
			c.finish(nil, err)
		case results[i].GetCode() != int32(codes.OK):
			c.finish(nil, status.Error(codes.Code(results[i].GetCode()), results[i].GetMessage()))
		default:
			c.finish(results[i].GetReply(), nil)
		}
	}
}

// connectEach sends each call as its own Connect, concurrently.
func (l *logicLink) connectEach(ctx context.Context, calls []*connectCall) {
	if len(calls) == 1 {
		calls[0].finish(l.client.Connect(ctx, calls[0].req))
		return
	}
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Go(func() { c.finish(l.client.Connect(ctx, c.req)) })
	}
	wg.Wait()
}
