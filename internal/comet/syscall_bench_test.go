//go:build linux

package comet

import (
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
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
// loopback, on the other core. thread-cpu-ns/op is the writing thread's
// CPU time per write, cpu-ns/op the whole process's (the peers' reads
// included). The iouring_ sub-benchmarks make the same fan-out through
// io_uring, and the _unread pair makes it with and without io_uring to
// peers nobody reads (see benchIOURingFanout).
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
			i, ops := 0, 0
			cpu := startCPU()
			for b.Loop() {
				if _, err := syscall.Write(fds[i], buf); err != nil {
					b.Fatal(err)
				}
				if i++; i == n {
					i = 0
				}
				ops++
			}
			cpu.report(b, ops)
		})
	}
	benchIOURingFanout(b, buf, 1000)
}

// loopbackPeers opens n loopback TCP connections whose far ends are read
// and discarded, and returns the near ends' descriptors, blocking.
func loopbackPeers(b *testing.B, n int) []int {
	near, _ := loopbackPairs(b, n, true)
	return near
}

// loopbackPairs opens n loopback TCP connections and returns both ends'
// descriptors, blocking. With read, the far ends are read and discarded
// on goroutines of their own (far is nil); without, nothing reads them
// and they are out of the runtime's poller, so data arriving there wakes
// no one.
func loopbackPairs(b *testing.B, n int, read bool) (near, far []int) {
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
			if read {
				go func() { _, _ = io.Copy(io.Discard, c) }()
			}
		}
	}()
	// fileFD returns a blocking duplicate of c's descriptor, out of the
	// poller, and closes c.
	fileFD := func(c net.Conn) int {
		f, err := c.(*net.TCPConn).File()
		if err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
		b.Cleanup(func() { _ = f.Close() })
		return int(f.Fd())
	}
	near = make([]int, n)
	for i := range near {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		near[i] = fileFD(c)
	}
	for range n {
		c, ok := <-accepted
		if !ok {
			b.Fatal("accept failed")
		}
		if read {
			b.Cleanup(func() { _ = c.Close() })
		} else {
			far = append(far, fileFD(c))
		}
	}
	return near, far
}

// cpuMeter measures the CPU time a benchmark's loop takes, pauses
// aside: of the calling goroutine's thread (the goroutine is locked to it
// until report) and of the whole process.
type cpuMeter struct{ thread, process, thread0, process0 int64 }

// startCPU locks the calling goroutine to its thread and starts a cpuMeter.
func startCPU() *cpuMeter {
	runtime.LockOSThread()
	m := &cpuMeter{}
	m.resume()
	return m
}

// pause stops counting; resume starts again.
func (m *cpuMeter) pause() {
	m.thread += threadCPUTime() - m.thread0
	m.process += int64(cpuTime()) - m.process0
}

func (m *cpuMeter) resume() { m.thread0, m.process0 = threadCPUTime(), int64(cpuTime()) }

// report stops the meter, unlocks the thread and reports the CPU time
// counted per op: thread-cpu-ns/op for the thread, cpu-ns/op for the
// process.
func (m *cpuMeter) report(b *testing.B, ops int) {
	m.pause()
	runtime.UnlockOSThread()
	if ops > 0 {
		b.ReportMetric(float64(m.thread)/float64(ops), "thread-cpu-ns/op")
		b.ReportMetric(float64(m.process)/float64(ops), "cpu-ns/op")
	}
}

// threadCPUTime is the calling thread's user plus system CPU time, in ns.
func threadCPUTime() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
