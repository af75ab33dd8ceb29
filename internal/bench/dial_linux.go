//go:build linux

package bench

import "syscall"

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (0x18 on every
// architecture; the frozen syscall package lacks it on most).
const ipBindAddressNoPort = 0x18

// bindNoPort lets a socket bound to a source address pick its port at
// connect time, per destination, instead of at bind time: without it every
// bound socket holds an ephemeral port of its own, so one source address
// gives at most ip_local_port_range ports whatever the destinations.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
