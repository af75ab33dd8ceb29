package cometpool

import (
	"time"

	"github.com/goim/goim/internal/conf"
)

// Config is the [comet] section of job's config: the client pool of
// comets.
type Config struct {
	// Shards is the number of workers per comet for key and room pushes.
	// A call goes to the worker its shard picks (shard % Shards), so calls
	// with the same shard reach a comet in order; different shards proceed
	// in parallel. Broadcasts have one more worker per comet of their own,
	// so a slow broadcast never delays a key or room push. At most 1024.
	// Default 8.
	Shards int `toml:"shards"`
	// Queue bounds the calls waiting per worker; a call sent to a full
	// queue is lost at once (queue_full). A bound, not a preallocation: a
	// queue takes memory for the calls it holds, grows with a backlog and
	// shrinks again as it drains. A healthy comet's backlog waits as long
	// as it takes to drain and a hung comet's calls end after retry_for,
	// so only a backlog beyond this bound loses calls here. At most
	// 1048576. Default 65536.
	Queue int `toml:"queue"`
	// CallTimeout is the deadline of each gRPC attempt, however long its
	// call waited or was retried. Default "3s".
	CallTimeout conf.Duration `toml:"call_timeout"`
	// RetryBase is the first wait after a transient error (comet busy,
	// unavailable, deadline exceeded, ...); it doubles with each retry,
	// ±20 % jitter. Default "50ms".
	RetryBase conf.Duration `toml:"retry_base"`
	// RetryMax is the longest wait between retries; >= retry_base.
	// Default "1s".
	RetryMax conf.Duration `toml:"retry_max"`
	// RetryFor bounds how long a call is retried after transient errors,
	// counted from its first attempt: no attempt starts later, so a call
	// ends within retry_for + call_timeout of its first attempt
	// (retries_exhausted). While its comet is healthy, a call waits in its
	// queue as long as needed: a backlog drains in full, nothing expires.
	// A comet is failing from an attempt's transient error until any call
	// to it succeeds; a call gets no (further) attempt and is lost
	// (retries_exhausted) once its comet has been failing for retry_for
	// and it was queued retry_for ago. So a hung comet holds a push (and
	// the commit of its partition) for about retry_for + call_timeout
	// after it was queued, or after the comet hung for pushes queued
	// before. Default "10s".
	RetryFor conf.Duration `toml:"retry_for"`
}

// Bounds of Config.
const (
	maxShards = 1024
	maxQueue  = 1 << 20
)

// DefaultConfig returns the defaults of every Config field.
func DefaultConfig() Config {
	return Config{
		Shards:      8,
		Queue:       65536,
		CallTimeout: conf.Duration(3 * time.Second),
		RetryBase:   conf.Duration(50 * time.Millisecond),
		RetryMax:    conf.Duration(time.Second),
		RetryFor:    conf.Duration(10 * time.Second),
	}
}

// Validate records every problem of c in p, with key paths relative to p
// (call it with p.Sub("comet")).
func (c Config) Validate(p *conf.Problems) {
	p.Check(c.Shards > 0 && c.Shards <= maxShards, "shards", "must be 1..%d, got %d", maxShards, c.Shards)
	p.Check(c.Queue > 0 && c.Queue <= maxQueue, "queue", "must be 1..%d, got %d", maxQueue, c.Queue)
	p.Check(c.CallTimeout > 0, "call_timeout", "must be > 0, got %v", c.CallTimeout)
	p.Check(c.RetryBase > 0, "retry_base", "must be > 0, got %v", c.RetryBase)
	p.Check(c.RetryMax > 0 && c.RetryMax >= c.RetryBase, "retry_max", "must be > 0 and >= retry_base (%v), got %v", c.RetryBase, c.RetryMax)
	p.Check(c.RetryFor > 0, "retry_for", "must be > 0, got %v", c.RetryFor)
}

// withDefaults returns c with every field out of its valid range replaced
// by its default, so that a pool built from an unvalidated config cannot
// divide by zero or spin.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Shards <= 0 || c.Shards > maxShards {
		c.Shards = d.Shards
	}
	if c.Queue <= 0 || c.Queue > maxQueue {
		c.Queue = d.Queue
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = d.CallTimeout
	}
	if c.RetryBase <= 0 {
		c.RetryBase = d.RetryBase
	}
	if c.RetryMax < c.RetryBase {
		c.RetryMax = c.RetryBase
	}
	if c.RetryFor <= 0 {
		c.RetryFor = d.RetryFor
	}
	return c
}
