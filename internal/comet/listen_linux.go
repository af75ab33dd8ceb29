//go:build linux

package comet

import (
	"net"
	"syscall"
	"time"
)

// defaultKeepAlive is Go's keep-alive period, used for keepalive = "0s".
const defaultKeepAlive = 15 * time.Second

// keepAliveProbes is how many unanswered probes end a connection (Go's
// default too).
const keepAliveProbes = 9

// listenConfig sets TCP keep-alive once, on the listening socket: Linux
// copies it to every accepted connection. Go's own way sets it on each
// accepted socket, four setsockopt calls per connection, which show in the
// comet's CPU profile in a burst of handshakes. keepAlive < 0 turns probes
// off.
func listenConfig(keepAlive time.Duration) net.ListenConfig {
	lc := net.ListenConfig{KeepAlive: -1} // nothing per accepted socket
	if keepAlive < 0 {
		return lc
	}
	if keepAlive == 0 {
		keepAlive = defaultKeepAlive
	}
	secs := max(int(keepAlive/time.Second), 1)
	lc.Control = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			for _, o := range []struct{ level, opt, v int }{
				{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, secs},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, secs},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveProbes},
			} {
				if serr = syscall.SetsockoptInt(int(fd), o.level, o.opt, o.v); serr != nil {
					return
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
	return lc
}
