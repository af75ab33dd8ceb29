package comet

import (
	"context"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
)

// Acks (op 19 from reliable connections) reach logic's Ack through a few
// long-lived workers (a gather.Gatherer), as disconnects do: a worker
// sends what queued meanwhile in one call. The queue is bounded and a
// reader never waits on it: an ack that finds it full is dropped and
// counted (goim_comet_acks_total{result="dropped"}); a receipt then stays
// pending in logic, as for a client that never acked.
const (
	ackWorkers  = 2
	ackMaxBatch = 512 // acks per Ack call at most
	ackQueue    = 8192
)

type ackReq struct {
	msgID string
	mid   int64
	key   string
}

// ack handles op 19 from a reliable connection: one to
// protocol.MaxAckIDs push ids, queued for logic. A body that is not ids
// closes the connection (bad_frame).
func (c *Channel) ack(body []byte) error {
	ids, err := protocol.ParseAck(body)
	if err != nil {
		c.close(ReasonBadFrame)
		return fail(ReasonBadFrame, err)
	}
	for _, id := range ids {
		c.srv.logic.acks.Put(ackReq{msgID: id, mid: c.mid, key: c.key})
	}
	return nil
}

const msgAckFailed = "comet: logic ack failed; the acks are dropped"

// sendAcks is an ack worker's turn: the acks it gathered in one Ack call.
func (l *logicLink) sendAcks(batch []ackReq) {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout.D())
	defer cancel()
	req := &logicpb.AckReq{Server: l.host, Acks: make([]*logicpb.Ack, len(batch))}
	for i, a := range batch {
		req.Acks[i] = &logicpb.Ack{MsgId: a.msgID, Mid: a.mid, Key: a.key}
	}
	if _, err := l.client.Ack(ctx, req); err != nil {
		l.metrics.ackFailed.Add(float64(len(batch)))
		l.warns.Warn(l.log, msgAckFailed, "acks", len(batch), "err", err)
		return
	}
	l.metrics.ackSent.Add(float64(len(batch)))
}
