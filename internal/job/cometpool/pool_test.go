package cometpool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/ratelog"
	"github.com/goim/goim/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// testComet serves goim.comet.Comet for the pool's tests over real
// gRPC on 127.0.0.1: it records the calls it accepts, in order, and can
// fail attempts with given codes or hold them until released. (The real
// comet serves job's integration tests.)
type testComet struct {
	cometpb.UnimplementedCometServer
	addr  string
	conns atomic.Int32 // open client connections

	mu        sync.Mutex
	accepted  []proto.Message // requests answered OK, in order
	attempts  int
	hanging   int           // attempts held now
	failures  []codes.Code  // the next attempts fail with these, one each
	failAll   codes.Code    // when not OK, every attempt fails with it
	hold      bool          // attempts wait for release (or their context)
	delay     time.Duration // every attempt takes this long (a slow comet)
	release   chan struct{} // closed by open
	pushReply *cometpb.PushMsgReply
}

// startTestComet serves a testComet with the comet's server options
// (keepalive enforcement, message size) until the test ends.
func startTestComet(t testing.TB) *testComet {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testComet{addr: ln.Addr().String(), release: make(chan struct{}), pushReply: &cometpb.PushMsgReply{}}
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(16<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	cometpb.RegisterCometServer(srv, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(countingListener{Listener: ln, open: &s.conns})
	}()
	t.Cleanup(func() {
		srv.Stop() // cancels held attempts
		<-done
	})
	return s
}

// set changes s's behaviour under its lock.
func (s *testComet) set(f func(s *testComet)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// open releases the held attempts and stops holding.
func (s *testComet) open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = false
	close(s.release)
}

func (s *testComet) handle(ctx context.Context, req proto.Message) error {
	s.mu.Lock()
	s.attempts++
	if len(s.failures) > 0 {
		code := s.failures[0]
		s.failures = s.failures[1:]
		s.mu.Unlock()
		return status.Error(code, "test comet: planned failure")
	}
	if s.failAll != codes.OK {
		code := s.failAll
		s.mu.Unlock()
		return status.Error(code, "test comet: failing every call")
	}
	if d := s.delay; d > 0 {
		s.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return status.FromContextError(ctx.Err()).Err()
		}
		s.mu.Lock()
	}
	if s.hold {
		s.hanging++
		release := s.release
		s.mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
		}
		s.mu.Lock()
		s.hanging--
		if ctx.Err() != nil {
			s.mu.Unlock()
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	s.accepted = append(s.accepted, req)
	s.mu.Unlock()
	return nil
}

func (s *testComet) PushMsg(ctx context.Context, req *cometpb.PushMsgReq) (*cometpb.PushMsgReply, error) {
	if err := s.handle(ctx, req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.CloneOf(s.pushReply), nil
}

func (s *testComet) BroadcastRoom(ctx context.Context, req *cometpb.BroadcastRoomReq) (*cometpb.BroadcastRoomReply, error) {
	return &cometpb.BroadcastRoomReply{}, s.handle(ctx, req)
}

func (s *testComet) Broadcast(ctx context.Context, req *cometpb.BroadcastReq) (*cometpb.BroadcastReply, error) {
	return &cometpb.BroadcastReply{}, s.handle(ctx, req)
}

func (s *testComet) stats() (accepted []proto.Message, attempts, hanging int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]proto.Message(nil), s.accepted...), s.attempts, s.hanging
}

// seqsByShard returns the Seq of every accepted PushMsg grouped by its
// ProtoOp, which the tests set to the call's shard.
func (s *testComet) seqsByShard() map[int32][]int32 {
	accepted, _, _ := s.stats()
	out := make(map[int32][]int32)
	for _, m := range accepted {
		if p, ok := m.(*cometpb.PushMsgReq); ok {
			out[p.GetProtoOp()] = append(out[p.GetProtoOp()], p.GetProto().GetSeq())
		}
	}
	return out
}

// countingListener counts the connections it accepted that are still
// open, so a test can see the pool close its connections.
type countingListener struct {
	net.Listener
	open *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, open: l.open}, nil
}

type countedConn struct {
	net.Conn
	once sync.Once
	open *atomic.Int32
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// outcomes records the done callbacks of a test's calls by id, and
// fails the test if one is called twice.
type outcomes struct {
	t     testing.TB
	mu    sync.Mutex
	got   map[int]Outcome
	calls map[int]int
	n     [len(outcomeNames)]int
}

func newOutcomes(t testing.TB) *outcomes {
	return &outcomes{t: t, got: make(map[int]Outcome), calls: make(map[int]int)}
}

// done returns the done func of call id.
func (r *outcomes) done(id int) func(Outcome) {
	return func(o Outcome) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.calls[id]++
		if r.calls[id] > 1 {
			r.t.Errorf("call %d: done called %d times (now with %v, first %v)", id, r.calls[id], o, r.got[id])
			return
		}
		r.got[id] = o
		r.n[o]++
	}
}

// push returns a PushMsg call: ProtoOp carries the shard and Seq the id,
// so the test comet can tell the order per shard.
func (r *outcomes) push(id int, shard uint32) *Call {
	return &Call{
		Push: &cometpb.PushMsgReq{
			Keys:    []string{fmt.Sprintf("key-%d", id)},
			ProtoOp: int32(shard),
			Proto:   &protocol.Proto{Ver: 1, Op: protocol.OpRaw, Seq: int32(id), Body: []byte("hello")},
		},
		Done: r.done(id),
	}
}

func (r *outcomes) outcome(id int) (Outcome, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.got[id]
	return o, ok
}

func (r *outcomes) count(o Outcome) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[o]
}

func (r *outcomes) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// waitIDs waits until every call in ids is done and checks its outcome.
func (r *outcomes) waitIDs(t testing.TB, want Outcome, ids ...int) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, func() error {
		for _, id := range ids {
			if _, ok := r.outcome(id); !ok {
				return fmt.Errorf("call %d not done", id)
			}
		}
		return nil
	})
	for _, id := range ids {
		if o, _ := r.outcome(id); o != want {
			t.Errorf("call %d: outcome %v, want %v", id, o, want)
		}
	}
}

func idRange(from, to int) []int {
	ids := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		ids = append(ids, i)
	}
	return ids
}

// testConfig is a config for tests: fast retries.
func testConfig() Config {
	c := DefaultConfig()
	c.RetryBase = conf.Duration(5 * time.Millisecond)
	c.RetryMax = conf.Duration(20 * time.Millisecond)
	return c
}

// newTestPool returns a pool on a fresh registry, closed when the test
// ends.
func newTestPool(t testing.TB, cfg Config) (*Pool, *metrics) {
	t.Helper()
	log := testkit.Logger(t)
	if _, bench := t.(*testing.B); bench {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := New(cfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p, p.m
}

// checkGoroutines fails the test if, once everything else the test
// registered has been cleaned up, more goroutines run than at its start.
// Call it first in the test.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		testkit.WaitFor(t, 10*time.Second, func() error {
			if n := runtime.NumGoroutine(); n > before {
				return fmt.Errorf("%d goroutines, %d before the test:\n%s", n, before, stacks())
			}
			return nil
		})
	})
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

func callCount(m *metrics, method string, o Outcome) float64 {
	return testutil.ToFloat64(m.calls.WithLabelValues(method, o.String()))
}

func TestDelivered(t *testing.T) {
	checkGoroutines(t)
	srv := startTestComet(t)
	srv.set(func(s *testComet) {
		s.pushReply = &cometpb.PushMsgReply{Delivered: 2, Absent: 1, Filtered: 1}
	})
	p, m := newTestPool(t, testConfig())
	p.Update(map[string]string{"comet-1": srv.addr})

	body := &protocol.Proto{Ver: 1, Op: protocol.OpRaw, Body: []byte("frames")}
	tests := []struct {
		name   string
		call   *Call
		method string
		want   proto.Message
	}{
		{
			name:   "push",
			call:   &Call{Push: &cometpb.PushMsgReq{Keys: []string{"a", "b", "c", "d"}, Proto: body, ProtoOp: 1000}},
			method: "PushMsg",
			want:   &cometpb.PushMsgReq{Keys: []string{"a", "b", "c", "d"}, Proto: body, ProtoOp: 1000},
		},
		{
			name:   "room",
			call:   &Call{Room: &cometpb.BroadcastRoomReq{RoomID: "live://1000", Proto: body}},
			method: "BroadcastRoom",
			want:   &cometpb.BroadcastRoomReq{RoomID: "live://1000", Proto: body},
		},
		{
			name:   "broadcast",
			call:   &Call{Broadcast: &cometpb.BroadcastReq{ProtoOp: 1000, Proto: body, Speed: 50}},
			method: "Broadcast",
			want:   &cometpb.BroadcastReq{ProtoOp: 1000, Proto: body, Speed: 50},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newOutcomes(t)
			tt.call.Done = r.done(i)
			p.Send("comet-1", 3, tt.call)
			r.waitIDs(t, Delivered, i)
			accepted, _, _ := srv.stats()
			if len(accepted) != i+1 || !proto.Equal(accepted[i], tt.want) {
				t.Fatalf("comet accepted %v, want last %v", accepted, tt.want)
			}
			if got := callCount(m, tt.method, Delivered); got != 1 {
				t.Errorf("calls_total{%s,delivered} = %v, want 1", tt.method, got)
			}
		})
	}
	for result, want := range map[string]float64{"delivered": 2, "absent": 1, "filtered": 1, "dropped": 0} {
		if got := testutil.ToFloat64(m.pushKeys.WithLabelValues(result)); got != want {
			t.Errorf("push_keys_total{%s} = %v, want %v", result, got, want)
		}
	}
	if got := testutil.ToFloat64(m.comets); got != 1 {
		t.Errorf("comets gauge = %v, want 1", got)
	}
}

func TestOrder(t *testing.T) {
	tests := []struct {
		name   string
		shards uint32 // calls go round robin over shards 0..shards-1
		calls  int
	}{
		{name: "one shard", shards: 1, calls: 1000},
		{name: "eight shards interleaved", shards: 8, calls: 2000},
		{name: "more shards than workers", shards: 20, calls: 2000}, // 20 shards fold onto 8 workers
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			srv := startTestComet(t)
			p, _ := newTestPool(t, testConfig())
			p.Update(map[string]string{"c": srv.addr})
			r := newOutcomes(t)
			for i := range tt.calls {
				shard := uint32(i) % tt.shards
				if tt.shards == 1 {
					shard = 5
				}
				p.Send("c", shard, r.push(i, shard))
			}
			r.waitIDs(t, Delivered, idRange(0, tt.calls)...)
			got := srv.seqsByShard()
			n := 0
			for shard, seqs := range got {
				n += len(seqs)
				for j := 1; j < len(seqs); j++ {
					if seqs[j] <= seqs[j-1] {
						t.Fatalf("shard %d: seq %d arrived after %d", shard, seqs[j], seqs[j-1])
					}
				}
			}
			if n != tt.calls {
				t.Errorf("comet accepted %d calls, want %d", n, tt.calls)
			}
		})
	}
}

func TestRetry(t *testing.T) {
	type testCase struct {
		name         string
		failures     []codes.Code // the comet fails the first attempts with these
		failAll      codes.Code   // or every attempt
		retryFor     time.Duration
		want         []Outcome // of calls 0, 1, ... sent in a row on one shard
		wantRetries  int       // -1: at least one
		wantAttempts int       // -1: not checked
	}
	tests := []testCase{
		{
			name:         "unavailable twice then ok keeps order",
			failures:     []codes.Code{codes.Unavailable, codes.Unavailable},
			want:         []Outcome{Delivered, Delivered, Delivered, Delivered, Delivered},
			wantRetries:  2,
			wantAttempts: 7,
		},
		{
			name:         "permanent invalid argument is not retried",
			failures:     []codes.Code{codes.InvalidArgument},
			want:         []Outcome{LostRejected, Delivered},
			wantRetries:  0,
			wantAttempts: 2,
		},
		{
			name:         "transient forever runs out of retry_for",
			failAll:      codes.Unavailable,
			retryFor:     300 * time.Millisecond,
			want:         []Outcome{LostRetries, LostRetries},
			wantRetries:  -1,
			wantAttempts: -1,
		},
	}
	for _, code := range []codes.Code{codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted,
		codes.Internal, codes.Unknown, codes.Canceled} {
		tests = append(tests, testCase{
			name: "transient " + code.String(), failures: []codes.Code{code},
			want: []Outcome{Delivered}, wantRetries: 1, wantAttempts: 2,
		})
	}
	for _, code := range []codes.Code{codes.FailedPrecondition, codes.PermissionDenied, codes.Unauthenticated,
		codes.Unimplemented, codes.OutOfRange, codes.NotFound} {
		tests = append(tests, testCase{
			name: "permanent " + code.String(), failures: []codes.Code{code},
			want: []Outcome{LostRejected}, wantRetries: 0, wantAttempts: 1,
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			srv := startTestComet(t)
			srv.set(func(s *testComet) { s.failures, s.failAll = tt.failures, tt.failAll })
			cfg := testConfig()
			if tt.retryFor > 0 {
				cfg.RetryFor = conf.Duration(tt.retryFor)
			}
			p, m := newTestPool(t, cfg)
			p.Update(map[string]string{"c": srv.addr})
			r := newOutcomes(t)
			for i := range tt.want {
				p.Send("c", 1, r.push(i, 1))
			}
			for i, want := range tt.want {
				r.waitIDs(t, want, i)
			}
			retries := testutil.ToFloat64(m.retries.WithLabelValues("PushMsg"))
			if tt.wantRetries >= 0 && retries != float64(tt.wantRetries) || tt.wantRetries < 0 && retries < 1 {
				t.Errorf("retries_total = %v, want %d (-1: > 0)", retries, tt.wantRetries)
			}
			_, attempts, _ := srv.stats()
			if tt.wantAttempts >= 0 && attempts != tt.wantAttempts {
				t.Errorf("comet saw %d attempts, want %d", attempts, tt.wantAttempts)
			}
			var delivered []int32
			for i, o := range tt.want {
				if o == Delivered {
					delivered = append(delivered, int32(i))
				}
			}
			if got := srv.seqsByShard()[1]; fmt.Sprint(got) != fmt.Sprint(delivered) {
				t.Errorf("comet accepted seqs %v, want %v", got, delivered)
			}
		})
	}
}

// TestTooLarge: a request over the 16 MiB message limit is refused by
// gRPC as ResourceExhausted, which is otherwise transient; it must not
// hold its worker for retry_for.
func TestTooLarge(t *testing.T) {
	checkGoroutines(t)
	srv := startTestComet(t)
	cfg := testConfig()
	cfg.RetryFor = conf.Duration(time.Hour)
	p, m := newTestPool(t, cfg)
	p.Update(map[string]string{"c": srv.addr})
	r := newOutcomes(t)
	big := &protocol.Proto{Ver: 1, Op: protocol.OpRaw, Body: make([]byte, maxMsgSize)}
	p.Send("c", 0, &Call{Room: &cometpb.BroadcastRoomReq{RoomID: "live://1", Proto: big}, Done: r.done(0)})
	p.Send("c", 0, r.push(1, 0))
	r.waitIDs(t, LostRejected, 0)
	r.waitIDs(t, Delivered, 1)
	if n := testutil.ToFloat64(m.retries.WithLabelValues("BroadcastRoom")); n != 0 {
		t.Errorf("retries_total{BroadcastRoom} = %v, want 0", n)
	}
}

func TestHungComet(t *testing.T) {
	checkGoroutines(t)
	hung, ok := startTestComet(t), startTestComet(t)
	hung.set(func(s *testComet) { s.hold = true }) // never released
	cfg := testConfig()
	cfg.Shards, cfg.Queue = 2, 4
	cfg.CallTimeout = conf.Duration(time.Minute) // the hung calls stay in flight
	p, m := newTestPool(t, cfg)
	p.Update(map[string]string{"a": hung.addr, "b": ok.addr})

	const toA, toB = 10000, 1000
	ra, rb := newOutcomes(t), newOutcomes(t)
	var sentA, sentB atomic.Bool
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range toA {
			p.Send("a", uint32(i), ra.push(i, uint32(i)%2))
		}
		sentA.Store(true)
	}()
	go func() {
		// One call at a time, each waited for: B keeps serving while A's
		// workers are stuck and its queues overflow.
		defer wg.Done()
		for i := range toB {
			ch := make(chan Outcome, 1)
			p.Send("b", uint32(i), &Call{Push: &cometpb.PushMsgReq{Keys: []string{"k"}, Proto: &protocol.Proto{}}, Done: func(o Outcome) {
				rb.done(i)(o)
				ch <- o
			}})
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Errorf("call %d to comet b not done while comet a hangs", i)
				return
			}
		}
		sentB.Store(true)
	}()
	wg.Wait()
	if !sentA.Load() || !sentB.Load() {
		t.Fatal("senders did not finish")
	}
	if got := rb.count(Delivered); got != toB {
		t.Fatalf("comet b: %d of %d delivered", got, toB)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if _, _, h := hung.stats(); h != cfg.Shards {
			return fmt.Errorf("comet a holds %d attempts, want one per worker (%d)", h, cfg.Shards)
		}
		return nil
	})
	// Each worker of a holds one call in flight and cfg.Queue queued; the
	// rest were refused at once.
	stuck := toA - ra.total()
	if ra.total() != ra.count(LostQueueFull) {
		t.Errorf("comet a: %d calls done, %d of them queue_full; want only queue_full", ra.total(), ra.count(LostQueueFull))
	}
	if most := cfg.Shards * (cfg.Queue + 1); stuck < cfg.Shards || stuck > most {
		t.Errorf("comet a: %d calls pending, want %d..%d", stuck, cfg.Shards, most)
	}
	if got := testutil.ToFloat64(m.queued); got != float64(stuck-cfg.Shards) {
		t.Errorf("queued gauge = %v, want %d", got, stuck-cfg.Shards)
	}
	if got := callCount(m, "PushMsg", LostQueueFull); got != float64(ra.count(LostQueueFull)) {
		t.Errorf("calls_total{queue_full} = %v, want %d", got, ra.count(LostQueueFull))
	}

	// Removing the hung comet ends its calls.
	p.Update(map[string]string{"b": ok.addr})
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := ra.total(); n != toA {
			return fmt.Errorf("comet a: %d of %d calls done", n, toA)
		}
		return nil
	})
	if got := ra.count(LostCometGone); got != stuck {
		t.Errorf("comet a: %d calls comet_gone, want %d", got, stuck)
	}
}

// poolFailing tells whether the pool marks host as failing.
func isFailing(p *Pool, host string) bool {
	return (*p.comets.Load())[host].failingSince.Load() != 0
}

// checkOrder fails the test unless srv accepted want PushMsg calls,
// each shard's in increasing Seq (the order they were sent).
func checkOrder(t *testing.T, srv *testComet, want int) {
	t.Helper()
	n := 0
	for shard, seqs := range srv.seqsByShard() {
		n += len(seqs)
		for j := 1; j < len(seqs); j++ {
			if seqs[j] <= seqs[j-1] {
				t.Fatalf("shard %d: seq %d arrived after %d", shard, seqs[j], seqs[j-1])
			}
		}
	}
	if n != want {
		t.Errorf("comet accepted %d calls, want %d", n, want)
	}
}

// waitTotal waits until r has n calls done.
func waitTotal(t *testing.T, r *outcomes, n int, timeout time.Duration) {
	t.Helper()
	testkit.WaitFor(t, timeout, func() error {
		if got := r.total(); got != n {
			return fmt.Errorf("%d of %d calls done", got, n)
		}
		return nil
	})
}

// TestBacklog: a healthy comet slower than the sender drains a backlog
// far beyond the old 1024-call queues, however long it takes: nothing is
// lost to queue_full, nothing expires although retry_for is far shorter
// than the drain, and each shard's calls arrive in order.
func TestBacklog(t *testing.T) {
	checkGoroutines(t)
	srv := startTestComet(t)
	srv.set(func(s *testComet) { s.delay = time.Millisecond })
	cfg := testConfig()
	cfg.RetryFor = conf.Duration(100 * time.Millisecond)
	p, m := newTestPool(t, cfg)
	p.Update(map[string]string{"c": srv.addr})

	const calls = 20000
	r := newOutcomes(t)
	start := time.Now()
	for i := range calls {
		shard := uint32(i) % 16 // 16 shards fold onto 8 workers
		p.Send("c", shard, r.push(i, shard))
	}
	peak := testutil.ToFloat64(m.queued)
	waitTotal(t, r, calls, time.Minute)
	t.Logf("%d calls drained in %v, %v queued after sending", calls, time.Since(start), peak)
	if got := r.count(Delivered); got != calls {
		t.Fatalf("%d of %d delivered; queue_full %d, retries_exhausted %d", got, calls,
			r.count(LostQueueFull), r.count(LostRetries))
	}
	checkOrder(t, srv, calls)
	if got := testutil.ToFloat64(m.queued); got != 0 {
		t.Errorf("queued gauge = %v after the drain, want 0", got)
	}
	for i, q := range (*p.comets.Load())["c"].queues {
		if c := q.capacity(); c > queueKeep {
			t.Errorf("worker %d: drained queue has capacity %d, want at most %d", i, c, queueKeep)
		}
	}
	if isFailing(p, "c") {
		t.Error("a comet that never failed is marked failing")
	}
}

// TestBacklogBlip: one transient error in the middle of a healthy
// comet's backlog does not end the calls that waited longer than
// retry_for; only a comet failing for retry_for does.
func TestBacklogBlip(t *testing.T) {
	checkGoroutines(t)
	srv := startTestComet(t)
	srv.set(func(s *testComet) { s.delay = time.Millisecond })
	cfg := testConfig()
	cfg.RetryFor = conf.Duration(100 * time.Millisecond)
	p, m := newTestPool(t, cfg)
	p.Update(map[string]string{"c": srv.addr})

	const calls = 4000
	r := newOutcomes(t)
	for i := range calls {
		p.Send("c", uint32(i), r.push(i, uint32(i)%8))
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if accepted, _, _ := srv.stats(); len(accepted) < calls/4 {
			return fmt.Errorf("comet accepted %d calls, want %d first", len(accepted), calls/4)
		}
		return nil
	})
	srv.set(func(s *testComet) {
		s.failures = []codes.Code{codes.Unavailable, codes.Unavailable, codes.Unavailable, codes.Unavailable}
	})
	waitTotal(t, r, calls, time.Minute)
	if got := r.count(Delivered); got != calls {
		t.Fatalf("%d of %d delivered; retries_exhausted %d", got, calls, r.count(LostRetries))
	}
	if n := testutil.ToFloat64(m.retries.WithLabelValues("PushMsg")); n < 1 {
		t.Errorf("retries_total = %v, want the planned failures retried", n)
	}
	checkOrder(t, srv, calls)
	if isFailing(p, "c") {
		t.Error("comet still marked failing after calls succeeded")
	}
}

// TestHungCometExpires: the calls queued for a comet that accepts
// calls and never answers end, lost as retries_exhausted, about
// retry_for + call_timeout after they were queued, most without an
// attempt; another comet's calls are delivered meanwhile.
func TestHungCometExpires(t *testing.T) {
	checkGoroutines(t)
	hung, ok := startTestComet(t), startTestComet(t)
	hung.set(func(s *testComet) { s.hold = true }) // never released
	cfg := testConfig()
	cfg.CallTimeout = conf.Duration(200 * time.Millisecond)
	cfg.RetryFor = conf.Duration(500 * time.Millisecond)
	p, m := newTestPool(t, cfg)
	p.Update(map[string]string{"h": hung.addr, "ok": ok.addr})

	const calls, toOK = 2000, 400
	rh, rok := newOutcomes(t), newOutcomes(t)
	start := time.Now()
	for i := range calls {
		p.Send("h", 0, rh.push(i, 0))
	}
	for i := range toOK {
		p.Send("ok", uint32(i), rok.push(i, uint32(i)%8))
	}
	rok.waitIDs(t, Delivered, idRange(0, toOK)...)
	t.Logf("%d calls to the healthy comet delivered in %v", toOK, time.Since(start))
	waitTotal(t, rh, calls, 20*time.Second)
	_, attempts, _ := hung.stats()
	t.Logf("%d calls to the hung comet ended in %v, with %d attempts", calls, time.Since(start), attempts)
	if got := rh.count(LostRetries); got != calls {
		t.Errorf("hung comet: %d of %d calls retries_exhausted, want all", got, calls)
	}
	if got := callCount(m, "PushMsg", LostRetries); got != calls {
		t.Errorf("calls_total{retries_exhausted} = %v, want %d", got, calls)
	}
	if attempts >= calls/10 {
		t.Errorf("hung comet saw %d attempts for %d calls; want most ended unattempted", attempts, calls)
	}
	if !isFailing(p, "h") || isFailing(p, "ok") {
		t.Errorf("failing: h %v, ok %v; want true, false", isFailing(p, "h"), isFailing(p, "ok"))
	}
	checkOrder(t, ok, toOK)
}

// TestQueueFull: a worker's queue holds at most Queue calls; the next
// one is lost at once, and the comet's other workers are not affected.
func TestQueueFull(t *testing.T) {
	checkGoroutines(t)
	hung := startTestComet(t)
	hung.set(func(s *testComet) { s.hold = true })
	cfg := testConfig()
	cfg.Shards, cfg.Queue = 2, 10
	cfg.CallTimeout = conf.Duration(time.Minute)
	cfg.RetryFor = conf.Duration(10 * time.Minute)
	p, m := newTestPool(t, cfg)
	p.Update(map[string]string{"h": hung.addr})
	waitHanging := func(n int) {
		t.Helper()
		testkit.WaitFor(t, 10*time.Second, func() error {
			if _, _, h := hung.stats(); h != n {
				return fmt.Errorf("comet holds %d attempts, want %d", h, n)
			}
			return nil
		})
	}

	r := newOutcomes(t)
	p.Send("h", 0, r.push(0, 0)) // in flight
	waitHanging(1)
	for i := 1; i <= cfg.Queue; i++ {
		p.Send("h", 0, r.push(i, 0))
	}
	if n := r.total(); n != 0 {
		t.Fatalf("%d calls done with the queue just full", n)
	}
	full := cfg.Queue + 1
	p.Send("h", 0, r.push(full, 0))
	if o, ok := r.outcome(full); !ok || o != LostQueueFull {
		t.Errorf("call %d past the bound: %v (done %v), want queue_full at once", full, o, ok)
	}
	p.Send("h", 1, r.push(full+1, 1)) // the other worker has room
	waitHanging(2)
	if got := testutil.ToFloat64(m.queued); got != float64(cfg.Queue) {
		t.Errorf("queued gauge = %v, want %d", got, cfg.Queue)
	}
	if got := callCount(m, "PushMsg", LostQueueFull); got != 1 {
		t.Errorf("calls_total{queue_full} = %v, want 1", got)
	}
	p.Update(map[string]string{})
	r.waitIDs(t, LostCometGone, append(idRange(0, full), full+1)...)
}

// TestQueueRelease: a worker's queue takes memory for a burst and
// gives it back once the burst has drained. The burst piles up behind a
// hung comet's first call, then drains fast as its calls expire (the
// backlog test checks the same after calls delivered).
func TestQueueRelease(t *testing.T) {
	checkGoroutines(t)
	srv := startTestComet(t)
	srv.set(func(s *testComet) { s.hold = true })
	cfg := testConfig()
	cfg.Shards = 1
	cfg.CallTimeout = conf.Duration(200 * time.Millisecond)
	// The burst must be all queued before the first call's retries run
	// out and the queued calls start expiring: 50,000 sends take well
	// under a second, but more on a loaded machine under the race
	// detector, so retry_for leaves them 2 s.
	cfg.RetryFor = conf.Duration(2 * time.Second)
	p, m := newTestPool(t, cfg)
	p.Update(map[string]string{"c": srv.addr})
	q := (*p.comets.Load())["c"].queues[0]
	if c := q.capacity(); c != 0 {
		t.Errorf("an unused queue has capacity %d, want 0", c)
	}

	const calls = 50000
	r := newOutcomes(t)
	for i := range calls {
		p.Send("c", 0, r.push(i, 0))
	}
	if c, n := q.capacity(), q.len(); c < n || n < calls-1 {
		t.Errorf("burst: capacity %d, %d calls queued; want >= %d", c, n, calls-1)
	}
	t.Logf("burst: capacity %d with %d calls queued, gauge %v", q.capacity(), q.len(), testutil.ToFloat64(m.queued))
	waitTotal(t, r, calls, 30*time.Second)
	if got := r.count(LostRetries); got != calls {
		t.Errorf("%d of %d calls retries_exhausted", got, calls)
	}
	if c, n := q.capacity(), q.len(); c > queueKeep || n != 0 {
		t.Errorf("drained queue: capacity %d, %d calls; want at most %d, 0", c, n, queueKeep)
	}
	if got := testutil.ToFloat64(m.queued); got != 0 {
		t.Errorf("queued gauge = %v after the drain, want 0", got)
	}
}

// TestRecovery: a comet that fails transiently is marked failing;
// once it has failed for retry_for, the calls queued that long end
// unattempted. When it recovers, the flag clears and the calls queued
// since are delivered, in order.
func TestRecovery(t *testing.T) {
	checkGoroutines(t)
	srv := startTestComet(t)
	srv.set(func(s *testComet) { s.failAll = codes.Unavailable })
	cfg := testConfig()
	cfg.Shards = 2
	cfg.RetryFor = conf.Duration(time.Second)
	p, m := newTestPool(t, cfg)
	p.Update(map[string]string{"c": srv.addr})

	r := newOutcomes(t)
	for i := range 5 { // 0 retried until retry_for, 1..4 then expired
		p.Send("c", 0, r.push(i, 0))
	}
	r.waitIDs(t, LostRetries, idRange(0, 5)...)
	if _, attempts, _ := srv.stats(); attempts < 2 {
		t.Errorf("comet saw %d attempts, want call 0 retried", attempts)
	}
	if !isFailing(p, "c") {
		t.Fatal("comet failing every call is not marked failing")
	}

	retries := testutil.ToFloat64(m.retries.WithLabelValues("PushMsg"))
	for i := 5; i < 15; i++ { // queued while it fails, not yet expired
		shard := uint32(i) % 2
		p.Send("c", shard, r.push(i, shard))
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := testutil.ToFloat64(m.retries.WithLabelValues("PushMsg")); n <= retries {
			return errors.New("the new calls have not failed yet")
		}
		return nil
	})
	srv.set(func(s *testComet) { s.failAll = codes.OK })
	r.waitIDs(t, Delivered, idRange(5, 15)...)
	if isFailing(p, "c") {
		t.Error("comet still marked failing after calls succeeded")
	}
	checkOrder(t, srv, 10)
}

// TestQueue checks the ring alone: FIFO order through growth,
// wrap-around and shrinking, the bound, and memory given back.
func TestQueue(t *testing.T) {
	const limit = 5000
	q := newQueue(limit)
	calls := make([]*Call, limit+1)
	for i := range calls {
		calls[i] = &Call{}
	}
	next, want := 0, 0 // next call to push, next call expected from pop
	pushN := func(n int) {
		for range n {
			if !q.push(calls[next%len(calls)]) {
				t.Fatalf("push %d refused with %d queued", next, q.len())
			}
			next++
		}
	}
	popN := func(n int) {
		for range n {
			c := q.pop()
			if c != calls[want%len(calls)] {
				t.Fatalf("pop %d: wrong call", want)
			}
			want++
		}
	}
	select {
	case <-q.wake:
	default:
	}
	pushN(1)
	select {
	case <-q.wake:
	default:
		t.Error("push to an empty queue did not wake the worker")
	}
	popN(1)
	// Interleave so that the ring wraps while it grows and shrinks.
	for _, step := range [][2]int{{10, 3}, {100, 50}, {3000, 1000}, {1900, 2000}, {1000, 2957}, {300, 290}, {0, 10}} {
		pushN(step[0])
		popN(step[1])
	}
	if q.pop() != nil || q.len() != 0 {
		t.Fatalf("queue not empty: %d calls", q.len())
	}
	if c := q.capacity(); c > queueKeep {
		t.Errorf("drained queue has capacity %d, want at most %d", c, queueKeep)
	}
	pushN(limit)
	if q.push(calls[0]) {
		t.Errorf("push past the bound of %d accepted", limit)
	}
	if c := q.capacity(); c != limit {
		t.Errorf("full queue has capacity %d, want %d (never past the bound)", c, limit)
	}
	popN(limit)
	if c := q.capacity(); c > queueKeep {
		t.Errorf("drained queue has capacity %d, want at most %d", c, queueKeep)
	}
}

func TestRemoval(t *testing.T) {
	checkGoroutines(t)
	hung, failing := startTestComet(t), startTestComet(t)
	hung.set(func(s *testComet) { s.hold = true })
	failing.set(func(s *testComet) { s.failAll = codes.Unavailable })
	cfg := testConfig()
	cfg.Shards, cfg.Queue = 1, 10
	cfg.CallTimeout = conf.Duration(time.Minute)
	cfg.RetryBase, cfg.RetryMax = conf.Duration(time.Minute), conf.Duration(time.Minute) // backoffs outlast the test
	cfg.RetryFor = conf.Duration(10 * time.Minute)
	p, m := newTestPool(t, cfg)
	p.Update(map[string]string{"h": hung.addr, "f": failing.addr})
	if got := p.Hosts(); fmt.Sprint(got) != "[f h]" {
		t.Fatalf("hosts() = %v, want [f h]", got)
	}

	r := newOutcomes(t)
	for i := range 5 { // 0 in flight, 1..4 queued
		p.Send("h", 0, r.push(i, 0))
	}
	for i := 5; i < 8; i++ { // 5 backing off, 6 and 7 queued
		p.Send("f", 0, r.push(i, 0))
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if _, _, h := hung.stats(); h != 1 {
			return fmt.Errorf("comet h holds %d attempts, want 1", h)
		}
		if n := testutil.ToFloat64(m.retries.WithLabelValues("PushMsg")); n != 1 {
			return fmt.Errorf("retries_total = %v, want 1 (call 5 backing off)", n)
		}
		return nil
	})
	if got := testutil.ToFloat64(m.queued); got != 6 {
		t.Errorf("queued gauge = %v, want 6", got)
	}
	if r.total() != 0 {
		t.Fatalf("%d calls done before the removal", r.total())
	}

	p.Update(map[string]string{})
	r.waitIDs(t, LostCometGone, idRange(0, 8)...)
	if len(p.Hosts()) != 0 {
		t.Errorf("hosts() = %v after removing every comet", p.Hosts())
	}
	if got := testutil.ToFloat64(m.comets); got != 0 {
		t.Errorf("comets gauge = %v, want 0", got)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if h, f := hung.conns.Load(), failing.conns.Load(); h+f != 0 {
			return fmt.Errorf("connections still open: h %d, f %d", h, f)
		}
		return nil
	})

	t.Run("unknown host", func(t *testing.T) {
		for i, host := range []string{"h", "never-known"} {
			p.Send(host, 0, r.push(100+i, 0))
			if o, ok := r.outcome(100 + i); !ok || o != LostCometGone {
				t.Errorf("send to %q: outcome %v (done %v), want comet_gone at once", host, o, ok)
			}
		}
	})
}

func TestAddressChange(t *testing.T) {
	checkGoroutines(t)
	old, moved := startTestComet(t), startTestComet(t)
	old.set(func(s *testComet) { s.hold = true }) // never answers
	cfg := testConfig()
	cfg.Shards, cfg.Queue = 1, 200
	cfg.CallTimeout = conf.Duration(time.Minute)
	p, _ := newTestPool(t, cfg)
	p.Update(map[string]string{"c": old.addr})

	const calls = 100
	r := newOutcomes(t)
	for i := range calls {
		p.Send("c", 0, r.push(i, 0))
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if _, _, h := old.stats(); h != 1 {
			return fmt.Errorf("old address holds %d attempts, want 1", h)
		}
		return nil
	})

	p.Update(map[string]string{"c": moved.addr})
	r.waitIDs(t, Delivered, idRange(0, calls)...)
	want := fmt.Sprint(int32Range(0, calls))
	if got := fmt.Sprint(moved.seqsByShard()[0]); got != want {
		t.Errorf("new address accepted %s, want %s", got, want)
	}
	if accepted, _, _ := old.stats(); len(accepted) != 0 {
		t.Errorf("old address accepted %d calls", len(accepted))
	}
	if got := p.Hosts(); fmt.Sprint(got) != "[c]" {
		t.Errorf("hosts() = %v, want [c]", got)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := old.conns.Load(); n != 0 {
			return fmt.Errorf("%d connections to the old address still open", n)
		}
		return nil
	})
}

func int32Range(from, to int) []int32 {
	s := make([]int32, 0, to-from)
	for i := from; i < to; i++ {
		s = append(s, int32(i))
	}
	return s
}

// noWorkers fails if a goroutine of the pool still runs.
func noWorkers(t *testing.T) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if s := stacks(); strings.Contains(s, "cometpool.(*Pool)") {
			return fmt.Errorf("pool goroutines left:\n%s", s)
		}
		return nil
	})
}

func TestClose(t *testing.T) {
	t.Run("queued calls delivered before the deadline", func(t *testing.T) {
		checkGoroutines(t)
		srv := startTestComet(t)
		srv.set(func(s *testComet) { s.hold = true })
		cfg := testConfig()
		cfg.Shards, cfg.Queue = 2, 100
		p, _ := newTestPool(t, cfg)
		p.Update(map[string]string{"c": srv.addr})
		const calls = 50
		r := newOutcomes(t)
		for i := range calls {
			p.Send("c", uint32(i), r.push(i, uint32(i)%2))
		}
		testkit.WaitFor(t, 10*time.Second, func() error {
			if _, _, h := srv.stats(); h != 2 {
				return fmt.Errorf("comet holds %d attempts, want 2", h)
			}
			return nil
		})

		errc := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errc <- p.Close(ctx)
		}()
		testkit.WaitFor(t, 10*time.Second, func() error {
			if !p.closed.Load() {
				return errors.New("close has not begun")
			}
			return nil
		})
		p.Send("c", 0, r.push(calls, 0))
		p.Send("unknown", 0, r.push(calls+1, 0))
		for _, id := range []int{calls, calls + 1} {
			if o, ok := r.outcome(id); !ok || o != LostShutdown {
				t.Errorf("send during close: outcome %v (done %v), want shutdown at once", o, ok)
			}
		}
		p.Update(map[string]string{"c": srv.addr, "d": srv.addr})
		if got := p.Hosts(); fmt.Sprint(got) != "[c]" {
			t.Errorf("update during close changed hosts to %v", got)
		}

		srv.open()
		if err := <-errc; err != nil {
			t.Fatalf("close: %v", err)
		}
		r.waitIDs(t, Delivered, idRange(0, calls)...)
		if n := len(p.Hosts()); n != 0 {
			t.Errorf("%d comets after close", n)
		}
		noWorkers(t)
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("second close: %v", err)
		}
	})

	t.Run("expired context ends everything with shutdown", func(t *testing.T) {
		checkGoroutines(t)
		hung, failing := startTestComet(t), startTestComet(t)
		hung.set(func(s *testComet) { s.hold = true })
		failing.set(func(s *testComet) { s.failAll = codes.ResourceExhausted })
		cfg := testConfig()
		cfg.Shards, cfg.Queue = 2, 100
		cfg.CallTimeout = conf.Duration(time.Minute)
		cfg.RetryBase, cfg.RetryMax = conf.Duration(time.Minute), conf.Duration(time.Minute)
		cfg.RetryFor = conf.Duration(10 * time.Minute)
		p, m := newTestPool(t, cfg)
		p.Update(map[string]string{"h": hung.addr, "f": failing.addr})
		r := newOutcomes(t)
		for i := range 20 { // 2 in flight, 18 queued
			p.Send("h", uint32(i), r.push(i, uint32(i)%2))
		}
		for i := 20; i < 23; i++ { // 1 backing off, 2 queued
			p.Send("f", 0, r.push(i, 0))
		}
		testkit.WaitFor(t, 10*time.Second, func() error {
			if _, _, h := hung.stats(); h != 2 {
				return fmt.Errorf("comet h holds %d attempts, want 2", h)
			}
			if n := testutil.ToFloat64(m.retries.WithLabelValues("PushMsg")); n != 1 {
				return fmt.Errorf("retries_total = %v, want 1", n)
			}
			return nil
		})

		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := p.Close(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("close with a cancelled context: %v, want context.Canceled", err)
		}
		// close waited for the workers: every call has ended by now.
		if n, s := r.total(), r.count(LostShutdown); n != 23 || s != 23 {
			t.Fatalf("after close: %d calls done, %d shutdown; want 23, 23", n, s)
		}
		if got := callCount(m, "PushMsg", LostShutdown); got != 23 {
			t.Errorf("calls_total{shutdown} = %v, want 23", got)
		}
		noWorkers(t)
		testkit.WaitFor(t, 10*time.Second, func() error {
			if h, f := hung.conns.Load(), failing.conns.Load(); h+f != 0 {
				return fmt.Errorf("connections still open: h %d, f %d", h, f)
			}
			return nil
		})
		if err := p.Close(ctx); err != nil {
			t.Errorf("second close: %v", err)
		}
	})

	t.Run("empty pool", func(t *testing.T) {
		checkGoroutines(t)
		p, err := New(Config{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Close(context.Background()); err != nil {
			t.Fatalf("close: %v", err)
		}
		r := newOutcomes(t)
		p.Send("c", 0, r.push(0, 0))
		if o, ok := r.outcome(0); !ok || o != LostShutdown {
			t.Errorf("send after close: %v (done %v), want shutdown", o, ok)
		}
	})
}

// TestConcurrentUpdateSend sends from several goroutines while the
// comets come, go and move, then closes: every call ends exactly once.
func TestConcurrentUpdateSend(t *testing.T) {
	checkGoroutines(t)
	srvs := []*testComet{startTestComet(t), startTestComet(t), startTestComet(t)}
	cfg := testConfig()
	cfg.Shards, cfg.Queue = 4, 64
	p, _ := newTestPool(t, cfg)
	sets := []map[string]string{
		{"a": srvs[0].addr, "b": srvs[1].addr},
		{"b": srvs[2].addr, "c": srvs[0].addr},
		{"a": srvs[1].addr, "c": srvs[2].addr},
		{},
		{"a": srvs[2].addr, "b": srvs[0].addr, "c": srvs[1].addr},
	}
	p.Update(sets[0])

	const senders, updates = 4, 60
	r := newOutcomes(t)
	stop := make(chan struct{})
	var sending sync.WaitGroup
	var sent atomic.Int64
	for s := range senders {
		sending.Add(1)
		go func() {
			defer sending.Done()
			hosts := []string{"a", "b", "c"}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := int(sent.Add(1))
				p.Send(hosts[(s+i)%3], uint32(i), r.push(id, uint32(i)%4))
				time.Sleep(20 * time.Microsecond) // let the workers keep up, mostly
			}
		}()
	}
	for i := range updates {
		p.Update(sets[i%len(sets)])
		_ = p.Hosts()
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	sending.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if n := r.total(); n != int(sent.Load()) {
		t.Fatalf("%d calls done, want %d", n, sent.Load())
	}
	if n := r.count(LostRejected) + r.count(LostRetries); n != 0 {
		t.Errorf("%d calls rejected or out of retries", n)
	}
	t.Logf("delivered %d, comet_gone %d, queue_full %d, shutdown %d", r.count(Delivered),
		r.count(LostCometGone), r.count(LostQueueFull), r.count(LostShutdown))
}

func TestUpdateBadAddress(t *testing.T) {
	checkGoroutines(t)
	srv := startTestComet(t)
	p, _ := newTestPool(t, testConfig())
	p.Update(map[string]string{"good": srv.addr, "scheme": "grpc://" + srv.addr, "noport": "127.0.0.1", "": srv.addr})
	if got := p.Hosts(); fmt.Sprint(got) != "[good]" {
		t.Errorf("hosts() = %v, want [good]", got)
	}
	p.Update(map[string]string{"good": "bad address"})
	if len(p.Hosts()) != 0 {
		t.Errorf("a comet moved to an unusable address stays: hosts() = %v", p.Hosts())
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name     string
		modify   func(c *Config)
		wantKeys []string // nil: valid
	}{
		{name: "defaults", modify: func(*Config) {}},
		{name: "no shards", modify: func(c *Config) { c.Shards = 0 }, wantKeys: []string{"comet.shards"}},
		{name: "too many shards", modify: func(c *Config) { c.Shards = 5000 }, wantKeys: []string{"comet.shards"}},
		{name: "no queue", modify: func(c *Config) { c.Queue = 0 }, wantKeys: []string{"comet.queue"}},
		{name: "no call timeout", modify: func(c *Config) { c.CallTimeout = 0 }, wantKeys: []string{"comet.call_timeout"}},
		{name: "negative retry base", modify: func(c *Config) { c.RetryBase = -1 }, wantKeys: []string{"comet.retry_base"}},
		{name: "retry max below base", modify: func(c *Config) { c.RetryMax = conf.Duration(time.Millisecond) }, wantKeys: []string{"comet.retry_max"}},
		{name: "no retry_for", modify: func(c *Config) { c.RetryFor = 0 }, wantKeys: []string{"comet.retry_for"}},
		{
			name:     "every problem at once",
			modify:   func(c *Config) { *c = Config{} },
			wantKeys: []string{"comet.shards", "comet.queue", "comet.call_timeout", "comet.retry_base", "comet.retry_max", "comet.retry_for"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.modify(&c)
			var p conf.Problems
			c.Validate(p.Sub("comet"))
			err := p.Err()
			if tt.wantKeys == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, conf.ErrInvalid) {
				t.Fatalf("Validate: %v, want an error wrapping conf.ErrInvalid", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.wantKeys) {
				t.Errorf("Validate: %d problems, want %d:\n%v", len(lines), len(tt.wantKeys), err)
			}
			for _, k := range tt.wantKeys {
				if !strings.Contains(err.Error(), k+": ") {
					t.Errorf("Validate: %v\nwant a problem at %s", err, k)
				}
			}
		})
	}
}

func TestWarnLimiter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	const every = 200 * time.Millisecond // warnEvery, shortened for the test
	cm := &comet{log: log, warns: ratelog.New(1, every)}
	c := &Call{Push: &cometpb.PushMsgReq{}}
	err := status.Error(codes.InvalidArgument, "bad")
	for range 5 {
		cm.warn(warnRejected, "refused", c, err)
	}
	if n := strings.Count(buf.String(), "refused"); n != 1 {
		t.Fatalf("5 warnings in a row logged %d lines, want 1:\n%s", n, buf.String())
	}
	time.Sleep(every) // as if warnEvery had passed
	cm.warn(warnRejected, "refused", c, err)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "count=1") || !strings.Contains(lines[1], "count=5") ||
		!strings.Contains(lines[1], "code=InvalidArgument") || !strings.Contains(lines[1], "method=PushMsg") {
		t.Errorf("log:\n%s\nwant a line with count=1, then one with count=5 (4 suppressed + 1)", buf.String())
	}
}

// BenchmarkPush measures PushMsg calls through the pool to one local
// comet, at most window calls outstanding so that no queue overflows.
func BenchmarkPush(b *testing.B) {
	srv := startTestComet(b)
	cfg := DefaultConfig()
	p, _ := newTestPool(b, cfg)
	p.Update(map[string]string{"c": srv.addr})
	const window = 2048 // < Shards*Queue, spread evenly over the shards
	tokens := make(chan struct{}, window)
	var lost atomic.Int64
	done := func(o Outcome) {
		if o != Delivered {
			lost.Add(1)
		}
		<-tokens
	}
	req := &cometpb.PushMsgReq{Keys: []string{"key"}, ProtoOp: 1000, Proto: &protocol.Proto{Ver: 1, Op: protocol.OpRaw, Body: make([]byte, 64)}}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		tokens <- struct{}{}
		p.Send("c", uint32(i), &Call{Push: req, Done: done})
	}
	for range window {
		tokens <- struct{}{} // every call has ended
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
	b.StopTimer()
	if n := lost.Load(); n > 0 {
		b.Fatalf("%d calls lost", n)
	}
}
