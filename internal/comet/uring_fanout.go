package comet

// Room fan-outs through io_uring. A room worker sends a big room's frame
// to the members it finds idle with one IORING_OP_SEND each, submitted
// together with one io_uring_enter per batch, instead of one write(2)
// per member: one kernel entry per batch instead of one per member
// (BenchmarkSyscallFloor compares the two). Members busy writing get the
// frame queued, as with the write path. See writer for how a batch holds
// each member's writer role and socket.

// minRingFanout is the smallest room sent through the ring: a fan-out to
// fewer members saves few kernel entries, and keeps the write path.
const minRingFanout = 32

// ringEntries is the size of a room worker's ring: the most sends one
// io_uring_enter submits.
const ringEntries = 1024

// The server's io_uring state (Server.ringState): untried until a room
// worker first needs a ring, then works or unavailable; each is logged
// once.
const (
	ringUntried int32 = iota
	ringWorks
	ringUnavailable
)

// newFanoutRing sets up a room worker's ring; tests replace it to make
// setup fail.
var newFanoutRing = func() (*ioURing, error) {
	r, err := newIOURing(ringEntries, 0, 0)
	if err != nil {
		return nil, err
	}
	if err := r.probeSend(); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// ringBeforeSubmit, set by tests only, runs on the room worker just
// before a batch is submitted, with the batch's channels.
var ringBeforeSubmit func(chs []*Channel)

// ringBatch is one room worker's io_uring fan-out: its ring, set up on
// the first fan-out of a room of minRingFanout members or more, and the
// batch of sends being prepared. Only its worker uses it.
type ringBatch struct {
	s    *Server
	r    *ioURing // nil until first used, and after it failed
	off  bool     // the write path only: bucket.io_uring off, io_uring unavailable or failed
	chs  []*Channel
	bufs [][]byte
	res  []int32
}

func newRingBatch(s *Server) *ringBatch {
	return &ringBatch{s: s, off: !s.cfg.Bucket.IOURing}
}

// ready reports whether a fan-out to members members goes through the
// ring, setting the ring up the first time. A ring that cannot be set up
// turns this batch, and every later one of the server, to the write path.
func (rb *ringBatch) ready(members int) bool {
	if rb == nil || rb.off || members < minRingFanout {
		return false
	}
	if rb.r != nil {
		return true
	}
	s := rb.s
	if s.ringState.Load() == ringUnavailable {
		rb.off = true
		return false
	}
	r, err := newFanoutRing()
	if err != nil {
		rb.off = true
		if s.ringState.CompareAndSwap(ringUntried, ringUnavailable) {
			s.log.Info("comet: room fan-outs write with write(2): io_uring unavailable", "err", err)
		}
		return false
	}
	if s.ringState.CompareAndSwap(ringUntried, ringWorks) {
		s.log.Info("comet: room fan-outs send through io_uring", "ring_entries", r.size(), "min_members", minRingFanout)
	}
	rb.r = r
	rb.res = make([]int32, r.size())
	rb.chs = make([]*Channel, 0, r.size())
	rb.bufs = make([][]byte, 0, r.size())
	return true
}

// add sends b to c in the batch; c's writer role is held (claim with
// ring) until flush. A full batch is flushed at once: add then returns
// what flush does.
func (rb *ringBatch) add(c *Channel, b []byte) (failed int) {
	rb.r.prepSend(c.out.fd, b, 0)
	rb.chs = append(rb.chs, c)
	rb.bufs = append(rb.bufs, b)
	if len(rb.chs) == rb.r.size() {
		return rb.flush()
	}
	return 0
}

// flush submits the batch, waits for every send, and finishes each
// member's write with its result (finishRing), which gives its writer
// role up or passes it to a write loop for the rest. It returns how many
// sends failed (their channels closed). A ring that fails is closed and
// the worker goes on with the write path; the sends it did not make are
// queued for the members' write loops.
func (rb *ringBatch) flush() (failed int) {
	if len(rb.chs) == 0 {
		return 0
	}
	if ringBeforeSubmit != nil {
		ringBeforeSubmit(rb.chs)
	}
	err := rb.r.submit(rb.res)
	for i, c := range rb.chs {
		n, serr := sendResult(rb.res[i])
		if c.finishRing(rb.bufs[i], n, serr) == pushClosed {
			failed++
		}
	}
	clear(rb.chs)
	clear(rb.bufs)
	rb.chs, rb.bufs = rb.chs[:0], rb.bufs[:0]
	if err != nil {
		rb.s.log.Warn("comet: io_uring failed; this room worker writes with write(2) from now on", "err", err)
		rb.r.close()
		rb.r, rb.off = nil, true
	}
	return failed
}

// close closes the ring, if any. The batch is empty (every fan-out
// flushes it).
func (rb *ringBatch) close() {
	if rb.r != nil {
		rb.r.close()
		rb.r = nil
	}
}
