// Package receipts records the delivery of pushes to reliable connections:
// a pending status per target when a push is appended to its stream, a
// delivered status when the target's client acks it, expiry after the
// stream's retention, an HTTP status answer and an optional webhook.
package receipts

import "github.com/goim/goim/internal/conf"

// Config is logic's [receipts] section.
type Config struct{}

// DefaultConfig is the [receipts] section a config file leaves out.
func DefaultConfig() Config { return Config{} }

// Validate records c's problems in p.
func (c Config) Validate(p *conf.Problems) {}
