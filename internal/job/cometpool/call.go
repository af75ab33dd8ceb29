package cometpool

import (
	"time"

	cometpb "github.com/goim/goim/api/comet"
)

// Outcome is what became of one call to one comet.
type Outcome uint8

// The outcomes. Every one but Delivered is a loss with that reason (the
// label of goim_job_lost_total).
const (
	// Delivered: the comet accepted the call.
	Delivered Outcome = iota
	// LostCometGone: the comet is not (or no longer) in discovery.
	LostCometGone
	// LostRejected: the comet refused the call as invalid; retrying
	// cannot help.
	LostRejected
	// LostRetries: transient errors until the retry bound ran out.
	LostRetries
	// LostQueueFull: the comet's queue was full (a hung or slow comet).
	LostQueueFull
	// LostShutdown: job stopped before the comet accepted the call.
	LostShutdown
)

var outcomeNames = [...]string{"delivered", "comet_gone", "rejected", "retries_exhausted", "queue_full", "shutdown"}

// String is the outcome's metric label: "delivered" or the loss reason.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Call is one request to one comet: exactly one of Push, Room and
// Broadcast is set. Done is called exactly once with the outcome: from a
// goroutine of the pool, or from Send itself when the call cannot be
// queued (so the caller of Send must not hold a lock Done needs). It must
// not block.
type Call struct {
	Push      *cometpb.PushMsgReq       // a key push: PushMsg, on its shard's worker
	Room      *cometpb.BroadcastRoomReq // a room batch: BroadcastRoom, on its shard's worker
	Broadcast *cometpb.BroadcastReq     // a broadcast: Broadcast, on the comet's broadcast worker
	Done      func(Outcome)             // told the call's outcome, once

	queued time.Time // set by Send: while its comet has failed for retry_for, a call queued longer is dropped
}

// method names the gRPC method of c (a metric label).
func (c *Call) method() string { return methods[methodIndex(c)] }
