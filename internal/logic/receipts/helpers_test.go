package receipts

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/testkit"
)

// clock is a tracker's clock that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a tracker on the shared test Redis under a prefix of its own.
type env struct {
	t      *testing.T
	tr     *Tracker
	reg    *prometheus.Registry
	clock  *clock
	raw    redis.Conn
	prefix string
}

// newEnv builds a tracker with cfg (edit may change the defaults) on a
// fake clock; it is not started unless start. It closes at cleanup.
func newEnv(t *testing.T, start bool, edit func(*Config)) *env {
	t.Helper()
	raw, prefix := testkit.Redis(t)
	rcfg := dao.DefaultRedisConfig()
	rcfg.Addr = testkit.RedisAddr()
	rcfg.Prefix = prefix
	store, err := dao.NewRedis(rcfg, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := DefaultConfig()
	if edit != nil {
		edit(&cfg)
	}
	reg := prometheus.NewRegistry()
	tr, err := New(cfg, store, reg, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.UnixMilli(time.Now().UnixMilli())}
	tr.now = c.now
	if start {
		tr.Start()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tr.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &env{t: t, tr: tr, reg: reg, clock: c, raw: raw, prefix: prefix}
}

// metric returns the value of the counter or gauge name with label
// label=value (label "" for none); 0 when absent.
func (e *env) metric(name, label, value string) float64 {
	e.t.Helper()
	return metricValue(e.t, e.reg, name, label, value)
}

func metricValue(t testing.TB, reg prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || hasLabel(m, label, value) {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}
