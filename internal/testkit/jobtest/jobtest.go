// Package jobtest starts a real job on a test cluster (testkit/cluster),
// for the tests of what sits on top of the whole path (the load tool, the
// demo page). job's own tests cannot use it: it imports job.
package jobtest

import (
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/job"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/cluster"
)

// Start runs a job named host delivering c's pushes to c's comets, in a
// consumer group of its own, and waits until it consumes; the test's
// cleanup stops it.
func Start(t *testing.T, c *cluster.Cluster, host string) *job.Job {
	t.Helper()
	cfg := job.Default()
	cfg.Host = host
	cfg.Kafka.Brokers = c.Kafka.ListenAddrs()
	cfg.Kafka.Topic = c.Topic
	cfg.Kafka.Group = host + "-" + testkit.RandomHex(4)
	cfg.Kafka.SessionTimeout = conf.Duration(6 * time.Second) // kfake's minimum
	cfg.Kafka.CommitInterval = conf.Duration(100 * time.Millisecond)
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Comets = c.CometAddrs()
	cfg.RPC.Secrets = []string{c.Secret}
	cfg.Logic.Addrs = []string{c.Logic.RPCAddr()}
	j, err := job.New(cfg, job.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Shutdown(t, j.Shutdown) })
	testkit.WaitFor(t, 30*time.Second, j.Ready)
	return j
}
