package logic

import "github.com/goim/goim/internal/conf"

// StreamConfig is logic's [stream] section: the reliable delivery streams.
type StreamConfig struct{}

// DefaultStream is the [stream] section a config file leaves out.
func DefaultStream() StreamConfig { return StreamConfig{} }

// Validate records c's problems in p.
func (c StreamConfig) Validate(p *conf.Problems) {}
