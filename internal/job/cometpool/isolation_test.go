package cometpool

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// stuckBroadcastComet serves goim.comet.Comet over real gRPC: Broadcast
// blocks until released (or its deadline), PushMsg and BroadcastRoom
// answer at once. Calls need the secret when one is given.
type stuckBroadcastComet struct {
	cometpb.UnimplementedCometServer
	addr    string
	release chan struct{}

	mu         sync.Mutex
	hanging    int      // Broadcast calls blocked now
	broadcasts []string // bodies of the broadcasts answered OK, in order
}

func startStuckBroadcastComet(t *testing.T, secrets ...string) *stuckBroadcastComet {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if len(secrets) > 0 {
		keys, err := rpcauth.Config{Secrets: secrets}.Load()
		if err != nil {
			t.Fatal(err)
		}
		opts = keys.ServerOptions(nil, nil)
	}
	s := &stuckBroadcastComet{addr: ln.Addr().String(), release: make(chan struct{})}
	srv := grpc.NewServer(opts...)
	cometpb.RegisterCometServer(srv, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return s
}

func (s *stuckBroadcastComet) Broadcast(ctx context.Context, req *cometpb.BroadcastReq) (*cometpb.BroadcastReply, error) {
	s.mu.Lock()
	s.hanging++
	s.mu.Unlock()
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hanging--
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	s.broadcasts = append(s.broadcasts, string(req.GetProto().GetBody()))
	return &cometpb.BroadcastReply{}, nil
}

func (s *stuckBroadcastComet) PushMsg(context.Context, *cometpb.PushMsgReq) (*cometpb.PushMsgReply, error) {
	return &cometpb.PushMsgReply{}, nil
}

func (s *stuckBroadcastComet) BroadcastRoom(context.Context, *cometpb.BroadcastRoomReq) (*cometpb.BroadcastRoomReply, error) {
	return &cometpb.BroadcastRoomReply{}, nil
}

func (s *stuckBroadcastComet) state() (hanging int, broadcasts []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hanging, append([]string(nil), s.broadcasts...)
}

// TestBroadcastIsolated: while a comet holds a Broadcast, key pushes
// and room pushes to it, on every shard (one shard here, the worst case),
// are still delivered; the broadcasts are delivered in order once the
// comet answers.
func TestBroadcastIsolated(t *testing.T) {
	checkGoroutines(t)
	srv := startStuckBroadcastComet(t)
	cfg := testConfig()
	cfg.Shards = 1
	cfg.CallTimeout = conf.Duration(time.Minute) // the broadcast hangs, it does not fail
	p, _ := newTestPool(t, cfg)
	p.Update(map[string]string{"c": srv.addr})

	r := newOutcomes(t)
	body := func(s string) *protocol.Proto { return &protocol.Proto{Ver: 1, Op: protocol.OpRaw, Body: []byte(s)} }
	p.Send("c", 0, &Call{Broadcast: &cometpb.BroadcastReq{ProtoOp: 1000, Proto: body("b0"), Speed: 1}, Done: r.done(0)})
	p.Send("c", 0, &Call{Broadcast: &cometpb.BroadcastReq{ProtoOp: 1000, Proto: body("b1")}, Done: r.done(1)})
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n, _ := srv.state(); n != 1 {
			return fmt.Errorf("%d broadcasts held by the comet, want 1", n)
		}
		return nil
	})

	var ids []int
	for i := 10; i < 30; i++ {
		c := r.push(i, 0)
		if i%2 == 1 {
			c = &Call{Room: &cometpb.BroadcastRoomReq{RoomID: "live://1", Proto: body("room")}, Done: r.done(i)}
		}
		p.Send("c", uint32(i), c)
		ids = append(ids, i)
	}
	r.waitIDs(t, Delivered, ids...)
	if _, ok := r.outcome(0); ok {
		t.Fatal("the held broadcast ended before the comet answered it")
	}

	close(srv.release)
	r.waitIDs(t, Delivered, 0, 1)
	if _, got := srv.state(); len(got) != 2 || got[0] != "b0" || got[1] != "b1" {
		t.Fatalf("broadcasts delivered %q, want [b0 b1]", got)
	}
}

// TestSendsSecret: the pool's dial options carry the rpc secret; a
// comet requiring it accepts the pool's calls, and refuses (rejected, not
// retried) those of a pool without it.
func TestSendsSecret(t *testing.T) {
	checkGoroutines(t)
	secret := strings.Repeat("j", 32)
	srv := startStuckBroadcastComet(t, secret)
	keys, err := rpcauth.Config{Secrets: []string{secret}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dial []grpc.DialOption
		want Outcome
	}{
		{name: "with the secret", dial: keys.DialOptions(), want: Delivered},
		{name: "without", want: LostRejected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(testConfig(), nil, prometheus.NewRegistry(), tc.dial...)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = p.Close(context.Background()) }()
			p.Update(map[string]string{"c": srv.addr})
			r := newOutcomes(t)
			p.Send("c", 0, r.push(1, 0))
			r.waitIDs(t, tc.want, 1)
		})
	}
}
