// Package cometpool is job's client pool of comets: one gRPC client per
// comet, and per comet a fixed set of workers, each with its own bounded
// queue. Calls enter through [Pool.Send] (job's partitions send a key push,
// a room batch or a broadcast to one comet, with the shard that orders it)
// and leave as goim.comet.Comet gRPC calls (PushMsg, BroadcastRoom,
// Broadcast); each call ends by reporting its [Outcome] to its Done func.
// [Pool.Update] sets the comets (from discovery or job's static list);
// [Pool.Close] drains the queues at shutdown.
//
// A key push or room push goes to the worker its shard picks, so the calls
// of one shard reach a comet in the order they were sent (goim v2 spread
// them round robin). A worker stays on its call through retries, so a
// call's successors wait behind it rather than overtake it. Broadcasts
// have a worker and queue of their own per comet, so a slow or retried
// Broadcast (a paced one the comet turns away as busy, say) holds only the
// broadcasts behind it, never a key or room push. Each comet has its own
// workers and queues and Send never waits (v2's blocking enqueue stalled
// everything).
//
// A queue grows with its backlog (up to Queue calls) and shrinks as it
// drains, so a healthy comet that answers slower than Kafka is read keeps
// every call and delivers it, however long that takes. A comet is failing
// from an attempt's transient error until a call to it succeeds; once it
// has failed for RetryFor, its calls queued for RetryFor end without an
// attempt (LostRetries), so a hung comet holds a push, and the commit of
// its partition, for about RetryFor + CallTimeout, and never delays
// another comet's calls.
//
// Locks: Pool.mu serializes Update and the start of Close; it guards the
// comets map's replacement and every comet.addr. comet.sendMu guards the
// comet's state; Send holds it for reading while it queues a call, so once
// a writer has changed the state no call can be queued behind the worker's
// final drain. queue.mu guards one queue's ring. Order: Pool.mu, then
// comet.sendMu, then queue.mu.
package cometpool
