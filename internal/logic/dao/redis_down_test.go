package dao_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/testkit"
)

func TestRedisDownAndBack(t *testing.T) {
	port := freePort(t)
	srv := testkit.StartRedisServer(t, port)
	cfg := dao.DefaultRedisConfig()
	cfg.Addr = srv.Addr()
	cfg.Prefix = "test:"
	cfg.DialTimeout = conf.Duration(500 * time.Millisecond)
	cfg.ReadTimeout = conf.Duration(500 * time.Millisecond)
	cfg.WriteTimeout = conf.Duration(500 * time.Millisecond)
	r, err := dao.NewRedis(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if err := r.AddSession(ctx, dao.Session{Mid: 1, Key: "k", Server: "s1"}); err != nil {
		t.Fatalf("AddSession: %v", err)
	}

	// A restart between two operations costs no failure: the pooled
	// connection the old server closed is detected and replaced.
	srv.Stop()
	srv = testkit.StartRedisServer(t, port)
	if err := r.AddSession(ctx, dao.Session{Mid: 1, Key: "k", Server: "s1"}); err != nil {
		t.Fatalf("first AddSession after a restart: %v", err)
	}
	// A fresh server has no script cached: EVALSHA falls back to EVAL.
	if res, err := r.RenewSession(ctx, dao.Session{Mid: 1, Key: "k", Server: "s1"}); err != nil || res != dao.Renewed {
		t.Fatalf("RenewSession on a fresh server = %v, %v; want renewed, nil", res, err)
	}
	if owned, err := r.DelSession(ctx, dao.Session{Mid: 1, Key: "k", Server: "s2"}); err != nil || owned {
		t.Fatalf("DelSession by another comet on a fresh server = %v, %v; want false, nil", owned, err)
	}
	if _, err := r.StoreOnline(ctx, "s1", map[string]int32{"a": 1}, 1, 1, false); err != nil {
		t.Fatalf("StoreOnline on a fresh server: %v", err)
	}
	if got, err := r.LoadAllOnline(ctx); err != nil || len(got) != 1 {
		t.Fatalf("LoadAllOnline on a fresh server = %v, %v; want s1's report", got, err)
	}

	// Down: every operation fails promptly with ErrRedis.
	srv.Stop()
	ops := []struct {
		name string
		call func() error
	}{
		{name: "ping", call: func() error { return r.Ping(ctx) }},
		{name: "add session", call: func() error { return r.AddSession(ctx, dao.Session{Mid: 1, Key: "k", Server: "s1"}) }},
		{name: "renew session", call: func() error { _, err := r.RenewSession(ctx, dao.Session{Mid: 1, Key: "k", Server: "s1"}); return err }},
		{name: "delete session", call: func() error { _, err := r.DelSession(ctx, dao.Session{Mid: 1, Key: "k", Server: "s1"}); return err }},
		{name: "servers by keys", call: func() error { _, err := r.ServersByKeys(ctx, []string{"k"}); return err }},
		{name: "keys by mids", call: func() error { _, err := r.KeysByMids(ctx, []int64{1}); return err }},
		{name: "store online", call: func() error { _, err := r.StoreOnline(ctx, "s1", map[string]int32{"a": 1}, 1, 1, false); return err }},
		{name: "load online", call: func() error { _, err := r.LoadOnline(ctx, []string{"s1"}); return err }},
		{name: "load all online", call: func() error { _, err := r.LoadAllOnline(ctx); return err }},
	}
	for _, op := range ops {
		t.Run("down/"+op.name, func(t *testing.T) {
			start := time.Now()
			err := op.call()
			if !errors.Is(err, dao.ErrRedis) {
				t.Fatalf("%s with Redis down = %v, want ErrRedis", op.name, err)
			}
			// Prompt: a refused dial, not a wait (generous bound: the
			// dial and read timeouts are 500ms).
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("%s took %v to fail", op.name, elapsed)
			}
			t.Logf("%s: %v (after %v)", op.name, err, time.Since(start).Round(time.Millisecond))
		})
	}

	// Back on the same port: the same DAO recovers.
	_ = testkit.StartRedisServer(t, port) // stopped by its own cleanup
	waitFor(t, 10*time.Second, func() error { return r.AddSession(ctx, dao.Session{Mid: 1, Key: "k", Server: "s2"}) })
	got, err := r.ServersByKeys(ctx, []string{"k"})
	if err != nil {
		t.Fatalf("ServersByKeys after recovery: %v", err)
	}
	if want := map[string][]string{"s2": {"k"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ServersByKeys after recovery = %v, want %v", got, want)
	}
	if err := r.Ping(ctx); err != nil {
		t.Fatalf("Ping after recovery: %v", err)
	}
}
