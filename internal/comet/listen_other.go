//go:build !linux

package comet

import (
	"net"
	"time"
)

// listenConfig leaves keep-alive to Go, which sets it on each accepted
// socket (0: Go's default period; < 0: off).
func listenConfig(keepAlive time.Duration) net.ListenConfig {
	return net.ListenConfig{KeepAlive: keepAlive}
}
