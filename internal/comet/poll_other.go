//go:build !linux

package comet

import "net"

// waitReadable returns at once where no peek-based wait is implemented:
// the channel then blocks in a read with its buffer borrowed.
func waitReadable(net.Conn) error { return nil }
