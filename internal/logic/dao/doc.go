// Package dao is logic's data layer: session routing and comets' online
// reports in Redis ([Redis]), and the push topic in Kafka ([Kafka]).
//
// Both clients are safe for concurrent use, start nothing in their
// constructors, bound every call by their configured timeouts (or the
// caller's context, if sooner) and fail with errors wrapping [ErrRedis] or
// [ErrKafka] rather than waiting for a server that is down.
package dao
