package job

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// deferLogic is logic's gRPC service as job sees it: it records every
// Defer call, refusing those without the rpc secret as logic does.
type deferLogic struct {
	logicpb.UnimplementedLogicServer
	secret string
	mu     sync.Mutex
	calls  [][]*logicpb.Ack
}

func (l *deferLogic) Defer(ctx context.Context, r *logicpb.DeferReq) (*logicpb.DeferReply, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if !slices.Contains(md.Get("authorization"), "Bearer "+l.secret) {
		return nil, status.Error(codes.Unauthenticated, "no rpc secret")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, r.GetDeferred())
	return &logicpb.DeferReply{}, nil
}

// targets returns every target received so far as "msg_id/mid/key",
// sorted, and the number of calls.
func (l *deferLogic) targets() ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, c := range l.calls {
		for _, a := range c {
			out = append(out, fmt.Sprintf("%s/%d/%s", a.GetMsgId(), a.GetMid(), a.GetKey()))
		}
	}
	slices.Sort(out)
	return out, len(l.calls)
}

// startDeferLogic serves a deferLogic on loopback until the test ends.
func startDeferLogic(t *testing.T, secret string) (*deferLogic, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &deferLogic{secret: secret}
	gs := grpc.NewServer()
	logicpb.RegisterLogicServer(gs, l)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return l, ln.Addr().String()
}

// goneAddr is a loopback address nothing listens on: every attempt to
// reach it is refused.
func goneAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// TestDeferralReports: pushes to a comet that cannot be reached end
// retries_exhausted; the targets of the deferred ones (every key in a
// stream) reach logic's Defer, with the rpc secret: a mids push's keys as
// their members (a member once per call), a keys push's as the key (mid
// 0). A call with a key in no stream, and a user-stream key without a
// member id, report nothing.
func TestDeferralReports(t *testing.T) {
	const secret = "job-test-rpc-secret-for-the-deferrals"
	lg, logicAddr := startDeferLogic(t, secret)
	r := startRig(t, map[string]string{"comet-gone": goneAddr(t)}, func(c *Config) {
		c.RPC.Secrets = []string{secret}
		c.Logic.Enabled = true
		c.Logic.Addrs = []string{logicAddr}
		c.Comet.Shards = 1 // one call per push
		c.Comet.CallTimeout = conf.Duration(200 * time.Millisecond)
		c.Comet.RetryBase = conf.Duration(10 * time.Millisecond)
		c.Comet.RetryMax = conf.Duration(50 * time.Millisecond)
		c.Comet.RetryFor = conf.Duration(300 * time.Millisecond)
	})
	push := func(id int, keys []string, mids []int64, ps ...*protocol.Position) *logicpb.PushMsg {
		return &logicpb.PushMsg{Type: logicpb.PushMsg_PUSH, Operation: 1000, Server: "comet-gone", Keys: keys, Mids: mids,
			Msg: []byte("p"), MsgId: msgID(id), Positions: ps}
	}
	r.produce(
		// A mids push to users 41 (two keys) and 42.
		push(1, []string{"a1", "a2", "b1"}, []int64{41, 41, 42},
			pos(protocol.StreamUser, 1, 1), pos(protocol.StreamUser, 1, 1), pos(protocol.StreamUser, 2, 7)),
		// A keys push.
		push(2, []string{"k1", "k2"}, nil, pos(protocol.StreamKey, 3, 1), pos(protocol.StreamKey, 4, 1)),
		// Lost, not deferred: k3 keeps no stream.
		push(3, []string{"k3"}, nil, pos(protocol.StreamNone, 0, 0)),
		// A mids push from a logic that sends no mids: nothing to name.
		push(4, []string{"c1"}, nil, pos(protocol.StreamUser, 5, 1)),
	)
	r.waitFinished(4)
	want := []string{
		msgID(1) + "/41/a1", msgID(1) + "/42/b1",
		msgID(2) + "/0/k1", msgID(2) + "/0/k2",
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if got, _ := lg.targets(); !slices.Equal(got, want) {
			return fmt.Errorf("logic got %q, want %q", got, want)
		}
		return nil
	})
	if _, calls := lg.targets(); calls > 2 {
		t.Errorf("%d Defer calls for 4 targets deferred within 100 ms, want them batched", calls)
	}
	if got, want := byLabel(t, r.reg, "goim_job_deferral_reports_total", "result"), map[string]float64{"sent": 4, "dropped": 0, "error": 0}; !maps.Equal(got, want) {
		t.Errorf("deferral_reports_total = %v, want %v", got, want)
	}
}

// newTestReporter is a reporter to logicAddr on its own registry, not
// started.
func newTestReporter(t *testing.T, logicAddr string, secret string) (*reporter, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := rpcauth.Config{Secrets: []string{secret}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	r, err := newReporter(LogicConfig{Enabled: true, Addrs: []string{logicAddr}, Timeout: conf.Duration(time.Second)}, keys, m, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	return r, reg
}

// TestDeferralOverflow: beyond the queue's bound targets are dropped and
// counted, never waited for; after stop every target is dropped.
func TestDeferralOverflow(t *testing.T) {
	const secret = "job-test-rpc-secret-for-the-overflow"
	lg, logicAddr := startDeferLogic(t, secret)
	r, reg := newTestReporter(t, logicAddr, secret)
	for i := range deferQueue + 5 {
		r.add(deferral{msgID: msgID(i), key: "k"})
	}
	if got := byLabel(t, reg, "goim_job_deferral_reports_total", "result")["dropped"]; got != 5 {
		t.Fatalf("dropped = %v, want 5", got)
	}
	// Started, the sender sends the whole queue in batches of at most
	// logic's bound.
	var wg sync.WaitGroup
	r.start(t.Context(), &wg, nil)
	testkit.WaitFor(t, 20*time.Second, func() error {
		if got, _ := lg.targets(); len(got) != deferQueue {
			return fmt.Errorf("logic got %d targets, want %d", len(got), deferQueue)
		}
		return nil
	})
	lg.mu.Lock()
	for i, c := range lg.calls {
		if len(c) > logic.MaxAcks {
			t.Errorf("call %d has %d targets, more than logic's MaxAcks %d", i, len(c), logic.MaxAcks)
		}
	}
	lg.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.stop(ctx)
	r.add(deferral{msgID: msgID(1), key: "k"})
	if got, want := byLabel(t, reg, "goim_job_deferral_reports_total", "result"), map[string]float64{"sent": deferQueue, "dropped": 6, "error": 0}; !maps.Equal(got, want) {
		t.Errorf("deferral_reports_total = %v, want %v", got, want)
	}
	if deferBatch != logic.MaxAcks {
		t.Errorf("deferBatch = %d, logic's MaxAcks = %d", deferBatch, logic.MaxAcks)
	}
}

// TestDeferralLogicDown: with logic unreachable the reports fail after a
// retry and are counted; with logic hung, stop returns at its deadline.
func TestDeferralLogicDown(t *testing.T) {
	r, reg := newTestReporter(t, goneAddr(t), "job-test-rpc-secret-for-logic-down")
	var wg sync.WaitGroup
	r.start(t.Context(), &wg, nil)
	r.add(deferral{msgID: msgID(1), mid: 5, key: "k"})
	testkit.WaitFor(t, 10*time.Second, func() error {
		if got := byLabel(t, reg, "goim_job_deferral_reports_total", "result")["error"]; got != 1 {
			return fmt.Errorf("error = %v, want 1", got)
		}
		return nil
	})
	r.stop(context.Background())

	// A logic that accepts connections and never answers: the call waits
	// for its timeout, stop does not.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	hung, reg := newTestReporter(t, ln.Addr().String(), "job-test-rpc-secret-for-logic-hung")
	hung.timeout = time.Minute
	hung.start(t.Context(), &wg, nil)
	hung.add(deferral{msgID: msgID(2), key: "k"})
	time.Sleep(2 * deferFlush) // the call is in flight
	hung.add(deferral{msgID: msgID(3), key: "k"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	hung.stop(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stop took %v with a 300ms deadline", d)
	}
	got := byLabel(t, reg, "goim_job_deferral_reports_total", "result")
	if got["sent"] != 0 || got["error"]+got["dropped"] != 2 {
		t.Errorf("deferral_reports_total = %v, want the 2 targets in error or dropped", got)
	}
}
