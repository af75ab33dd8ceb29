package dao

import "errors"

// Errors returned by the data layer. Every error of a Redis or Kafka
// operation wraps exactly one of ErrRedis or ErrKafka, and the underlying
// cause (a network error, a Redis error reply, context.DeadlineExceeded...)
// so callers can map it to a response code with errors.Is.
var (
	// ErrRedis: a Redis operation failed (unreachable, timed out, error
	// reply, pool closed). The session routing and online counts it was
	// reading or writing are unknown.
	ErrRedis = errors.New("dao: redis")
	// ErrKafka: a push was not acknowledged by Kafka (unreachable, timed
	// out, rejected, producer closed). It may still have been written:
	// delivery after an error is possible, success without an
	// acknowledgement is not. The push's msg_id lets consumers de-duplicate
	// a retry.
	ErrKafka = errors.New("dao: kafka")
	// ErrClosed: the Redis or Kafka client was closed; wrapped together
	// with ErrRedis or ErrKafka.
	ErrClosed = errors.New("dao: closed")
	// ErrInvalidArgument: the caller passed a value the operation cannot
	// store or route (an empty key or server, a push without its target).
	// Nothing was sent.
	ErrInvalidArgument = errors.New("dao: invalid argument")
)

// opError is the error of one operation: "dao: redis: add session mid=7:
// dial tcp ...: connection refused". It wraps its kind (ErrRedis or
// ErrKafka) and the cause.
type opError struct {
	kind error  // ErrRedis or ErrKafka
	op   string // what was being done, with its context
	err  error  // the cause
}

func (e *opError) Error() string {
	return e.kind.Error() + ": " + e.op + ": " + e.err.Error()
}

func (e *opError) Unwrap() []error { return []error{e.kind, e.err} }
