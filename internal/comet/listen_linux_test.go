//go:build linux

package comet

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestListenKeepAlive: accepted sockets carry the keep-alive set on the
// listener (Linux copies it), or none when it is off.
func TestListenKeepAlive(t *testing.T) {
	for _, c := range []struct {
		keepAlive  time.Duration
		on         int
		idle, intv int
	}{
		{0, 1, 15, 15},
		{42 * time.Second, 1, 42, 42},
		{-1, 0, 0, 0},
	} {
		lc := listenConfig(c.keepAlive)
		ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var on, idle, intv, cnt int
		var gerr error
		_ = rc.Control(func(fd uintptr) {
			get := func(level, opt int) int {
				v, err := syscall.GetsockoptInt(int(fd), level, opt)
				if err != nil && gerr == nil {
					gerr = err
				}
				return v
			}
			on = get(syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
			idle = get(syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
			intv = get(syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL)
			cnt = get(syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT)
		})
		if gerr != nil {
			t.Fatal(gerr)
		}
		if on != c.on || (c.on == 1 && (idle != c.idle || intv != c.intv || cnt != keepAliveProbes)) {
			t.Errorf("keepalive %v: accepted socket has on=%d idle=%d intvl=%d cnt=%d", c.keepAlive, on, idle, intv, cnt)
		}
		conn.Close()
		client.Close()
		ln.Close()
	}
}
