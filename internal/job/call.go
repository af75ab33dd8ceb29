package job

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

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// call is one request to one comet: exactly one of push, room and
// broadcast is set. done is called exactly once with the outcome: from a
// goroutine of the comet pool, or from send itself when the call cannot be
// queued (so the caller of send must not hold a lock done needs). It must
// not block.
type call struct {
	push      *cometpb.PushMsgReq
	room      *cometpb.BroadcastRoomReq
	broadcast *cometpb.BroadcastReq
	done      func(Outcome)
	queued    time.Time // set by send: while its comet has failed for retry_for, a call queued longer is dropped
}

// method names the gRPC method of c (a metric label).
func (c *call) method() string {
	switch {
	case c.push != nil:
		return "PushMsg"
	case c.room != nil:
		return "BroadcastRoom"
	default:
		return "Broadcast"
	}
}
