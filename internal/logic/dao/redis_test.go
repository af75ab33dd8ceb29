package dao_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
)

// session is one connection's routing: member mid, connection key,
// comet, connection id (0: none).
type session struct {
	mid    int64
	key    string
	server string
	connID uint64
}

func (s session) dao() dao.Session {
	return dao.Session{Mid: s.mid, Key: s.key, Server: s.server, ConnID: s.connID}
}

func addSessions(t *testing.T, r *dao.Redis, sessions []session) {
	t.Helper()
	for _, s := range sessions {
		if err := r.AddSession(context.Background(), s.dao()); err != nil {
			t.Fatalf("AddSession(%+v): %v", s, err)
		}
	}
}

// checkRouting compares the key_ and mid_ keys with want: wantKeys maps a
// connection key to its server ("" = key_ must not exist), wantMids a mid
// to its hash (nil = mid_ must not exist).
func checkRouting(t *testing.T, raw *rawRedis, wantKeys map[string]string, wantMids map[int64]map[string]string) {
	t.Helper()
	for key, want := range wantKeys {
		got, ok := raw.get("key_" + key)
		switch {
		case want == "" && ok:
			t.Errorf("key_%s = %q, want no key", key, got)
		case want != "" && got != want:
			t.Errorf("key_%s = %q (exists %v), want %q", key, got, ok, want)
		}
	}
	for mid, want := range wantMids {
		name := "mid_" + itoa(int(mid))
		got := raw.hgetall(name)
		if want == nil {
			if raw.exists(name) {
				t.Errorf("%s = %v, want no key", name, got)
			}
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func TestRedisConfigValidate(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(*dao.RedisConfig)
		wantPaths []string // key paths the error must name; none = valid
	}{
		{name: "defaults are valid", mutate: func(*dao.RedisConfig) {}},
		{name: "unlimited max_active", mutate: func(c *dao.RedisConfig) { c.MaxActive = 0; c.MaxIdle = 1000 }},
		{name: "addr without port", mutate: func(c *dao.RedisConfig) { c.Addr = "localhost" }, wantPaths: []string{"redis.addr"}},
		{name: "negative db", mutate: func(c *dao.RedisConfig) { c.DB = -1 }, wantPaths: []string{"redis.db"}},
		{
			name: "zero timeouts",
			mutate: func(c *dao.RedisConfig) {
				c.DialTimeout, c.ReadTimeout, c.WriteTimeout = 0, 0, 0
			},
			wantPaths: []string{"redis.dial_timeout", "redis.read_timeout", "redis.write_timeout"},
		},
		{name: "max_idle above max_active", mutate: func(c *dao.RedisConfig) { c.MaxIdle, c.MaxActive = 10, 5 }, wantPaths: []string{"redis.max_idle"}},
		{name: "negative pool sizes", mutate: func(c *dao.RedisConfig) { c.MaxIdle, c.MaxActive = -1, -1 }, wantPaths: []string{"redis.max_idle", "redis.max_active"}},
		{name: "negative idle_timeout", mutate: func(c *dao.RedisConfig) { c.IdleTimeout = -1 }, wantPaths: []string{"redis.idle_timeout"}},
		{
			name:      "TTLs below a millisecond",
			mutate:    func(c *dao.RedisConfig) { c.SessionTTL, c.OnlineTTL = 0, conf.Duration(time.Microsecond) },
			wantPaths: []string{"redis.session_ttl", "redis.online_ttl"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := dao.DefaultRedisConfig()
			tt.mutate(&cfg)
			var p conf.Problems
			cfg.Validate(p.Sub("redis"))
			err := p.Err()
			if len(tt.wantPaths) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := dao.NewRedis(cfg, nil); err != nil {
					t.Fatalf("NewRedis: %v", err)
				}
				return
			}
			wantInvalid(t, err, tt.wantPaths)
			if _, err := dao.NewRedis(cfg, nil); !errors.Is(err, conf.ErrInvalid) {
				t.Errorf("NewRedis = %v, want conf.ErrInvalid", err)
			}
		})
	}
}

func TestAddSession(t *testing.T) {
	ttl := 10 * time.Minute
	tests := []struct {
		name     string
		before   []session
		add      session
		wantKeys map[string]string
		wantMids map[int64]map[string]string
	}{
		{
			name:     "member session",
			add:      session{mid: 7, key: "k1", server: "s1"},
			wantKeys: map[string]string{"k1": "s1"},
			wantMids: map[int64]map[string]string{7: {"k1": "s1"}},
		},
		{
			name:     "anonymous session has no mid_ hash",
			add:      session{mid: 0, key: "k1", server: "s1"},
			wantKeys: map[string]string{"k1": "s1"},
			wantMids: map[int64]map[string]string{0: nil},
		},
		{
			name:     "second connection of a member",
			before:   []session{{mid: 7, key: "k1", server: "s1"}},
			add:      session{mid: 7, key: "k2", server: "s2"},
			wantKeys: map[string]string{"k1": "s1", "k2": "s2"},
			wantMids: map[int64]map[string]string{7: {"k1": "s1", "k2": "s2"}},
		},
		{
			name:     "reconnect moves the key to the new comet",
			before:   []session{{mid: 7, key: "k1", server: "s1"}},
			add:      session{mid: 7, key: "k1", server: "s2"},
			wantKeys: map[string]string{"k1": "s2"},
			wantMids: map[int64]map[string]string{7: {"k1": "s2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, raw := newTestRedis(t, func(c *dao.RedisConfig) { c.SessionTTL = conf.Duration(ttl) })
			addSessions(t, r, tt.before)
			if err := r.AddSession(context.Background(), tt.add.dao()); err != nil {
				t.Fatalf("AddSession: %v", err)
			}
			checkRouting(t, raw, tt.wantKeys, tt.wantMids)
			raw.checkTTL("key_"+tt.add.key, ttl)
			if tt.add.mid > 0 {
				raw.checkTTL("mid_"+itoa(int(tt.add.mid)), ttl)
			}
		})
	}
}

// TestAddSessions: a batch is stored as its sessions would be one by one;
// a bad entry fails alone; after Close every entry fails with ErrClosed.
func TestAddSessions(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	errs := r.AddSessions(context.Background(), []dao.Session{
		{Mid: 7, Key: "k1", Server: "s1"},
		{Mid: 8, Key: "", Server: "s1"},
		{Mid: 0, Key: "k3", Server: "s2"},
		{Mid: 7, Key: "k4", Server: "s2"},
	})
	if len(errs) != 4 || errs[0] != nil || errs[2] != nil || errs[3] != nil {
		t.Fatalf("errs %v, want only the second to fail", errs)
	}
	if !errors.Is(errs[1], dao.ErrInvalidArgument) || errors.Is(errs[1], dao.ErrRedis) {
		t.Fatalf("empty key: %v, want ErrInvalidArgument", errs[1])
	}
	checkRouting(t, raw, map[string]string{"k1": "s1", "k3": "s2", "k4": "s2"},
		map[int64]map[string]string{7: {"k1": "s1", "k4": "s2"}, 8: nil})
	if got := r.AddSessions(context.Background(), nil); len(got) != 0 {
		t.Fatalf("empty batch: %v", got)
	}
	_ = r.Close()
	errs = r.AddSessions(context.Background(), []dao.Session{{Mid: 9, Key: "k9", Server: "s1"}})
	if !errors.Is(errs[0], dao.ErrRedis) || !errors.Is(errs[0], dao.ErrClosed) {
		t.Fatalf("after Close: %v, want ErrRedis and ErrClosed", errs[0])
	}
}

// TestDelSessions: a batch deletes what DelSession would delete one by
// one, also after Redis lost its script cache; a bad entry fails alone.
func TestDelSessions(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	ctx := context.Background()
	addSessions(t, r, []session{{mid: 7, key: "k1", server: "s1"}, {mid: 7, key: "k2", server: "s2"}, {mid: 0, key: "k3", server: "s1"}})
	for _, flush := range []bool{false, true} {
		if flush {
			raw.must("SCRIPT", "FLUSH")
			addSessions(t, r, []session{{mid: 7, key: "k1", server: "s1"}, {mid: 0, key: "k3", server: "s1"}})
		}
		owned, errs, err := r.DelSessions(ctx, []dao.Session{
			{Mid: 7, Key: "k1", Server: "s1"},
			{Mid: 7, Key: "k2", Server: "s1"}, // k2 is on s2: not s1's to delete
			{Mid: 0, Key: "", Server: "s1"},
			{Mid: 0, Key: "k3", Server: "s1"},
		})
		if err != nil {
			t.Fatalf("flush %v: %v", flush, err)
		}
		if want := []bool{true, false, false, true}; !reflect.DeepEqual(owned, want) {
			t.Errorf("flush %v: owned %v, want %v", flush, owned, want)
		}
		if errs[0] != nil || errs[1] != nil || errs[3] != nil || !errors.Is(errs[2], dao.ErrInvalidArgument) {
			t.Errorf("flush %v: errs %v, want only the empty key to fail", flush, errs)
		}
		checkRouting(t, raw, map[string]string{"k1": "", "k2": "s2", "k3": ""}, map[int64]map[string]string{7: {"k2": "s2"}})
	}
	_ = r.Close()
	if _, _, err := r.DelSessions(ctx, []dao.Session{{Mid: 7, Key: "k2", Server: "s2"}}); !errors.Is(err, dao.ErrRedis) {
		t.Fatalf("after Close: %v, want ErrRedis", err)
	}
}

func TestSessionInvalidArgument(t *testing.T) {
	r, _ := newTestRedis(t, nil)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{name: "add without key", call: func() error { return r.AddSession(ctx, dao.Session{Mid: 1, Server: "s1"}) }},
		{name: "add without server", call: func() error { return r.AddSession(ctx, dao.Session{Mid: 1, Key: "k"}) }},
		{name: "renew without key", call: func() error { _, err := r.RenewSession(ctx, dao.Session{Mid: 1, Server: "s1"}); return err }},
		{name: "delete without server", call: func() error { _, err := r.DelSession(ctx, dao.Session{Mid: 1, Key: "k"}); return err }},
		{name: "store online without server", call: func() error { _, err := r.StoreOnline(ctx, "", nil, 0, 0, false); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, dao.ErrInvalidArgument) || errors.Is(err, dao.ErrRedis) {
				t.Fatalf("err = %v, want ErrInvalidArgument and not ErrRedis", err)
			}
		})
	}
}

func TestRenewSession(t *testing.T) {
	ttl := 10 * time.Minute
	tests := []struct {
		name     string
		before   []session
		prepare  func(raw *rawRedis) // damage done before the renewal
		renew    session
		want     dao.Renewal
		wantKeys map[string]string
		wantMids map[int64]map[string]string
	}{
		{
			name:   "live session gets its full TTL back",
			before: []session{{mid: 7, key: "k1", server: "s1"}},
			prepare: func(raw *rawRedis) {
				raw.must("PEXPIRE", raw.key("key_k1"), 5000)
				raw.must("PEXPIRE", raw.key("mid_7"), 5000)
			},
			renew:    session{mid: 7, key: "k1", server: "s1"},
			want:     dao.Renewed,
			wantKeys: map[string]string{"k1": "s1"},
			wantMids: map[int64]map[string]string{7: {"k1": "s1"}},
		},
		{
			name:   "lost key is re-added with its mid_ field",
			before: []session{{mid: 7, key: "k1", server: "s1"}, {mid: 7, key: "k2", server: "s2"}},
			prepare: func(raw *rawRedis) {
				raw.must("DEL", raw.key("key_k1"))
				raw.must("HDEL", raw.key("mid_7"), "k1")
			},
			renew:    session{mid: 7, key: "k1", server: "s1"},
			want:     dao.Readded,
			wantKeys: map[string]string{"k1": "s1", "k2": "s2"},
			wantMids: map[int64]map[string]string{7: {"k1": "s1", "k2": "s2"}},
		},
		{
			name:     "expired member session is re-added whole",
			renew:    session{mid: 9, key: "k9", server: "s1"},
			want:     dao.Readded,
			wantKeys: map[string]string{"k9": "s1"},
			wantMids: map[int64]map[string]string{9: {"k9": "s1"}},
		},
		{
			name:     "lost anonymous key is re-added without mid_",
			renew:    session{mid: 0, key: "k1", server: "s1"},
			want:     dao.Readded,
			wantKeys: map[string]string{"k1": "s1"},
			wantMids: map[int64]map[string]string{0: nil},
		},
		{
			name:     "key that moved to another comet is not taken back",
			before:   []session{{mid: 7, key: "k1", server: "s2"}},
			renew:    session{mid: 7, key: "k1", server: "s1"},
			want:     dao.Renewed,
			wantKeys: map[string]string{"k1": "s2"},
			wantMids: map[int64]map[string]string{7: {"k1": "s2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, raw := newTestRedis(t, func(c *dao.RedisConfig) { c.SessionTTL = conf.Duration(ttl) })
			addSessions(t, r, tt.before)
			if tt.prepare != nil {
				tt.prepare(raw)
			}
			got, err := r.RenewSession(context.Background(), tt.renew.dao())
			if err != nil {
				t.Fatalf("RenewSession: %v", err)
			}
			if got != tt.want {
				t.Errorf("RenewSession = %v, want %v", got, tt.want)
			}
			checkRouting(t, raw, tt.wantKeys, tt.wantMids)
			// Renewed: well above the 5 s left before, at most the TTL.
			for _, key := range []string{"key_" + tt.renew.key, "mid_" + itoa(int(tt.renew.mid))} {
				if tt.renew.mid == 0 && strings.HasPrefix(key, "mid_") {
					continue
				}
				if got := raw.pttl(key); got < ttl-time.Minute || got > ttl {
					t.Errorf("PTTL %s = %v, want in [%v, %v]", key, got, ttl-time.Minute, ttl)
				}
			}
		})
	}
}

func TestDelSession(t *testing.T) {
	tests := []struct {
		name      string
		before    []session
		prepare   func(raw *rawRedis)
		del       session
		wantOwned bool
		wantKeys  map[string]string
		wantMids  map[int64]map[string]string
	}{
		{
			name:      "owner deletes its routing, other connections stay",
			before:    []session{{mid: 7, key: "k1", server: "s1"}, {mid: 7, key: "k2", server: "s1"}},
			del:       session{mid: 7, key: "k1", server: "s1"},
			wantOwned: true,
			wantKeys:  map[string]string{"k1": "", "k2": "s1"},
			wantMids:  map[int64]map[string]string{7: {"k2": "s1"}},
		},
		{
			name:      "last connection of a member removes mid_",
			before:    []session{{mid: 7, key: "k1", server: "s1"}},
			del:       session{mid: 7, key: "k1", server: "s1"},
			wantOwned: true,
			wantKeys:  map[string]string{"k1": ""},
			wantMids:  map[int64]map[string]string{7: nil},
		},
		{
			// The key reconnected to s2, then s1's Disconnect arrived (goim
			// v2 deleted the new routing then).
			name:      "late disconnect from the old comet leaves the new routing",
			before:    []session{{mid: 7, key: "k1", server: "s1"}, {mid: 7, key: "k1", server: "s2"}},
			del:       session{mid: 7, key: "k1", server: "s1"},
			wantOwned: false,
			wantKeys:  map[string]string{"k1": "s2"},
			wantMids:  map[int64]map[string]string{7: {"k1": "s2"}},
		},
		{
			name:      "anonymous owner",
			before:    []session{{mid: 0, key: "k1", server: "s1"}},
			del:       session{mid: 0, key: "k1", server: "s1"},
			wantOwned: true,
			wantKeys:  map[string]string{"k1": ""},
		},
		{
			name:      "unknown key",
			del:       session{mid: 7, key: "nope", server: "s1"},
			wantOwned: false,
			wantKeys:  map[string]string{"nope": ""},
			wantMids:  map[int64]map[string]string{7: nil},
		},
		{
			name:      "expired key_ still clears its own mid_ field",
			before:    []session{{mid: 7, key: "k1", server: "s1"}, {mid: 7, key: "k2", server: "s2"}},
			prepare:   func(raw *rawRedis) { raw.must("DEL", raw.key("key_k1")) },
			del:       session{mid: 7, key: "k1", server: "s1"},
			wantOwned: false,
			wantKeys:  map[string]string{"k1": "", "k2": "s2"},
			wantMids:  map[int64]map[string]string{7: {"k2": "s2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, raw := newTestRedis(t, nil)
			addSessions(t, r, tt.before)
			if tt.prepare != nil {
				tt.prepare(raw)
			}
			owned, err := r.DelSession(context.Background(), tt.del.dao())
			if err != nil {
				t.Fatalf("DelSession: %v", err)
			}
			if owned != tt.wantOwned {
				t.Errorf("DelSession = %v, want %v", owned, tt.wantOwned)
			}
			checkRouting(t, raw, tt.wantKeys, tt.wantMids)
		})
	}
}

func TestServersByKeys(t *testing.T) {
	before := []session{
		{mid: 1, key: "a", server: "s1"},
		{mid: 1, key: "b", server: "s2"},
		{mid: 0, key: "c", server: "s1"},
	}
	tests := []struct {
		name string
		keys []string
		want map[string][]string
	}{
		{name: "keys on two comets", keys: []string{"a", "b", "c"}, want: map[string][]string{"s1": {"a", "c"}, "s2": {"b"}}},
		{name: "keys without routing are left out", keys: []string{"a", "nope"}, want: map[string][]string{"s1": {"a"}}},
		{name: "repeated and empty keys count once", keys: []string{"c", "a", "c", "", "a"}, want: map[string][]string{"s1": {"c", "a"}}},
		{name: "only unknown keys", keys: []string{"x", "y"}, want: map[string][]string{}},
		{name: "no keys", keys: nil, want: map[string][]string{}},
	}
	r, _ := newTestRedis(t, nil)
	addSessions(t, r, before)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.ServersByKeys(context.Background(), tt.keys)
			if err != nil {
				t.Fatalf("ServersByKeys: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ServersByKeys(%q) = %v, want %v", tt.keys, got, tt.want)
			}
		})
	}
}

func TestKeysByMids(t *testing.T) {
	before := []session{
		{mid: 1, key: "a", server: "s1"},
		{mid: 1, key: "b", server: "s2"},
		{mid: 2, key: "c", server: "s1"},
		{mid: 0, key: "d", server: "s1"},
	}
	tests := []struct {
		name string
		mids []int64
		want map[string][]string
	}{
		{name: "members on two comets", mids: []int64{1, 2}, want: map[string][]string{"s1": {"a", "c"}, "s2": {"b"}}},
		{name: "member without connections", mids: []int64{3}, want: map[string][]string{}},
		{name: "anonymous and negative mids are skipped", mids: []int64{0, -1}, want: map[string][]string{}},
		{name: "repeated mid counts once", mids: []int64{2, 2, 3}, want: map[string][]string{"s1": {"c"}}},
		{name: "no mids", mids: nil, want: map[string][]string{}},
	}
	r, _ := newTestRedis(t, nil)
	addSessions(t, r, before)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.KeysByMids(context.Background(), tt.mids)
			if err != nil {
				t.Fatalf("KeysByMids: %v", err)
			}
			if got = sortedGroups(got); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("KeysByMids(%v) = %v, want %v", tt.mids, got, tt.want)
			}
		})
	}
}

func TestKeysByMidsWrongType(t *testing.T) {
	// A key of the wrong type fails the operation with ErrRedis (no panic,
	// no partial answer).
	r, raw := newTestRedis(t, nil)
	raw.must("SET", raw.key("mid_5"), "not a hash")
	if _, err := r.KeysByMids(context.Background(), []int64{5}); !errors.Is(err, dao.ErrRedis) {
		t.Fatalf("KeysByMids on a string = %v, want ErrRedis", err)
	}
}

func TestRedisPingAndClose(t *testing.T) {
	r, _ := newTestRedis(t, nil)
	ctx := context.Background()
	if err := r.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	err := r.AddSession(ctx, dao.Session{Mid: 1, Key: "k", Server: "s"})
	if !errors.Is(err, dao.ErrRedis) || !errors.Is(err, dao.ErrClosed) {
		t.Fatalf("AddSession after Close = %v, want ErrRedis and ErrClosed", err)
	}
}

func TestRedisHungServer(t *testing.T) {
	// A Redis that accepts connections and never answers: every operation
	// fails with ErrRedis after the read timeout or the context's deadline,
	// whichever is sooner, and never hangs.
	addr := silentServer(t)
	tests := []struct {
		name        string
		readTimeout time.Duration
		ctxTimeout  time.Duration // 0: no deadline
	}{
		{name: "read timeout", readTimeout: 200 * time.Millisecond},
		{name: "context deadline sooner than the read timeout", readTimeout: time.Minute, ctxTimeout: 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := dao.DefaultRedisConfig()
			cfg.Addr = addr
			cfg.ReadTimeout = conf.Duration(tt.readTimeout)
			r, err := dao.NewRedis(cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ctx := context.Background()
			if tt.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctxTimeout)
				defer cancel()
			}
			start := time.Now()
			_, err = r.ServersByKeys(ctx, []string{"a"})
			if !errors.Is(err, dao.ErrRedis) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ServersByKeys = %v, want ErrRedis wrapping a timeout", err)
			}
			if elapsed := time.Since(start); elapsed > 10*time.Second {
				t.Fatalf("took %v", elapsed)
			}
		})
	}
}
