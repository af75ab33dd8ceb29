//go:build linux

package comet

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A minimal io_uring binding, enough to measure a room fan-out of small
// sends submitted with one io_uring_enter against one write(2) per member.
// It is test code: the comet does not use io_uring. The structure layouts
// and constants are the kernel's user ABI (include/uapi/linux/io_uring.h),
// which is stable and the same on every 64-bit architecture.

const (
	ioringSetupSQPoll     = 1 << 1 // IORING_SETUP_SQPOLL: a kernel thread polls the SQ
	ioringFeatSingleMmap  = 1 << 0 // IORING_FEAT_SINGLE_MMAP: SQ and CQ rings share one mapping
	ioringOffSQRing       = 0      // IORING_OFF_SQ_RING
	ioringOffCQRing       = 0x8000000
	ioringOffSQEs         = 0x10000000
	ioringEnterGetEvents  = 1 << 0 // IORING_ENTER_GETEVENTS: wait for min_complete CQEs
	ioringEnterSQWakeup   = 1 << 1 // IORING_ENTER_SQ_WAKEUP: wake a sleeping SQ thread
	ioringSQNeedWakeup    = 1 << 0 // IORING_SQ_NEED_WAKEUP in the SQ ring's flags
	ioringOpSend          = 26     // IORING_OP_SEND: send(2) on a socket
	iosqeFixedFile        = 1 << 0 // IOSQE_FIXED_FILE: fd is an index into the registered files
	ioringRegisterFiles   = 2      // IORING_REGISTER_FILES
	ioringSQEntriesFanout = 1024   // ring size for the fan-out benchmarks
)

// ioSQRingOffsets is struct io_sqring_offsets: where the SQ ring's fields
// lie in its mapping.
type ioSQRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	resv2                                                           uint64
}

// ioCQRingOffsets is struct io_cqring_offsets.
type ioCQRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	resv2                                                           uint64
}

// ioURingParams is struct io_uring_params (120 bytes), filled in by
// io_uring_setup.
type ioURingParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  ioSQRingOffsets
	cqOff                                                                  ioCQRingOffsets
}

// ioURingSQE is struct io_uring_sqe (64 bytes) with the unions named by
// the member a send uses.
type ioURingSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	msgFlags    uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	fileIndex   uint32
	addr3       uint64
	_           uint64
}

// ioURingCQE is struct io_uring_cqe (16 bytes; rings set up without
// IORING_SETUP_CQE32).
type ioURingCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// The layouts must match the kernel's byte for byte.
var _ = [1]struct{}{}[unsafe.Sizeof(ioURingParams{})-120]
var _ = [1]struct{}{}[unsafe.Sizeof(ioURingSQE{})-64]
var _ = [1]struct{}{}[unsafe.Sizeof(ioURingCQE{})-16]

// ioURing is one ring, used by one goroutine at a time. The kernel reads
// the SQ tail and writes the SQ head and CQ tail; this side writes the SQ
// tail and the CQ head. Those four words are shared with the kernel and
// accessed only through sync/atomic (sequentially consistent, so at least
// the release/acquire order the ABI asks for): an SQE is written before
// the tail that publishes it, and a CQE is read after the tail that
// covers it.
type ioURing struct {
	fd                   int
	sqMem, cqMem, sqeMem []byte
	cqShared             bool // cqMem is sqMem (IORING_FEAT_SINGLE_MMAP)
	sqHead, sqTail       *uint32
	sqFlags              *uint32
	sqMask, sqEntries    uint32
	sqes                 []ioURingSQE
	cqHead, cqTail       *uint32
	cqMask               uint32
	cqes                 []ioURingCQE
	sqpoll               bool
	enters               int // io_uring_enter calls made, for the benchmark's enters/op
}

// newIOURing sets up a ring of entries SQEs (the kernel rounds up to a
// power of two; the CQ gets twice as many) with the given IORING_SETUP_
// flags, and maps its rings. sqIdleMs is the SQ thread's idle time before
// it sleeps, with IORING_SETUP_SQPOLL.
func newIOURing(entries, flags, sqIdleMs uint32) (*ioURing, error) {
	p := ioURingParams{flags: flags, sqThreadIdle: sqIdleMs}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, os.NewSyscallError("io_uring_setup", errno)
	}
	r := &ioURing{fd: int(fd), sqpoll: flags&ioringSetupSQPoll != 0}
	if err := r.mapRings(&p); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// mapRings maps the SQ and CQ rings (one mapping when the kernel offers
// IORING_FEAT_SINGLE_MMAP) and the SQE array, and points the ring's
// fields into them.
func (r *ioURing) mapRings(p *ioURingParams) error {
	const prot, flags = unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED | unix.MAP_POPULATE
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(ioURingCQE{})))
	single := p.features&ioringFeatSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	if r.sqMem, err = unix.Mmap(r.fd, ioringOffSQRing, sqSize, prot, flags); err != nil {
		return fmt.Errorf("mmap SQ ring: %w", err)
	}
	if single {
		r.cqMem, r.cqShared = r.sqMem, true
	} else if r.cqMem, err = unix.Mmap(r.fd, ioringOffCQRing, cqSize, prot, flags); err != nil {
		return fmt.Errorf("mmap CQ ring: %w", err)
	}
	sqeSize := int(p.sqEntries) * int(unsafe.Sizeof(ioURingSQE{}))
	if r.sqeMem, err = unix.Mmap(r.fd, ioringOffSQEs, sqeSize, prot, flags); err != nil {
		return fmt.Errorf("mmap SQEs: %w", err)
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead, r.sqTail, r.sqFlags = u32(r.sqMem, p.sqOff.head), u32(r.sqMem, p.sqOff.tail), u32(r.sqMem, p.sqOff.flags)
	r.sqMask, r.sqEntries = *u32(r.sqMem, p.sqOff.ringMask), *u32(r.sqMem, p.sqOff.ringEntries)
	r.sqes = unsafe.Slice((*ioURingSQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqHead, r.cqTail = u32(r.cqMem, p.cqOff.head), u32(r.cqMem, p.cqOff.tail)
	r.cqMask = *u32(r.cqMem, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*ioURingCQE)(unsafe.Pointer(&r.cqMem[p.cqOff.cqes])), p.cqEntries)
	// The SQ ring's array maps ring slots to SQE indexes. Slot i always
	// names SQE i, so an SQE is filled at the slot its tail position takes.
	array := unsafe.Slice(u32(r.sqMem, p.sqOff.array), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	return nil
}

// close unmaps the rings and closes the ring's descriptor, which ends the
// SQ thread if there is one and drops the registered files.
func (r *ioURing) close() {
	if r.cqMem != nil && !r.cqShared {
		_ = unix.Munmap(r.cqMem)
	}
	for _, m := range [][]byte{r.sqeMem, r.sqMem} {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	r.sqeMem, r.cqMem, r.sqMem = nil, nil, nil
	_ = unix.Close(r.fd)
}

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

// sendBatch sends frame to every socket in fds (at most the ring's size):
// it queues one IORING_OP_SEND per socket, submits them and waits for all
// their completions with one io_uring_enter (more only when a wait is
// interrupted). With fixed, the sockets are registered files, fds[i] at
// index first+i. frame must stay where it is until sendBatch returns
// (memory outside the Go heap, a mapping). sendBatch fails unless every
// send wrote all of frame.
func (r *ioURing) sendBatch(fds []int, first int, frame []byte, fixed bool) error {
	n := uint32(len(fds))
	tail := atomic.LoadUint32(r.sqTail)
	if free := r.sqEntries - (tail - atomic.LoadUint32(r.sqHead)); n > free {
		return fmt.Errorf("io_uring: %d sends, %d free SQEs", n, free)
	}
	addr := uint64(uintptr(unsafe.Pointer(&frame[0])))
	for i, fd := range fds {
		sqe := &r.sqes[tail&r.sqMask]
		*sqe = ioURingSQE{opcode: ioringOpSend, fd: int32(fd), addr: addr, len: uint32(len(frame)), userData: uint64(first + i)}
		if fixed {
			sqe.flags, sqe.fd = iosqeFixedFile, int32(first+i)
		}
		tail++
	}
	atomic.StoreUint32(r.sqTail, tail) // publishes the SQEs written above

	var done uint32
	var firstErr error
	for done < n {
		var toSubmit uint32
		enterFlags := uintptr(ioringEnterGetEvents)
		if r.sqpoll {
			// The SQ thread takes the SQEs; it needs a wake-up only
			// when it went to sleep after sqIdleMs without work.
			if atomic.LoadUint32(r.sqFlags)&ioringSQNeedWakeup != 0 {
				enterFlags |= ioringEnterSQWakeup
			}
		} else {
			toSubmit = tail - atomic.LoadUint32(r.sqHead) // not yet consumed by the kernel
		}
		r.enters++
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit),
			uintptr(n-done), enterFlags, 0, 0)
		if errno != 0 && errno != unix.EINTR {
			return os.NewSyscallError("io_uring_enter", errno)
		}
		// Reap whatever completed, even after EINTR: the kernel may have
		// submitted (and completed) part of the batch before the signal.
		head := atomic.LoadUint32(r.cqHead)
		for cqTail := atomic.LoadUint32(r.cqTail); head != cqTail; head++ {
			cqe := r.cqes[head&r.cqMask]
			switch {
			case firstErr != nil:
			case cqe.res < 0:
				firstErr = fmt.Errorf("io_uring send %d: %w", cqe.userData, unix.Errno(-cqe.res))
			case int(cqe.res) != len(frame):
				firstErr = fmt.Errorf("io_uring send %d: %d of %d bytes", cqe.userData, cqe.res, len(frame))
			}
			done++
		}
		atomic.StoreUint32(r.cqHead, head) // frees the CQEs read above
	}
	// An SQ thread posts the completions of the sends it issues inline
	// before it moves the SQ head past them: wait for the head, so the
	// next batch finds the ring free.
	for r.sqpoll && atomic.LoadUint32(r.sqHead) != tail {
		runtime.Gosched()
	}
	return firstErr
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
