package comet

import (
	"context"
	"fmt"
	"hash/maphash"
	"time"

	"github.com/gobwas/ws"
	"github.com/goim/goim/api/protocol"
)

// transport is how a channel frames what it sends.
type transport uint8

const (
	transportTCP transport = iota
	transportTLS
	transportWS
	transportWSS
	numTransports
)

var transportNames = [numTransports]string{"tcp", "tls", "ws", "wss"}

func (t transport) String() string { return transportNames[t] }

// ws reports whether the transport frames goim frames as WebSocket messages.
func (t transport) ws() bool { return t == transportWS || t == transportWSS }

// frame is one server frame encoded once for each transport and shared,
// read-only, by every recipient: no per-recipient copy or allocation.
type frame struct {
	tcp []byte // the goim frame; for op 9 the inner frames alone
	ws  []byte // one complete WebSocket message (header and payload)
}

func newFrame(p *protocol.Proto) *frame {
	f := &frame{}
	if p.Op == protocol.OpRaw {
		f.tcp = p.Body // aliases the request: it is never modified
	} else {
		f.tcp = p.AppendTCP(nil)
	}
	f.ws = appendWS(nil, p)
	return f
}

func (f *frame) bytes(t transport) []byte {
	if t.ws() {
		return f.ws
	}
	return f.tcp
}

// appendWS appends p as one unmasked binary WebSocket message.
func appendWS(dst []byte, p *protocol.Proto) []byte {
	n := protocol.HeaderSize + len(p.Body)
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(n)}
	dst = appendWSHeader(dst, h)
	return p.AppendWS(dst)
}

func appendWSHeader(dst []byte, h ws.Header) []byte {
	w := appendWriter{b: dst}
	_ = ws.WriteHeader(&w, h) // cannot fail on an appendWriter
	return w.b
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// encodeReply frames a reply for one channel.
func (c *Channel) encodeReply(p *protocol.Proto) []byte {
	if c.tr.ws() {
		return appendWS(nil, p)
	}
	return p.AppendTCP(nil)
}

// PushResult counts what happened to the keys of one push.
type PushResult struct {
	Delivered, Absent, Filtered, Dropped int32
}

// PushKeys queues p on every listed key's channel that watches op.
func (s *Server) PushKeys(keys []string, op int32, p *protocol.Proto) PushResult {
	var res PushResult
	f := newFrame(p)
	for _, key := range keys {
		c := s.bucket(key).get(key)
		switch {
		case c == nil:
			res.Absent++
		case !c.watches(op):
			res.Filtered++
		default:
			switch c.push(f.bytes(c.tr)) {
			case pushQueued:
				res.Delivered++
			case pushDropped:
				res.Dropped++
			case pushClosed:
				res.Absent++
			}
		}
	}
	s.metrics.kindPushes("keys", int(res.Delivered), int(res.Dropped))
	return res
}

type roomJob struct {
	room string
	f    *frame
}

// BroadcastRoom queues p for every member of room. Batches for one room are
// delivered in the order the calls arrive: a room always goes to the same
// worker. It waits for room in the worker's queue until ctx ends.
func (s *Server) BroadcastRoom(ctx context.Context, room string, p *protocol.Proto) error {
	q := s.roomQueues[maphash.String(s.seed, room)%uint64(len(s.roomQueues))]
	return enqueueTimeout(ctx, s.ctx.Done(), q, roomJob{room: room, f: newFrame(p)})
}

// Room batches that queued while a room worker was busy are merged per
// room (in order) before the fan-out, up to these bounds, so a member gets
// them in one write. This is what adapts the batching to load: a lone push
// goes out at once; while a big room's fan-out takes time, the pushes that
// arrive meanwhile share the next one.
const (
	maxRoomMerge      = 64       // batches merged into one fan-out at most
	maxRoomMergeBytes = 64 << 10 // bytes of one merged frame at most (either form)
)

func (s *Server) roomWorker(q chan roomJob) {
	jobs := make([]roomJob, 0, maxRoomMerge)
	for {
		select {
		case <-s.ctx.Done():
			return
		case j := <-q:
			jobs = append(jobs[:0], j)
		}
	gather:
		for len(jobs) < maxRoomMerge {
			select {
			case j := <-q:
				jobs = append(jobs, j)
			default:
				break gather
			}
		}
		s.fanOut(jobs)
		clear(jobs)
	}
}

// fanOut broadcasts jobs, merging each room's consecutive frames (in
// their order) while they fit maxRoomMergeBytes. Rooms are independent:
// only the order within a room is kept. Merged jobs are set to nil frames.
func (s *Server) fanOut(jobs []roomJob) {
	for i := range jobs {
		first := jobs[i]
		if first.f == nil {
			continue
		}
		n, tcpLen, wsLen := 1, len(first.f.tcp), len(first.f.ws)
		last := i
		for k := i + 1; k < len(jobs); k++ {
			j := jobs[k]
			if j.f == nil || j.room != first.room {
				continue
			}
			if tcpLen+len(j.f.tcp) > maxRoomMergeBytes || wsLen+len(j.f.ws) > maxRoomMergeBytes {
				break // the rest of this room goes in a later fan-out, in order
			}
			tcpLen += len(j.f.tcp)
			wsLen += len(j.f.ws)
			n++
			last = k
		}
		f := first.f
		if n > 1 {
			f = &frame{tcp: make([]byte, 0, tcpLen), ws: make([]byte, 0, wsLen)}
			for k := i; k <= last; k++ {
				if j := jobs[k]; j.f != nil && j.room == first.room {
					f.tcp = append(f.tcp, j.f.tcp...)
					f.ws = append(f.ws, j.f.ws...)
					jobs[k].f = nil
				}
			}
		}
		jobs[i].f = nil
		queued, dropped := s.rooms.broadcast(first.room, f)
		s.metrics.kindPushes("room", queued*n, dropped*n)
		s.metrics.roomMerged.Observe(float64(n))
	}
}

type broadcastJob struct {
	op    int32
	speed int32
	f     *frame
}

// Broadcast queues p for every channel that watches op. An unpaced
// broadcast (speed 0) goes to the broadcast worker, waiting for room in
// its queue until ctx ends. A paced one (speed channels per second) runs
// on a goroutine of its own, so its pacing delays no other push; when
// bucket.paced_broadcasts already run, it fails with ErrBusy at once.
func (s *Server) Broadcast(ctx context.Context, op, speed int32, p *protocol.Proto) error {
	j := broadcastJob{op: op, speed: speed, f: newFrame(p)}
	if speed <= 0 {
		return enqueueTimeout(ctx, s.ctx.Done(), s.broadcastQueue, j)
	}
	select {
	case s.paced <- struct{}{}:
	default:
		return fmt.Errorf("%w: %d paced broadcasts already running", ErrBusy, cap(s.paced))
	}
	if !s.goFunc(func() {
		defer func() { <-s.paced }()
		s.broadcast(j, nil)
	}) {
		<-s.paced
		return ErrServerClosed
	}
	return nil
}

func enqueueTimeout[T any](ctx context.Context, done <-chan struct{}, q chan T, v T) error {
	select {
	case q <- v:
		return nil
	default:
	}
	select {
	case q <- v:
		return nil
	case <-done:
		return ErrServerClosed
	case <-ctx.Done():
		return fmt.Errorf("%w: queue full: %w", ErrBusy, ctx.Err())
	}
}

// broadcastWorker runs the unpaced broadcasts, one after the other.
func (s *Server) broadcastWorker() {
	var chs []*Channel
	for {
		select {
		case <-s.ctx.Done():
			return
		case j := <-s.broadcastQueue:
			chs = s.broadcast(j, chs)
		}
	}
}

// broadcast pushes j to every channel watching its op, paced to j.speed
// channels per second, until done; chs is a slice to reuse, returned for
// the next call.
func (s *Server) broadcast(j broadcastJob, chs []*Channel) []*Channel {
	pace := newPacer(j.speed)
	var queued, dropped int
	defer func() { s.metrics.kindPushes("broadcast", queued, dropped) }()
	for _, b := range s.buckets {
		chs = b.channels(chs[:0])
		for _, c := range chs {
			if !c.watches(j.op) {
				continue
			}
			if !pace.wait(s.ctx.Done()) {
				clear(chs)
				return chs
			}
			switch c.push(j.f.bytes(c.tr)) {
			case pushQueued:
				queued++
			case pushDropped:
				dropped++
			}
		}
	}
	clear(chs)
	return chs
}

// pacer is a token bucket releasing speed tokens per second, with a burst of
// one tenth of a second's worth so pacing is smooth but cheap.
type pacer struct {
	speed  float64
	tokens float64
	burst  float64
	last   time.Time
	timer  *time.Timer
}

func newPacer(speed int32) *pacer {
	if speed <= 0 {
		return &pacer{}
	}
	burst := max(float64(speed)/10, 1)
	return &pacer{speed: float64(speed), burst: burst, tokens: burst, last: time.Now()}
}

// wait takes one token, sleeping until one is available. It returns false
// if done closes first.
func (p *pacer) wait(done <-chan struct{}) bool {
	if p.speed == 0 {
		return true
	}
	now := time.Now()
	p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.speed)
	p.last = now
	if p.tokens >= 1 {
		p.tokens--
		return true
	}
	d := time.Duration((1 - p.tokens) / p.speed * float64(time.Second))
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-done:
		p.timer.Stop()
		return false
	case <-p.timer.C:
	}
	p.tokens = 0
	p.last = time.Now()
	return true
}
