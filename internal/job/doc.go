// Package job delivers pushes from Kafka to the comets, at least once: a
// Job is a member of the consumer group on logic's push topic.
//
// A push enters as a Kafka record: handler.ConsumeClaim (job.go) runs one
// partition per claim, and partition.handle (partition.go) decodes the
// record into a logic PushMsg and dispatches it by type. A key push is
// split by shard (hash of the key) into one call per shard; a room push
// joins its room's batch (RoomConfig), sent to every comet as one
// BroadcastRoom; a broadcast goes to every comet with its speed split
// between them. The calls go to the comet pool (package cometpool,
// Pool.Send) and leave as comet gRPC calls (PushMsg, BroadcastRoom,
// Broadcast) from its workers. Each call reports its outcome back; a
// record's offset is committed once it and every record before it in the
// partition has finished (delivered, or lost with a counted reason, or
// deferred: failed where every target has the push in its stream).
//
// Job (job.go) owns the rest: the consumer group sessions, the comet list
// (discovery's goim.comet instances, or the static [comets] table) that it
// hands to Pool.Update, its own registration as goim.job, and the graceful
// shutdown. config.go is the configuration; metrics.go the consumer's
// series (the pool has its own).
package job
