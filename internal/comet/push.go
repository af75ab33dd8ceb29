package comet

import (
	"context"
	"fmt"
	"time"

	"github.com/goim/goim/api/protocol"
)

// The pushes job sends that are not room pushes (those are in room.go):
// PushKeys to the channels of listed keys, at once on the caller's
// goroutine; Broadcast to every channel watching an op, through the
// broadcast worker or, paced, on a goroutine of its own. Either hands the
// frame to each channel's writer (Channel.push, writer.go).

// PushResult counts what happened to the keys of one push.
type PushResult struct {
	Delivered, Absent, Filtered, Dropped int32
}

// PushKeys queues p on every listed key's channel that watches op.
func (s *Server) PushKeys(keys []string, op int32, p *protocol.Proto) PushResult {
	return s.pushKeys(keys, op, p, "", nil)
}

// pushKeys is PushKeys of a push with an id and positions: reliable
// channels get it as an envelope with msgID and their key's position
// (positions[i] is keys[i]'s; positions may be empty).
func (s *Server) pushKeys(keys []string, op int32, p *protocol.Proto, msgID string, positions []*protocol.Position) PushResult {
	var res PushResult
	f := newFrame(p)
	f.id = msgID
	for i, key := range keys {
		c := s.bucket(key).get(key)
		switch {
		case c == nil:
			res.Absent++
		case !c.watches(op):
			res.Filtered++
		default:
			var r pushResult
			if c.rel != nil {
				var pos *protocol.Position
				if len(positions) == len(keys) {
					pos = positions[i]
				}
				r = c.pushReliable(f, pos)
			} else {
				r = c.push(f.bytes(c.tr))
			}
			switch r {
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

// broadcasts are what the Broadcast calls in progress hold: the queue of
// the unpaced ones, waiting for the broadcast worker, and one token per
// paced one running.
type broadcasts struct {
	queue chan broadcastJob
	paced chan struct{} // at most bucket.paced_broadcasts tokens
}

func newBroadcasts(queueLen, paced int) broadcasts {
	return broadcasts{queue: make(chan broadcastJob, queueLen), paced: make(chan struct{}, paced)}
}

// pacedRunning returns the number of paced broadcasts running.
func (b *broadcasts) pacedRunning() int { return len(b.paced) }

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
	return s.broadcastMsg(ctx, op, speed, p, "")
}

// broadcastMsg is Broadcast of a push with an id: reliable channels get
// it as an envelope with msgID, in no stream.
func (s *Server) broadcastMsg(ctx context.Context, op, speed int32, p *protocol.Proto, msgID string) error {
	j := broadcastJob{op: op, speed: speed, f: newFrame(p)}
	j.f.id = msgID
	if speed <= 0 {
		return enqueueTimeout(ctx, s.ctx.Done(), s.broadcasts.queue, j)
	}
	paced := s.broadcasts.paced
	select {
	case paced <- struct{}{}:
	default:
		return fmt.Errorf("%w: %d paced broadcasts already running", ErrBusy, cap(paced))
	}
	if !s.goFunc(func() {
		defer func() { <-paced }()
		s.broadcast(j, nil)
	}) {
		<-paced
		return ErrServerClosed
	}
	return nil
}

// enqueueTimeout puts v on q, waiting while q is full until ctx ends
// (ErrBusy) or shutdown begins (ErrServerClosed).
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
		case j := <-s.broadcasts.queue:
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
	for _, b := range s.buckets.all {
		chs = b.channels(chs[:0])
		for _, c := range chs {
			if !c.watches(j.op) {
				continue
			}
			if !pace.wait(s.ctx.Done()) {
				clear(chs)
				return chs
			}
			var r pushResult
			if c.rel != nil {
				r = c.pushReliable(j.f, nil)
			} else {
				r = c.push(j.f.bytes(c.tr))
			}
			switch r {
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
