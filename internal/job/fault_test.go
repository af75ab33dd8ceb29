package job

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/testkit/cluster"
	"google.golang.org/grpc"
)

// TestKillAndRestart: 10,000 pushes are published while a job delivers
// them; the job is killed mid-stream (no flush, no final commit) and a new
// one joins the same group. Every push is delivered at least once; the
// duplicates a restart causes are reported.
func TestKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a consumer group session to time out")
	}
	c := startCluster(t, 2)
	first, _ := c.startJob(nil)
	const clients, n = 4, 10000
	var rs []*cluster.Client
	for i := range clients {
		host := fmt.Sprintf("comet-%d", i%2+1)
		rs = append(rs, c.Dial(host, []string{"tcp", "ws"}[i/2], fmt.Sprintf(`{"mid":%d,"key":"k%d","accepts":[1000]}`, i+1, i)))
	}
	c.WaitOnline(clients)

	var published atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 { // 8 concurrent publishers, each its own share of the pushes
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				c.Push(fmt.Sprintf("/goim/push/keys?operation=1000&keys=k%d", i%clients), strconv.Itoa(i))
				published.Add(1)
			}
		})
	}
	total := func() int {
		s := 0
		for _, r := range rs {
			s += r.Count()
		}
		return s
	}
	waitCount(t, 30*time.Second, func() bool { return total() >= n/3 })
	first.kill()
	killedAt := total()
	t.Logf("killed the first job after %d deliveries, %d published", killedAt, published.Load())
	c.startJob(nil)
	wg.Wait()

	seen := make(map[string]int, n)
	waitCount(t, 60*time.Second, func() bool {
		clear(seen)
		for _, r := range rs {
			got, _ := r.Received()
			for _, b := range got {
				seen[b]++
			}
		}
		return len(seen) == n
	})
	dups := 0
	for _, k := range seen {
		dups += k - 1
	}
	t.Logf("all %d pushes delivered; %d duplicates after the restart (%.1f %%)", n, dups, 100*float64(dups)/n)
	for i, r := range rs {
		got, _ := r.Received()
		for _, b := range got {
			if v, _ := strconv.Atoi(b); v%clients != i {
				t.Errorf("%s got push %s meant for k%d", r.Name, b, v%clients)
			}
		}
	}
}

func waitCount(t *testing.T, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hungComet accepts gRPC calls and never answers them.
type hungComet struct {
	cometpb.UnimplementedCometServer
	calls atomic.Int64
}

func (h *hungComet) hang(ctx context.Context) error {
	h.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

func (h *hungComet) PushMsg(ctx context.Context, _ *cometpb.PushMsgReq) (*cometpb.PushMsgReply, error) {
	return nil, h.hang(ctx)
}

func (h *hungComet) BroadcastRoom(ctx context.Context, _ *cometpb.BroadcastRoomReq) (*cometpb.BroadcastRoomReply, error) {
	return nil, h.hang(ctx)
}

func (h *hungComet) Broadcast(ctx context.Context, _ *cometpb.BroadcastReq) (*cometpb.BroadcastReply, error) {
	return nil, h.hang(ctx)
}

// TestHungComet: a comet that accepts calls and never answers does not
// delay pushes to another comet; what it was sent is counted lost.
func TestHungComet(t *testing.T) {
	c := startCluster(t, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hung := &hungComet{}
	gs := grpc.NewServer()
	cometpb.RegisterCometServer(gs, hung)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)

	_, reg := c.startJob(func(cfg *Config) {
		cfg.Comets["comet-hung"] = ln.Addr().String()
		cfg.Comet.CallTimeout = conf.Duration(500 * time.Millisecond)
		cfg.Comet.RetryFor = conf.Duration(time.Second)
		cfg.Comet.Queue = 16
	})
	r := c.Dial("comet-1", "tcp", `{"mid":1,"key":"k1","room_id":"live://h","accepts":[1000]}`)
	c.WaitOnline(1)
	const n = 300
	start := time.Now()
	for i := range n {
		if i%2 == 0 {
			c.Push("/goim/push/keys?operation=1000&keys=k1", strconv.Itoa(i))
		} else {
			c.Push("/goim/push/room?operation=1000&type=live&room=h", strconv.Itoa(i)) // room pushes go to both comets
		}
	}
	got := r.Wait(n, 20*time.Second)
	t.Logf("%d pushes to the healthy comet delivered in %v while the hung one held %d calls", len(got), time.Since(start), hung.calls.Load())
	if hung.calls.Load() == 0 {
		t.Fatal("the hung comet was never called")
	}
	// Its calls end as lost (timeouts until retry_for, or its full queue).
	waitCount(t, 20*time.Second, func() bool { return sumMetric(t, reg, "goim_job_lost_total") > 0 })
	t.Logf("lost to the hung comet: %v", sumMetric(t, reg, "goim_job_lost_total"))
}
