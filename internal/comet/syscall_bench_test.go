//go:build linux

package comet

import (
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

// The floor under a delivery: what one system call, and one small write
// to a loopback TCP socket, cost on this machine. A room fan-out makes one
// write per member (merged pushes aside), so these bound what fewer or
// cheaper system calls could save. Run with
// go test -run '^$' -bench SyscallFloor ./internal/comet/.

// BenchmarkSyscallFloor/getppid is a system call that does no work: the
// entry and exit alone. /dev/null adds a write's file lookup and copy.
// tcp and tcp_fanout_1000 write 64 bytes to loopback TCP sockets whose
// peers read on another goroutine; fanout takes 1,000 sockets in turn, as
// a room fan-out does. Their ns/op include the receiver's side of the
// loopback, on the other core.
func BenchmarkSyscallFloor(b *testing.B) {
	buf := make([]byte, 64)
	b.Run("getppid", func(b *testing.B) {
		for b.Loop() {
			syscall.Getppid()
		}
	})
	b.Run("devnull", func(b *testing.B) {
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		fd := int(f.Fd())
		for b.Loop() {
			if _, err := syscall.Write(fd, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, n := range []int{1, 1000} {
		name := "tcp"
		if n > 1 {
			name = "tcp_fanout_1000"
		}
		b.Run(name, func(b *testing.B) {
			fds := loopbackPeers(b, n)
			i := 0
			for b.Loop() {
				if _, err := syscall.Write(fds[i], buf); err != nil {
					b.Fatal(err)
				}
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}

// loopbackPeers opens n loopback TCP connections whose far ends are read
// and discarded, and returns the near ends' descriptors, blocking.
func loopbackPeers(b *testing.B, n int) []int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	accepted := make(chan net.Conn, n)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	fds := make([]int, n)
	for i := range fds {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		f, err := c.(*net.TCPConn).File() // a blocking duplicate
		if err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
		b.Cleanup(func() { _ = f.Close() })
		fds[i] = int(f.Fd())
	}
	for range n {
		c, ok := <-accepted
		if !ok {
			b.Fatal("accept failed")
		}
		b.Cleanup(func() { _ = c.Close() })
	}
	return fds
}
