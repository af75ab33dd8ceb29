//go:build linux

package comet

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The io_uring half of BenchmarkSyscallFloor, on the comet's own binding
// (uring_linux.go).

const (
	ioringSQEntriesFanout = 1024   // ring size for the fan-out benchmarks
	iosqeFixedFile        = 1 << 0 // IOSQE_FIXED_FILE: fd is an index into the registered files
	ioringRegisterFiles   = 2      // IORING_REGISTER_FILES
)

// registerFiles registers fds as the ring's fixed files: an SQE with
// IOSQE_FIXED_FILE names fds[i] by i, and the kernel skips the
// per-request descriptor lookup and reference count.
func (r *ioURing) registerFiles(fds []int) error {
	files := make([]int32, len(fds))
	for i, fd := range fds {
		files[i] = int32(fd)
	}
	// The kernel copies the array during the call.
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), ioringRegisterFiles,
		uintptr(unsafe.Pointer(&files[0])), uintptr(len(files)), 0, 0)
	if errno != 0 {
		return os.NewSyscallError("io_uring_register", errno)
	}
	return nil
}

// sendBatch sends frame to every socket in fds (at most the ring's size)
// with one IORING_OP_SEND each, submitted and waited for together
// (submit). With fixed, the sockets are registered files, fds[i] at index
// first+i. frame must stay where it is until sendBatch returns (memory
// outside the Go heap, a mapping). sendBatch fails unless every send
// wrote all of frame.
func (r *ioURing) sendBatch(fds []int, first int, frame []byte, fixed bool) error {
	for i, fd := range fds {
		var flags uint8
		if fixed {
			flags, fd = iosqeFixedFile, first+i
		}
		if !r.prepSend(int32(fd), frame, flags) {
			return fmt.Errorf("io_uring: %d sends, %d SQEs", len(fds), r.size())
		}
	}
	res := make([]int32, len(fds))
	if err := r.submit(res); err != nil {
		return err
	}
	for i, n := range res {
		switch {
		case n < 0:
			return fmt.Errorf("io_uring send %d: %w", first+i, unix.Errno(-n))
		case int(n) != len(frame):
			return fmt.Errorf("io_uring send %d: %d of %d bytes", first+i, n, len(frame))
		}
	}
	return nil
}

// benchIOURingFanout is the io_uring half of BenchmarkSyscallFloor: the
// fan-out tcp_fanout_1000 makes with one write(2) per socket, made here
// with one IORING_OP_SEND per socket and one io_uring_enter per n sends
// (n = 1,000; the ring has 1,024 entries), which submits them and waits
// for all of them. ns/op, thread-cpu-ns/op and cpu-ns/op are per send, as
// for tcp_fanout_1000; enters/op is io_uring_enter calls per send.
//
// iouring_fanout_1000 names sockets by descriptor; iouring_fixed_fanout_1000
// registers them first (IORING_REGISTER_FILES); iouring_unbatched_fanout_1000
// makes one io_uring_enter per send: the same kernel path, no batching.
// iouring_sqpoll_fanout_1000 adds IORING_SETUP_SQPOLL: a kernel thread of
// the process takes the SQEs from the ring, and the benchmark enters the
// kernel only to wait for the completions. That thread spins a core for up
// to a second after each batch, so on a machine with few cores its number
// is informative, not a configuration to run; its thread-cpu-ns/op leaves
// out the sends the SQ thread makes, its cpu-ns/op does not. A variant the
// kernel refuses (no io_uring, disabled, or not permitted) is skipped with
// the reason.
func benchIOURingFanout(b *testing.B, frame []byte, n int) {
	for _, v := range []struct {
		name  string
		flags uint32
		fixed bool
		batch int // sends per io_uring_enter
	}{
		{"iouring_fanout_1000", 0, false, ioringSQEntriesFanout},
		{"iouring_fixed_fanout_1000", 0, true, ioringSQEntriesFanout},
		{"iouring_sqpoll_fanout_1000", ioringSetupSQPoll, true, ioringSQEntriesFanout},
		{"iouring_unbatched_fanout_1000", 0, false, 1},
	} {
		b.Run(v.name, func(b *testing.B) {
			r, err := newIOURing(ioringSQEntriesFanout, v.flags, 1000)
			if err != nil {
				b.Skipf("io_uring unavailable: %v", err)
			}
			defer r.close()
			fds := loopbackPeers(b, n)
			if v.fixed {
				if err := r.registerFiles(fds); err != nil {
					b.Skipf("io_uring files: %v", err)
				}
			}
			buf := mappedFrame(b, frame)
			if err := r.sendBatch(fds[:1], 0, buf, v.fixed); err != nil { // checks the path before timing it
				if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
					b.Skipf("io_uring send: %v", err)
				}
				b.Fatal(err)
			}
			r.enters = 0
			cpu := startCPU()
			b.ResetTimer()
			for sent := 0; sent < b.N; {
				k := min(n, b.N-sent)
				for first := 0; first < k; first += v.batch {
					end := min(first+v.batch, k)
					if err := r.sendBatch(fds[first:end], first, buf, v.fixed); err != nil {
						b.Fatal(err)
					}
				}
				sent += k
			}
			b.StopTimer()
			cpu.report(b, b.N)
			b.ReportMetric(float64(r.enters)/float64(b.N), "enters/op")
		})
	}

	// The _unread pair: the same fan-out by write(2) and by io_uring, to
	// peers nobody reads (drained every 20 rounds with the clock and the
	// CPU meter stopped), so a send wakes no reader on this machine, as
	// with a remote client.
	for _, uring := range []bool{false, true} {
		name := "tcp_fanout_1000_unread"
		if uring {
			name = "iouring_fanout_1000_unread"
		}
		b.Run(name, func(b *testing.B) {
			var r *ioURing
			if uring {
				var err error
				if r, err = newIOURing(ioringSQEntriesFanout, 0, 0); err != nil {
					b.Skipf("io_uring unavailable: %v", err)
				}
				defer r.close()
			}
			near, far := loopbackPairs(b, n, false)
			for _, fd := range far {
				if err := unix.SetNonblock(fd, true); err != nil {
					b.Fatal(err)
				}
			}
			buf := mappedFrame(b, frame)
			send := func(fds []int) error {
				if r != nil {
					return r.sendBatch(fds, 0, buf, false)
				}
				for _, fd := range fds {
					if m, err := unix.Write(fd, buf); err != nil || m != len(buf) {
						return fmt.Errorf("write: %d of %d bytes: %v", m, len(buf), err)
					}
				}
				return nil
			}
			rbuf := make([]byte, 64<<10)
			drain := func() {
				for _, fd := range far {
					for {
						if m, err := unix.Read(fd, rbuf); m <= 0 || err != nil {
							break
						}
					}
				}
			}
			cpu := startCPU()
			b.ResetTimer()
			for sent, rounds := 0, 0; sent < b.N; rounds++ {
				if rounds > 0 && rounds%20 == 0 {
					b.StopTimer()
					cpu.pause()
					drain()
					cpu.resume()
					b.StartTimer()
				}
				k := min(n, b.N-sent)
				if err := send(near[:k]); err != nil {
					b.Fatal(err)
				}
				sent += k
			}
			b.StopTimer()
			cpu.report(b, b.N)
		})
	}
}

// mappedFrame copies frame to a page mapped for the benchmark, outside
// the Go heap: the kernel reads it after the call that names it (an SQE)
// returns, so it must not move.
func mappedFrame(b *testing.B, frame []byte) []byte {
	page, err := unix.Mmap(-1, 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = unix.Munmap(page) })
	return page[:copy(page, frame)]
}
