//go:build linux

package comet

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A minimal io_uring binding: enough to submit a room fan-out's sends,
// one IORING_OP_SEND per member, with one io_uring_enter, and to measure
// that against one write(2) per member (BenchmarkSyscallFloor). The
// structure layouts and constants are the kernel's io_uring user ABI,
// which is stable and the same on every 64-bit architecture.

const (
	ioringSetupSQPoll    = 1 << 1 // IORING_SETUP_SQPOLL: a kernel thread polls the SQ
	ioringFeatSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP: SQ and CQ rings share one mapping
	ioringOffSQRing      = 0      // IORING_OFF_SQ_RING
	ioringOffCQRing      = 0x8000000
	ioringOffSQEs        = 0x10000000
	ioringEnterGetEvents = 1 << 0 // IORING_ENTER_GETEVENTS: wait for min_complete CQEs
	ioringEnterSQWakeup  = 1 << 1 // IORING_ENTER_SQ_WAKEUP: wake a sleeping SQ thread
	ioringSQNeedWakeup   = 1 << 0 // IORING_SQ_NEED_WAKEUP in the SQ ring's flags
	ioringOpSend         = 26     // IORING_OP_SEND: send(2) on a socket
	ioringRegisterProbe  = 8      // IORING_REGISTER_PROBE
	ioURingOpSupported   = 1 << 0 // IO_URING_OP_SUPPORTED in a probe op's flags
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

// ioURingProbe is struct io_uring_probe with room for the ops up to
// IORING_OP_SEND (struct io_uring_probe_op each).
type ioURingProbe struct {
	lastOp, opsLen uint8
	resv           uint16
	resv2          [3]uint32
	ops            [ioringOpSend + 1]struct {
		op, resv uint8
		flags    uint16
		resv2    uint32
	}
}

// The layouts must match the kernel's byte for byte.
var _ = [1]struct{}{}[unsafe.Sizeof(ioURingParams{})-120]
var _ = [1]struct{}{}[unsafe.Sizeof(ioURingSQE{})-64]
var _ = [1]struct{}{}[unsafe.Sizeof(ioURingCQE{})-16]
var _ = [1]struct{}{}[unsafe.Sizeof(ioURingProbe{})-16-8*(ioringOpSend+1)]

// ioURing is one ring, used by one goroutine at a time. The kernel reads
// the SQ tail and writes the SQ head and CQ tail; this side writes the SQ
// tail and the CQ head. Those four words are shared with the kernel and
// accessed only through sync/atomic (sequentially consistent, so at least
// the release/acquire order the ABI asks for): an SQE is written before
// the tail that publishes it, and a CQE is read after the tail that
// covers it.
//
// A batch is prepared (prepSend, at most size of them) and then submitted
// and waited for (submit), which returns only once every send it
// submitted has completed: until then the kernel may read the sends'
// bytes and holds their sockets' numbers, so the caller keeps both.
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
	tail                 uint32 // the SQ tail, as far as SQEs are written
	pending              uint32 // SQEs prepared since the last submit
	// held references the bytes of the prepared sends until submit
	// returns: the kernel reads them by address, and held keeps them
	// alive and, escaping to the heap, where no stack copy moves them.
	held   [][]byte
	enters int // io_uring_enter calls made, for the benchmark's enters/op
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
	r.tail = atomic.LoadUint32(r.sqTail)
	r.held = make([][]byte, 0, r.sqEntries)
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
// SQ thread if there is one and drops the registered files. No batch may
// be in flight.
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

// size is how many sends one batch holds at most.
func (r *ioURing) size() int { return int(r.sqEntries) }

// probeSend reports an error unless the kernel supports IORING_OP_SEND
// (a kernel that has io_uring but not that op fails every send with
// EINVAL).
func (r *ioURing) probeSend() error {
	var p ioURingProbe
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), ioringRegisterProbe,
		uintptr(unsafe.Pointer(&p)), uintptr(len(p.ops)), 0, 0)
	if errno != 0 {
		return os.NewSyscallError("io_uring_register probe", errno)
	}
	if p.lastOp < ioringOpSend || p.ops[ioringOpSend].flags&ioURingOpSupported == 0 {
		return errors.New("io_uring: IORING_OP_SEND not supported")
	}
	return nil
}

// prepSend queues a send of b to the socket fd (with IOSQE_FIXED_FILE in
// sqeFlags, the index of a registered file) for the next submit, as the batch's send
// number len-so-far; submit reports its result at that index. The send
// never waits (MSG_DONTWAIT: a full socket completes with -EAGAIN or a
// short count) and raises no SIGPIPE (MSG_NOSIGNAL). The ring holds b
// until submit returns (held), and b must not be modified meanwhile. At
// most size sends are prepared per batch; prepSend reports false when the
// batch is full.
func (r *ioURing) prepSend(fd int32, b []byte, sqeFlags uint8) bool {
	if r.pending >= r.sqEntries {
		return false
	}
	sqe := &r.sqes[r.tail&r.sqMask]
	*sqe = ioURingSQE{opcode: ioringOpSend, flags: sqeFlags, fd: fd,
		addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))), len: uint32(len(b)),
		msgFlags: unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL, userData: uint64(r.pending)}
	r.held = append(r.held, b)
	r.tail++
	r.pending++
	return true
}

// errSendWithdrawn is the result (-ECANCELED) of a prepared send the
// kernel refused to take: it was not made.
const errSendWithdrawn = -int32(unix.ECANCELED)

// submit submits the prepared sends and waits for all their completions,
// with one io_uring_enter when nothing interrupts it, and writes each
// send's result to res[i] (res has room for every send): the bytes sent,
// or -errno. It returns only once the kernel is done with every send it
// took. When io_uring_enter fails (other than EINTR), or returns having
// taken none of the sends left, the sends it did not take are withdrawn
// (their result is errSendWithdrawn) and submit returns an error: the
// ring should not be used again.
func (r *ioURing) submit(res []int32) error {
	n := r.pending
	r.pending = 0
	if n == 0 {
		return nil
	}
	atomic.StoreUint32(r.sqTail, r.tail) // publishes the SQEs prepSend wrote
	var reaped, want = uint32(0), n      // want: the sends the kernel took or may still take
	var failed error
	for reaped < want {
		var toSubmit uint32
		flags := uintptr(ioringEnterGetEvents)
		if r.sqpoll {
			// The SQ thread takes the SQEs; it needs a wake-up only
			// when it went to sleep after its idle time without work.
			if atomic.LoadUint32(r.sqFlags)&ioringSQNeedWakeup != 0 {
				flags |= ioringEnterSQWakeup
			}
		} else {
			toSubmit = r.tail - atomic.LoadUint32(r.sqHead) // not yet taken by the kernel
		}
		head := atomic.LoadUint32(r.sqHead)
		r.enters++
		// With fewer taken than toSubmit, the kernel returns without
		// waiting; with EINTR, it may have taken and completed part of
		// the batch. Either way the loop reaps what completed and goes
		// on with the rest.
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit),
			uintptr(want-reaped), flags, 0, 0)
		got := r.reap(res)
		reaped += got
		if errno == unix.EINTR || got > 0 || atomic.LoadUint32(r.sqHead) != head {
			continue
		}
		if !r.sqpoll && toSubmit > 0 {
			// The kernel takes none of the rest (io_uring_enter fails,
			// or returns having taken none): withdraw it. Without an SQ
			// thread only io_uring_enter takes SQEs, so moving the tail
			// back to the head unpublishes them.
			if failed == nil {
				failed = errors.New("io_uring_enter: took no send")
				if errno != 0 {
					failed = os.NewSyscallError("io_uring_enter", errno)
				}
			}
			for p := head; p != r.tail; p++ {
				res[r.sqes[p&r.sqMask].userData] = errSendWithdrawn
			}
			want -= r.tail - head
			r.tail = head
			atomic.StoreUint32(r.sqTail, head)
			continue
		}
		// Sends the kernel took are still to complete (a send with
		// MSG_DONTWAIT completes while it is submitted, so this does
		// not happen): their bytes and sockets stay in use until they
		// do, however long that takes.
		time.Sleep(time.Millisecond)
	}
	// An SQ thread posts the completions of the sends it issues inline
	// before it moves the SQ head past them: wait for the head, so the
	// next batch finds the ring free.
	for r.sqpoll && atomic.LoadUint32(r.sqHead) != r.tail {
		runtime.Gosched()
	}
	clear(r.held) // the kernel is done with every send's bytes
	r.held = r.held[:0]
	return failed
}

// reap reads the completions posted so far into res, frees their CQEs
// and returns how many there were.
func (r *ioURing) reap(res []int32) uint32 {
	head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
	var got uint32
	for p := head; p != tail; p++ {
		cqe := &r.cqes[p&r.cqMask]
		if cqe.userData < uint64(len(res)) {
			res[cqe.userData] = cqe.res
			got++
		}
	}
	atomic.StoreUint32(r.cqHead, tail) // frees the CQEs read above
	return got
}

// sendResult turns a ring send's result into what an inline write
// reports: the bytes sent, or the socket's error. A result that is not
// the socket's failure (EAGAIN: the socket is full; a send withdrawn or
// refused by io_uring itself) reports nothing sent and no error, so the
// frame goes to the channel's write loop, which writes it through Go's
// descriptor and reports any real error itself.
func sendResult(res int32) (int, error) {
	if res >= 0 {
		return int(res), nil
	}
	switch errno := unix.Errno(-res); errno {
	case unix.EPIPE, unix.ECONNRESET, unix.ENOTCONN, unix.ETIMEDOUT, unix.ECONNABORTED,
		unix.EHOSTUNREACH, unix.ENETUNREACH, unix.ENETDOWN, unix.ESHUTDOWN:
		return 0, os.NewSyscallError("io_uring send", errno)
	}
	return 0, nil
}
