package job

import (
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/cluster"
	"github.com/prometheus/client_golang/prometheus"
)

// testCluster is goim on loopback (kfake, logic, real comets) with a
// consumer group of its own for the jobs a test starts.
type testCluster struct {
	*cluster.Cluster
	t     *testing.T
	group string
}

func startCluster(t *testing.T, comets int) *testCluster {
	t.Helper()
	return &testCluster{Cluster: cluster.Start(t, comets), t: t, group: "job-test-" + testkit.RandomHex(4)}
}

// jobConfig is a job on this cluster's topic and group, with the comets
// listed statically.
func (c *testCluster) jobConfig() Config {
	cfg := Default()
	cfg.Host = "job-test"
	cfg.Kafka.Brokers = c.Kafka.ListenAddrs()
	cfg.Kafka.Topic = c.Topic
	cfg.Kafka.Group = c.group
	cfg.Kafka.SessionTimeout = conf.Duration(6 * time.Second) // kfake's minimum
	cfg.Kafka.CommitInterval = conf.Duration(100 * time.Millisecond)
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Comets = c.CometAddrs()
	cfg.RPC.Secrets = []string{c.Secret}
	cfg.Logic.Addrs = []string{c.Logic.RPCAddr()}
	return cfg
}

// startJob starts a job (edit may change its config) and waits until it
// consumes. It is shut down at cleanup unless the test did.
func (c *testCluster) startJob(edit func(*Config)) (*Job, *prometheus.Registry) {
	c.t.Helper()
	cfg := c.jobConfig()
	if edit != nil {
		edit(&cfg)
	}
	reg := prometheus.NewRegistry()
	j, err := New(cfg, Deps{Logger: testkit.Logger(c.t), Registry: reg})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := j.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cluster.Shutdown(c.t, j.Shutdown) })
	testkit.WaitFor(c.t, 20*time.Second, j.Ready)
	return j, reg
}

// sumMetric sums every series of the counter or gauge name in reg.
func sumMetric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// histogram returns the sample count and sum of the histogram name in reg.
func histogram(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}
