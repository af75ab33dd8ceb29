package timer

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// clock is a fake monotonic clock for the wheel: nanoseconds since its
// creation.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() int64 { return c.ns.Load() }

func (c *clock) add(d time.Duration) int64 { return c.ns.Add(int64(d)) }

// fakeWheel is a wheel on a fake clock, advanced by the test.
type fakeWheel struct {
	*Wheel
	clk *clock
}

func newFake(tick time.Duration, slots, shards int) *fakeWheel {
	clk := new(clock)
	return &fakeWheel{Wheel: newWheel(tick, slots, shards, clk.now), clk: clk}
}

// advance moves the clock forward by d in steps of at most step and ticks the
// wheel after each step.
func (f *fakeWheel) advance(d, step time.Duration) {
	for d > 0 {
		s := min(d, step)
		d -= s
		f.tickAt(f.clk.add(s))
	}
}

// elapsed is the fake time since the wheel was created.
func (f *fakeWheel) elapsed() time.Duration { return time.Duration(f.clk.now()) }

// counter counts Expire calls and records the fake time of the last one.
type counter struct {
	n     atomic.Int32
	at    atomic.Int64
	wheel *fakeWheel
}

func (c *counter) Expire() {
	c.n.Add(1)
	if c.wheel != nil {
		c.at.Store(int64(c.wheel.elapsed()))
	}
}

func (c *counter) count() int { return int(c.n.Load()) }

const tick = 100 * time.Millisecond

func TestFiresOnce(t *testing.T) {
	w := newFake(tick, 16, 4)
	var e Entry
	c := &counter{wheel: w}
	w.Add(&e, 5*time.Second, c)
	if w.Len() != 1 {
		t.Fatalf("Len = %d, want 1", w.Len())
	}
	w.advance(4900*time.Millisecond, tick)
	if c.count() != 0 {
		t.Fatalf("fired %d times before the deadline", c.count())
	}
	w.advance(tick, tick)
	if c.count() != 1 {
		t.Fatalf("fired %d times at the deadline, want 1", c.count())
	}
	if at := time.Duration(c.at.Load()); at != 5*time.Second {
		t.Errorf("fired at %v, want 5s", at)
	}
	w.advance(30*time.Second, tick)
	if c.count() != 1 {
		t.Fatalf("fired %d times, want 1", c.count())
	}
	if w.Len() != 0 {
		t.Fatalf("Len = %d after firing, want 0", w.Len())
	}
	if e.f != nil || e.pos != 0 || e.when.Load() != 0 {
		t.Fatalf("fired entry keeps state: %+v", &e)
	}
}

func TestFiresWithinOneTick(t *testing.T) {
	w := newFake(tick, 16, 4)
	var e Entry
	c := &counter{wheel: w}
	w.advance(30*time.Millisecond, time.Millisecond)
	w.Add(&e, 1010*time.Millisecond, c) // deadline 1.04s
	w.advance(time.Second, 10*time.Millisecond)
	if c.count() != 0 {
		t.Fatalf("fired before the deadline, at %v", time.Duration(c.at.Load()))
	}
	w.advance(time.Second, 10*time.Millisecond)
	if c.count() != 1 {
		t.Fatalf("fired %d times, want 1", c.count())
	}
	if at := time.Duration(c.at.Load()); at != 1100*time.Millisecond {
		t.Errorf("fired at %v, want the first tick after the deadline, 1.1s", at)
	}
}

func TestZeroAndNegativeDurationFireOnNextTick(t *testing.T) {
	w := newFake(tick, 16, 4)
	var a, b Entry
	c := &counter{}
	w.Add(&a, 0, c)
	w.Add(&b, -time.Hour, c)
	w.advance(tick, tick)
	if c.count() != 2 {
		t.Fatalf("fired %d, want 2", c.count())
	}
}

func TestResetLater(t *testing.T) {
	w := newFake(tick, 8, 2) // span 800ms: the deadline moves over several rounds
	var e Entry
	c := &counter{wheel: w}
	w.Add(&e, 5*time.Second, c)
	w.advance(3*time.Second, tick)
	if !w.Reset(&e, 5*time.Second) { // now due at 8s
		t.Fatal("Reset of an armed entry returned false")
	}
	w.advance(4900*time.Millisecond, tick)
	if c.count() != 0 {
		t.Fatalf("fired at %v, before the reset deadline 8s", time.Duration(c.at.Load()))
	}
	w.advance(tick, tick)
	if c.count() != 1 {
		t.Fatalf("fired %d times, want 1", c.count())
	}
	if at := time.Duration(c.at.Load()); at != 8*time.Second {
		t.Errorf("fired at %v, want 8s", at)
	}
}

func TestResetRepeatedlyLikeHeartbeats(t *testing.T) {
	w := newFake(tick, 32, 2)
	var e Entry
	c := &counter{wheel: w}
	w.Add(&e, 2*time.Second, c)
	for range 50 { // a heartbeat every second for 50s keeps it alive
		w.advance(time.Second, tick)
		if !w.Reset(&e, 2*time.Second) {
			t.Fatalf("entry fired at %v despite heartbeats", time.Duration(c.at.Load()))
		}
	}
	w.advance(2*time.Second, tick)
	if c.count() != 1 {
		t.Fatalf("fired %d times, want 1", c.count())
	}
	if at := time.Duration(c.at.Load()); at != 52*time.Second {
		t.Errorf("fired at %v, want 52s", at)
	}
}

func TestResetEarlier(t *testing.T) {
	w := newFake(tick, 16, 4)
	var e Entry
	c := &counter{wheel: w}
	w.Add(&e, time.Minute, c)
	w.advance(time.Second, tick)
	if !w.Reset(&e, time.Second) { // due at 2s
		t.Fatal("Reset returned false")
	}
	w.advance(900*time.Millisecond, tick)
	if c.count() != 0 {
		t.Fatal("fired before the new deadline")
	}
	w.advance(tick, tick)
	if c.count() != 1 {
		t.Fatalf("fired %d times at the new deadline, want 1", c.count())
	}
	w.advance(2*time.Minute, tick)
	if c.count() != 1 {
		t.Fatalf("fired %d times, want 1 (not again at the old deadline)", c.count())
	}
}

func TestResetUnarmed(t *testing.T) {
	w := newFake(tick, 16, 4)
	var e Entry
	if w.Reset(&e, time.Second) {
		t.Fatal("Reset of a never-added entry returned true")
	}
	c := &counter{}
	w.Add(&e, time.Second, c)
	w.Del(&e)
	if w.Reset(&e, time.Second) || w.Reset(&e, time.Millisecond) {
		t.Fatal("Reset of a deleted entry returned true")
	}
	w.advance(time.Minute, time.Second)
	if c.count() != 0 || w.Len() != 0 {
		t.Fatalf("Reset re-armed a deleted entry: fired %d, Len %d", c.count(), w.Len())
	}
}

func TestDelBeforeDeadline(t *testing.T) {
	w := newFake(tick, 16, 4)
	var e Entry
	c := &counter{}
	w.Add(&e, time.Second, c)
	w.advance(500*time.Millisecond, tick)
	if !w.Del(&e) {
		t.Fatal("Del of an armed entry returned false")
	}
	if w.Del(&e) {
		t.Fatal("second Del returned true")
	}
	if w.Len() != 0 {
		t.Fatalf("Len = %d after Del", w.Len())
	}
	if e.f != nil {
		t.Fatal("deleted entry still references its Expirer")
	}
	w.advance(time.Minute, tick)
	if c.count() != 0 {
		t.Fatalf("deleted entry fired %d times", c.count())
	}
}

func TestDelUnarmedAndAfterFire(t *testing.T) {
	w := newFake(tick, 16, 4)
	var never Entry
	if w.Del(&never) {
		t.Fatal("Del of a never-added entry returned true")
	}
	var e Entry
	c := &counter{}
	w.Add(&e, time.Second, c)
	w.advance(2*time.Second, tick)
	if c.count() != 1 {
		t.Fatalf("fired %d, want 1", c.count())
	}
	if w.Del(&e) {
		t.Fatal("Del after firing returned true")
	}
	if w.Del(&e) {
		t.Fatal("second Del after firing returned true")
	}
	// The entry can be armed again after all that.
	w.Add(&e, time.Second, c)
	w.advance(2*time.Second, tick)
	if c.count() != 2 {
		t.Fatalf("re-added entry: fired %d in total, want 2", c.count())
	}
}

func TestAddArmedReplaces(t *testing.T) {
	w := newFake(tick, 16, 4)
	var e Entry
	first, second := &counter{}, &counter{}
	w.Add(&e, time.Second, first)
	w.Add(&e, 3*time.Second, second)
	if w.Len() != 1 {
		t.Fatalf("Len = %d, want 1", w.Len())
	}
	w.advance(2*time.Second, tick)
	if first.count()+second.count() != 0 {
		t.Fatal("fired at the replaced deadline")
	}
	w.advance(time.Second, tick)
	if first.count() != 0 || second.count() != 1 {
		t.Fatalf("fired first %d, second %d; want 0, 1", first.count(), second.count())
	}
}

// rearmer re-arms its entry from Expire until it has fired times times.
type rearmer struct {
	w     *fakeWheel
	e     Entry
	every time.Duration
	times int
	at    []time.Duration
}

func (r *rearmer) Expire() {
	r.at = append(r.at, r.w.elapsed())
	if r.w.Len() < 0 { // Len takes every shard lock: must not deadlock here
		panic("negative Len")
	}
	if len(r.at) < r.times {
		r.w.Add(&r.e, r.every, r)
	}
}

func TestRearmFromExpire(t *testing.T) {
	w := newFake(tick, 8, 4)
	r := &rearmer{w: w, every: 2 * time.Second, times: 5}
	w.Add(&r.e, r.every, r)
	w.advance(time.Minute, tick)
	want := []time.Duration{2 * time.Second, 4 * time.Second, 6 * time.Second, 8 * time.Second, 10 * time.Second}
	if len(r.at) != len(want) {
		t.Fatalf("fired at %v, want %v", r.at, want)
	}
	for i := range want {
		if r.at[i] != want[i] {
			t.Fatalf("fired at %v, want %v", r.at, want)
		}
	}
	if w.Len() != 0 {
		t.Fatalf("Len = %d, want 0", w.Len())
	}
}

func TestBeyondSpan(t *testing.T) {
	w := newFake(tick, 8, 2) // span 800ms
	var e, far Entry
	c, cfar := &counter{wheel: w}, &counter{wheel: w}
	w.Add(&e, 10*time.Second, c)
	w.Add(&far, 100*time.Hour, cfar)
	w.advance(9900*time.Millisecond, tick)
	if c.count() != 0 {
		t.Fatalf("fired at %v, before 10s", time.Duration(c.at.Load()))
	}
	w.advance(tick, tick)
	if c.count() != 1 {
		t.Fatalf("fired %d, want 1", c.count())
	}
	if at := time.Duration(c.at.Load()); at != 10*time.Second {
		t.Errorf("fired at %v, want 10s", at)
	}
	// A jump of many spans in one tick (a stalled wheel goroutine) visits
	// every slot once and fires what is due.
	w.advance(99*time.Hour, 99*time.Hour)
	if cfar.count() != 0 {
		t.Fatal("far entry fired early")
	}
	w.advance(2*time.Hour, 2*time.Hour)
	if cfar.count() != 1 {
		t.Fatalf("far entry fired %d, want 1", cfar.count())
	}
}

func TestHugeDuration(t *testing.T) {
	w := newFake(tick, 8, 2)
	var e Entry
	c := &counter{}
	w.Add(&e, time.Duration(1<<63-1), c)
	w.advance(time.Hour, time.Minute)
	if c.count() != 0 || w.Len() != 1 {
		t.Fatalf("fired %d, Len %d", c.count(), w.Len())
	}
	if !w.Reset(&e, time.Duration(1<<63-1)) {
		t.Fatal("Reset returned false")
	}
	if !w.Del(&e) {
		t.Fatal("Del returned false")
	}
}

// owned is a connection-like owner of an Entry.
type owned struct {
	e    Entry
	n    atomic.Int32
	at   time.Duration // deadline relative to the start
	w    *fakeWheel
	late atomic.Int32 // fired before its deadline or more than a tick after
}

func (o *owned) Expire() {
	o.n.Add(1)
	if el := o.w.elapsed(); el < o.at || el >= o.at+tick {
		o.late.Add(1)
	}
}

func TestManyEntriesFireOnce(t *testing.T) {
	w := newFake(tick, 64, 8)
	const n = 10000
	rng := rand.New(rand.NewPCG(1, 2))
	es := make([]owned, n)
	for i := range es {
		o := &es[i]
		o.w = w
		o.at = time.Duration(rng.Int64N(int64(30 * time.Second)))
		w.Add(&o.e, o.at, o)
	}
	if w.Len() != n {
		t.Fatalf("Len = %d, want %d", w.Len(), n)
	}
	used := map[uint32]bool{}
	for i := range es {
		used[es[i].e.loc.Load()>>16] = true
	}
	if len(used) != 8 {
		t.Errorf("entries use %d shards, want 8", len(used))
	}
	w.advance(40*time.Second, tick)
	for i := range es {
		if got := es[i].n.Load(); got != 1 {
			t.Fatalf("entry %d (deadline %v) fired %d times", i, es[i].at, got)
		}
		if es[i].late.Load() != 0 {
			t.Fatalf("entry %d fired outside [deadline, deadline+tick)", i)
		}
	}
	if w.Len() != 0 {
		t.Fatalf("Len = %d, want 0", w.Len())
	}
	for s := range w.shards {
		for _, sl := range w.shards[s].slots {
			if len(sl) != 0 {
				t.Fatal("slot not empty")
			}
		}
	}
}

// tally counts the Expire calls of an entry that is only armed and deleted
// by its owning goroutine.
type tally struct {
	e     Entry
	fired atomic.Int64
}

func (t *tally) Expire() { t.fired.Add(1) }

func TestConcurrent(t *testing.T) {
	w := newFake(10*time.Millisecond, 32, 8)
	const goroutines, perG, ops = 16, 64, 3000
	entries := make([]tally, goroutines*perG)
	var adds, dels atomic.Int64

	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() { // the wheel goroutine, on the fake clock
		defer close(ticked)
		for {
			select {
			case <-stop:
				return
			default:
				w.tickAt(w.clk.add(time.Millisecond))
			}
		}
	}()

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			mine := entries[g*perG : (g+1)*perG]
			for range ops {
				o := &mine[rng.IntN(perG)]
				d := time.Duration(rng.IntN(200)) * time.Millisecond
				switch rng.IntN(4) {
				case 0: // Del then Add: every Add arms an unarmed entry
					if w.Del(&o.e) {
						dels.Add(1)
					}
					w.Add(&o.e, d, o)
					adds.Add(1)
				case 1:
					if w.Del(&o.e) {
						dels.Add(1)
					}
				default: // Reset any entry, also other goroutines'
					other := &entries[rng.IntN(len(entries))]
					w.Reset(&other.e, d)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-ticked

	for i := range entries {
		if w.Del(&entries[i].e) {
			dels.Add(1)
		}
	}
	if w.Len() != 0 {
		t.Fatalf("Len = %d after deleting everything", w.Len())
	}
	w.advance(time.Hour, time.Second)
	var fired int64
	for i := range entries {
		fired += entries[i].fired.Load()
	}
	if adds.Load() != fired+dels.Load() {
		t.Fatalf("%d armings but %d fired + %d deleted", adds.Load(), fired, dels.Load())
	}
	t.Logf("%d armings: %d fired, %d deleted", adds.Load(), fired, dels.Load())
}

// blocker signals when its Expire starts and returns when released.
type blocker struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blocker) Expire() {
	close(b.entered)
	<-b.release
}

// The real-time smoke test: the wheel goroutine fires entries on its own, and
// Stop waits for it, including a running Expire. Timeouts are generous; no
// assertion depends on timing except "within a minute".
func TestRealTimeStartStop(t *testing.T) {
	w := NewWheel(5*time.Millisecond, 16, 4)
	w.Stop() // before Start: no-op besides preventing Start
	w.Start()
	w.Stop()
	if w.started {
		t.Fatal("Start after Stop started the goroutine")
	}

	w = NewWheel(5*time.Millisecond, 16, 4)
	w.Start()
	w.Start() // idempotent
	fired := make(chan struct{})
	var e Entry
	w.Add(&e, 20*time.Millisecond, expireFunc(func() { close(fired) }))
	select {
	case <-fired:
	case <-time.After(time.Minute):
		t.Fatal("entry did not fire within a minute")
	}

	b := &blocker{entered: make(chan struct{}), release: make(chan struct{})}
	var e2 Entry
	w.Add(&e2, 0, b)
	select {
	case <-b.entered:
	case <-time.After(time.Minute):
		t.Fatal("blocking entry did not fire within a minute")
	}
	stopped := make(chan struct{})
	go func() {
		w.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("Stop returned while Expire was still running")
	case <-time.After(20 * time.Millisecond):
	}
	close(b.release)
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		t.Fatal("Stop did not return")
	}
	select {
	case <-w.done:
	default:
		t.Fatal("wheel goroutine still running after Stop")
	}
	w.Stop() // idempotent

	// After Stop nothing fires.
	var e3 Entry
	c := &counter{}
	w.Add(&e3, 0, c)
	time.Sleep(20 * time.Millisecond)
	if c.count() != 0 {
		t.Fatal("fired after Stop")
	}
}

type expireFunc func()

func (f expireFunc) Expire() { f() }

func TestNewWheelDefaults(t *testing.T) {
	w := NewWheel(0, 0, 0)
	if time.Duration(w.tick) != DefaultTick || w.nslots != DefaultSlots || len(w.shards) < 1 || len(w.shards) > maxShardsAuto {
		t.Fatalf("defaults: tick %v, slots %d, shards %d", time.Duration(w.tick), w.nslots, len(w.shards))
	}
	w = NewWheel(time.Nanosecond, 1<<20, 1<<20)
	if time.Duration(w.tick) != time.Millisecond || w.nslots != MaxSlots || len(w.shards) != maxCells/MaxSlots {
		t.Fatalf("clamping: tick %v, slots %d, shards %d", time.Duration(w.tick), w.nslots, len(w.shards))
	}
	w = NewWheel(time.Second, 4, 1<<20)
	if len(w.shards) != MaxShards {
		t.Fatalf("clamping: tick %v, slots %d, shards %d", time.Duration(w.tick), w.nslots, len(w.shards))
	}
}

func TestEntrySize(t *testing.T) {
	var e Entry
	if s := unsafe.Sizeof(e); s > 32 {
		t.Errorf("Entry is %d bytes, want ≤ 32", s)
	}
}

type nop struct{}

func (nop) Expire() {}

func BenchmarkResetLater(b *testing.B) {
	w := NewWheel(0, 0, 0)
	var e Entry
	w.Add(&e, time.Minute, nop{})
	b.ReportAllocs()
	for b.Loop() {
		w.Reset(&e, time.Minute)
	}
}

func BenchmarkResetLaterParallel(b *testing.B) {
	w := NewWheel(0, 0, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var e Entry
		w.Add(&e, time.Minute, nop{})
		for pb.Next() {
			w.Reset(&e, time.Minute)
		}
	})
}

func BenchmarkResetEarlier(b *testing.B) {
	w := NewWheel(0, 0, 0)
	var e Entry
	w.Add(&e, time.Hour, nop{})
	d := time.Hour
	b.ReportAllocs()
	for b.Loop() {
		d -= time.Millisecond
		if d < time.Second {
			d = time.Hour
			w.Add(&e, d, nop{})
		}
		w.Reset(&e, d)
	}
}

func BenchmarkAddDel(b *testing.B) {
	w := NewWheel(0, 0, 0)
	var e Entry
	b.ReportAllocs()
	for b.Loop() {
		w.Add(&e, 90*time.Second, nop{})
		w.Del(&e)
	}
}

func BenchmarkAddDelParallel(b *testing.B) {
	w := NewWheel(0, 0, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var e Entry
		for pb.Next() {
			w.Add(&e, 90*time.Second, nop{})
			w.Del(&e)
		}
	})
}

// BenchmarkResetLaterFakeClock is BenchmarkResetLater without the cost of
// reading the monotonic clock: the cost of Reset's own work.
func BenchmarkResetLaterFakeClock(b *testing.B) {
	w := newFake(0, 0, 0)
	var e Entry
	w.Add(&e, time.Minute, nop{})
	b.ReportAllocs()
	for b.Loop() {
		w.clk.add(1)
		w.Reset(&e, time.Minute)
	}
}
