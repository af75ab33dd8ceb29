package job

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/cluster"
)

// The embedded discovery server's own data race fires 60 s after it starts
// (testkit.Discovery), so the test that uses it runs last: go test runs
// files in name order, hence this file's name.

// TestCometsFromDiscovery: job finds the comets in discovery, delivers to
// them, drops a comet that leaves, and keeps only its zone when told to.
func TestCometsFromDiscovery(t *testing.T) {
	env := "job-test-" + testkit.RandomHex(4)
	c := startCluster(t, 0)
	for i := 1; i <= 2; i++ {
		c.StartCometWith(fmt.Sprintf("comet-d%d", i), func(cfg *comet.Config) { cfg.Discovery = testkit.Discovery(t, env) })
	}
	j, _ := c.startJob(func(cfg *Config) {
		cfg.Comets = nil
		cfg.Discovery = testkit.Discovery(t, env)
	})
	testkit.WaitFor(t, 5*time.Second, func() error {
		if n := len(j.pool.Hosts()); n != 2 {
			return fmt.Errorf("%d comets in the pool, want 2", n)
		}
		return nil
	})
	// job registers itself too, with an address (discovery requires one).
	dc := testkit.Discovery(t, env)
	dc.Host = "job-watcher"
	dcl, err := discovery.New(dc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dcl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	jobs := dcl.Watch(ctx, discovery.AppJob)
	testkit.WaitFor(t, 5*time.Second, func() error {
		ins := jobs.Instances()
		if len(ins) != 1 || len(ins[0].Addrs) != 1 || !strings.HasPrefix(ins[0].Addrs[0], "job://") {
			return fmt.Errorf("goim.job instances %+v, want one with a job:// address", ins)
		}
		return nil
	})

	r := c.Dial("comet-d1", "tcp", `{"mid":1,"key":"d1","accepts":[1000]}`)
	c.WaitOnline(1)
	c.Push("/goim/push/keys?operation=1000&keys=d1", "via-discovery")
	if got := r.Wait(1, 10*time.Second); got[0] != "via-discovery" {
		t.Fatalf("got %q", got)
	}

	cluster.Shutdown(t, c.Comets["comet-d2"].Shutdown) // cancels its registration
	testkit.WaitFor(t, 10*time.Second, func() error {
		if hosts := j.pool.Hosts(); len(hosts) != 1 || hosts[0] != "comet-d1" {
			return fmt.Errorf("pool %v, want [comet-d1]", hosts)
		}
		return nil
	})

	other, _ := c.startJob(func(cfg *Config) {
		cfg.Comets = nil
		cfg.Discovery = testkit.Discovery(t, env)
		cfg.Kafka.Group += "-zone"
		cfg.CometZone = "no-such-zone"
	})
	if n := len(other.pool.Hosts()); n != 0 {
		t.Fatalf("a job of another zone has %d comets", n)
	}
}
