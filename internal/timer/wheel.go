// Package timer provides a hashed timing wheel shared by many connections,
// for coarse timeouts (handshake, session/heartbeat) where one runtime timer
// per connection would cost too much memory and scheduler work.
//
// An [Entry] is embedded by value in the owner's struct (32 bytes on 64-bit
// platforms, plus one 8-byte pointer in a slot slice while armed). The owner
// implements [Expirer], so arming needs no closure allocation:
//
//	type conn struct {
//		timer timer.Entry
//		// ...
//	}
//
//	func (c *conn) Expire() { c.sock.Close() } // quick, never blocks
//
//	w.Add(&c.timer, 5*time.Second, c) // handshake timeout
//	w.Reset(&c.timer, 90*time.Second) // on every heartbeat
//	w.Del(&c.timer)                   // on close
//
// Accuracy: an entry never fires before its deadline; it fires on the first
// tick at or after it, so between the deadline and deadline + tick, plus the
// scheduling latency of the wheel goroutine and the time spent running the
// Expire calls due before it on the same tick. Time is measured on the
// monotonic clock, so wall-clock steps do not fire or delay entries.
package timer

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults used by [NewWheel] for arguments ≤ 0, and the upper bounds it
// clamps larger arguments to.
const (
	DefaultTick   = 500 * time.Millisecond
	DefaultSlots  = 256 // span 128 s at the default tick: covers a 90 s session timeout in one round
	MaxSlots      = 1 << 16
	MaxShards     = 1 << 10
	maxShardsAuto = 64
	// maxCells bounds shards × slots: each is a 24-byte slice header
	// allocated up front (24 MiB at this bound).
	maxCells = 1 << 20
)

// Expirer is what an armed [Entry] calls when its deadline has passed.
//
// Expire runs on the wheel goroutine, outside every wheel lock, once per
// arming. It must be quick and must not block: every other entry due on the
// same tick waits for it. Closing a socket or sending on a buffered channel
// without blocking is fine; network writes are not. It may call Add, Reset,
// Del and Len on any entry (including re-arming its own), but not
// [Wheel.Stop]. A panic in Expire crashes the process.
type Expirer interface{ Expire() }

// Entry is one timeout, embedded by value in its owner. The zero value is an
// unarmed entry. An Entry must not be copied after its first use and belongs
// to the first Wheel it is added to: it must not be used with another Wheel.
type Entry struct {
	// when is the deadline in nanoseconds since the wheel's epoch, at least
	// 1; 0 means not armed. It is written under the shard lock except for
	// the lock-free raise in Reset, which only ever changes one non-zero
	// value to a larger one (by CompareAndSwap, so it cannot resurrect an
	// entry the wheel has just fired or Del has just disarmed).
	when atomic.Int64
	// f is the callback target; guarded by the shard lock; nil when not
	// armed, so that a fired or deleted entry does not keep its owner
	// reachable through itself.
	f Expirer
	// loc is (shard index + 1) << 16 | slot index. The shard part is set
	// once, by CompareAndSwap from 0 on the first Add, and never changes, so
	// Reset and Del can find the shard without a lock. The slot part is
	// written under the shard lock.
	loc atomic.Uint32
	// pos is 1 + the index of the entry in its slot slice; 0 when it is in
	// no slot. Guarded by the shard lock. pos != 0 exactly when when != 0,
	// except inside the wheel's critical section that fires the entry.
	pos int32
}

func (e *Entry) slot() int { return int(uint16(e.loc.Load())) }

// setSlot records the slot index; call with the shard lock held.
func (e *Entry) setSlot(s int) {
	l := e.loc.Load()
	e.loc.Store(l&^0xffff | uint32(s))
}

// shard is an independent part of the wheel: its own lock and slots. Entries
// are spread over shards round robin on their first Add.
type shard struct {
	mu    sync.Mutex
	cur   int64 // last tick number processed; new entries go after it
	n     int   // armed entries
	slots [][]*Entry
	_     [64]byte // keep neighbouring shards' locks off one cache line
}

// Wheel is a hashed timing wheel: slots × tick wide, sharded to spread lock
// contention, advanced by one goroutine (see [Wheel.Start]). Deadlines
// beyond the span work: an entry whose slot comes up before its deadline is
// checked and moved on. All methods are safe for concurrent use.
type Wheel struct {
	tick   int64 // nanoseconds
	nslots int64
	shards []shard
	rr     atomic.Uint32 // round-robin shard assignment

	// nanotime returns the monotonic time in nanoseconds since the wheel
	// was created (≥ 0). Deadlines are on this scale.
	nanotime func() int64

	// Owned by the goroutine that advances the wheel (tickAt callers).
	cur   int64     // last tick number processed
	fired []Expirer // reused buffer of callbacks to run outside the lock

	mu      sync.Mutex // guards started, stopped
	started bool
	stopped bool
	stop    chan struct{}
	done    chan struct{}
}

// NewWheel returns a stopped wheel that advances every tick and has slots
// slots in each of shards shards. Arguments ≤ 0 select the defaults:
// [DefaultTick], [DefaultSlots], and 2 × GOMAXPROCS shards (at most 64).
// slots is clamped to [MaxSlots], then shards to [MaxShards] and to at most
// 2^20 / slots (the wheel allocates a 24-byte slice header per slot per
// shard up front: 384 KiB with the defaults on 64 CPUs). A tick below 1ms is
// raised to 1ms.
//
// Choose slots × tick at least as long as the common timeout, so that most
// entries are looked at once; longer deadlines cost one look per span.
func NewWheel(tick time.Duration, slots, shards int) *Wheel {
	epoch := time.Now()
	// time.Since reads only the monotonic clock (about half the cost of
	// time.Now, which also reads the wall clock), and a wall-clock step
	// does not move it.
	return newWheel(tick, slots, shards, func() int64 { return int64(time.Since(epoch)) })
}

// newWheel is NewWheel with an injectable clock, for tests.
func newWheel(tick time.Duration, slots, shards int, nanotime func() int64) *Wheel {
	if tick <= 0 {
		tick = DefaultTick
	}
	tick = max(tick, time.Millisecond)
	if slots <= 0 {
		slots = DefaultSlots
	}
	slots = min(slots, MaxSlots)
	if shards <= 0 {
		shards = min(2*runtime.GOMAXPROCS(0), maxShardsAuto)
	}
	shards = max(min(shards, MaxShards, maxCells/slots), 1)
	w := &Wheel{
		tick:     int64(tick),
		nslots:   int64(slots),
		shards:   make([]shard, shards),
		nanotime: nanotime,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for i := range w.shards {
		w.shards[i].slots = make([][]*Entry, slots)
	}
	return w
}

// Start starts the goroutine that advances the wheel every tick. It is a
// no-op if the wheel was already started or stopped.
func (w *Wheel) Start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.stopped {
		return
	}
	w.started = true
	go w.run()
}

// Stop stops the wheel goroutine and waits for it to return, including any
// Expire call in progress. It is idempotent and may be called without Start,
// but not from Expire (that would deadlock). Entries stay armed; after Stop
// nothing fires any more.
func (w *Wheel) Stop() {
	w.mu.Lock()
	started := w.started
	if !w.stopped {
		w.stopped = true
		close(w.stop)
	}
	w.mu.Unlock()
	if started {
		<-w.done
	}
}

func (w *Wheel) run() {
	defer close(w.done)
	t := time.NewTicker(time.Duration(w.tick))
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.tickAt(w.nanotime())
		}
	}
}

// Add arms e to call f.Expire() once, d from now (d ≤ 0: on the next tick).
// If e is already armed, its deadline and target are replaced and only the
// new arming fires. f must not be nil.
func (w *Wheel) Add(e *Entry, d time.Duration, f Expirer) {
	if f == nil {
		panic("timer: Add with a nil Expirer")
	}
	sh := w.assign(e)
	when := w.deadline(d)
	sh.mu.Lock()
	s := w.slotFor(sh, when)
	e.f = f
	e.when.Store(when)
	if e.pos == 0 {
		sh.insert(e, s)
		sh.n++
	} else if e.slot() != s {
		sh.remove(e)
		sh.insert(e, s)
	}
	sh.mu.Unlock()
}

// Reset re-arms the armed entry e to fire d from now, and reports whether e
// was armed. It does nothing and returns false if e is not armed: never
// added, deleted, or already fired (or firing: then Expire is being or has
// been called for the current arming).
//
// Moving the deadline later, the common case for a heartbeat, is one atomic
// compare-and-swap and takes no lock: the wheel notices the later deadline
// when the entry's slot comes up and moves the entry on. Moving it earlier
// takes the shard lock to move the entry to an earlier slot.
func (w *Wheel) Reset(e *Entry, d time.Duration) bool {
	when := w.deadline(d)
	for {
		old := e.when.Load()
		switch {
		case old == 0:
			return false
		case when < old:
			return w.resetEarlier(e, when)
		case when == old || e.when.CompareAndSwap(old, when):
			return true
		}
	}
}

func (w *Wheel) resetEarlier(e *Entry, when int64) bool {
	sh := w.shardOf(e)
	if sh == nil {
		return false
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e.pos == 0 {
		return false
	}
	e.when.Store(when)
	if s := w.slotFor(sh, when); s != e.slot() {
		sh.remove(e)
		sh.insert(e, s)
	}
	return true
}

// Del disarms e and reports whether it stopped e from firing. It returns
// false if e was not armed: never added, already deleted, or already fired
// (then Expire may still be running or about to run on the wheel goroutine,
// like time.Timer.Stop). It is O(1) and drops the wheel's references to e
// and its Expirer at once, so the owner can be collected.
func (w *Wheel) Del(e *Entry) bool {
	if e.when.Load() == 0 {
		return false
	}
	sh := w.shardOf(e)
	if sh == nil {
		return false
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e.pos == 0 {
		return false
	}
	sh.remove(e)
	sh.n--
	e.when.Store(0)
	e.f = nil
	return true
}

// Len returns the number of armed entries.
func (w *Wheel) Len() int {
	n := 0
	for i := range w.shards {
		sh := &w.shards[i]
		sh.mu.Lock()
		n += sh.n
		sh.mu.Unlock()
	}
	return n
}

// deadline converts a duration from now into an entry deadline.
func (w *Wheel) deadline(d time.Duration) int64 {
	now := w.nanotime()
	var when int64
	if d > 0 && now > math.MaxInt64-int64(d) {
		when = math.MaxInt64
	} else {
		when = now + int64(d)
	}
	return max(when, 1) // 0 means not armed
}

// slotFor returns the slot for deadline when: that of the first tick at or
// after it, or of the next tick to process if that one has passed. Call with
// sh.mu held.
func (w *Wheel) slotFor(sh *shard, when int64) int {
	k := when / w.tick
	if when%w.tick != 0 {
		k++
	}
	k = max(k, sh.cur+1)
	return int(k % w.nslots)
}

// assign returns e's shard, choosing one round robin on first use.
func (w *Wheel) assign(e *Entry) *shard {
	for {
		if sh := w.shardOf(e); sh != nil {
			return sh
		}
		i := (w.rr.Add(1) - 1) % uint32(len(w.shards))
		if e.loc.CompareAndSwap(0, (i+1)<<16) {
			return &w.shards[i]
		}
	}
}

// shardOf returns e's shard, or nil if e was never added.
func (w *Wheel) shardOf(e *Entry) *shard {
	i := e.loc.Load() >> 16
	if i == 0 {
		return nil
	}
	if int(i) > len(w.shards) {
		panic("timer: Entry used with a Wheel other than the one it was first added to")
	}
	return &w.shards[i-1]
}

// insert appends e to slot s. Call with sh.mu held.
func (sh *shard) insert(e *Entry, s int) {
	sh.slots[s] = append(sh.slots[s], e)
	e.pos = int32(len(sh.slots[s]))
	e.setSlot(s)
}

// remove takes e out of its slot by swapping the last entry into its place.
// Call with sh.mu held.
func (sh *shard) remove(e *Entry) {
	s := e.slot()
	sl := sh.slots[s]
	i, last := int(e.pos-1), len(sl)-1
	if i != last {
		sl[i] = sl[last]
		sl[i].pos = int32(i + 1)
	}
	sl[last] = nil
	sh.slots[s] = sl[:last]
	e.pos = 0
}

// tickAt advances the wheel to time now (on the nanotime scale): it processes, in order, every tick
// number after the last one processed up to t's, at most one full turn, and
// runs the Expire calls due. It is called by the wheel goroutine, or
// directly by tests with a fake clock, by one goroutine at a time.
func (w *Wheel) tickAt(now int64) {
	target := now / w.tick
	if now < 0 || target <= w.cur {
		return
	}
	start := w.cur + 1
	if target-w.cur > w.nslots {
		start = target - w.nslots + 1 // one turn visits every slot
	}
	for k := start; k <= target; k++ {
		for i := range w.shards {
			w.fired = w.shards[i].advance(w, k, now, w.fired[:0])
			for j, f := range w.fired {
				w.fired[j] = nil
				f.Expire()
			}
		}
		w.cur = k
	}
}

// advance processes slot k of sh at time now: it appends the Expirers of
// the entries due to fired and disarms those entries, and moves the others
// whose deadline lies in a later tick of another slot to that slot.
func (sh *shard) advance(w *Wheel, k, now int64, fired []Expirer) []Expirer {
	s := int(k % w.nslots)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.cur = k
	sl := sh.slots[s]
	for i := 0; i < len(sl); {
		e := sl[i]
		when := e.when.Load()
		for when <= now && !e.when.CompareAndSwap(when, 0) {
			when = e.when.Load() // raised by a concurrent Reset
		}
		fire, ns := when <= now, s
		if fire {
			fired = append(fired, e.f)
			e.f = nil
			sh.n--
		} else {
			// when > now ≥ k*tick, so its tick is after k.
			kw := when / w.tick
			if when%w.tick != 0 {
				kw++
			}
			if ns = int(kw % w.nslots); ns == s {
				i++ // due in a later round of this slot
				continue
			}
		}
		// Swap-remove sl[i]; the entry swapped in is looked at next.
		last := len(sl) - 1
		if i != last {
			sl[i] = sl[last]
			sl[i].pos = int32(i + 1)
		}
		sl[last] = nil
		sl = sl[:last]
		e.pos = 0
		if !fire {
			sh.insert(e, ns) // ns != s: does not touch sl
		}
	}
	// Give back the memory of a slot that held many more entries than now.
	if c := cap(sl); c >= 64 && len(sl) <= c/4 {
		if len(sl) == 0 {
			sl = nil
		} else {
			sl = append(make([]*Entry, 0, 2*len(sl)), sl...)
		}
	}
	sh.slots[s] = sl
	return fired
}
