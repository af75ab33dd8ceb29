package dao_test

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
)

// report is one StoreOnline call.
type report struct {
	rooms     map[string]int32
	connCount int64
	ipCount   int64
	draining  bool
}

func TestStoreOnline(t *testing.T) {
	ttl := 30 * time.Second
	tests := []struct {
		name    string
		reports []report // stored in order by comet "c1"
		want    report   // what LoadOnline then returns
	}{
		{
			name:    "one report",
			reports: []report{{rooms: map[string]int32{"live://1": 2, "live://2": 1}, connCount: 3, ipCount: 2}},
			want:    report{rooms: map[string]int32{"live://1": 2, "live://2": 1}, connCount: 3, ipCount: 2},
		},
		{
			// goim v2 kept the emptied room's last count.
			name: "a room that emptied disappears",
			reports: []report{
				{rooms: map[string]int32{"live://1": 2, "live://2": 5}, connCount: 7, ipCount: 7},
				{rooms: map[string]int32{"live://1": 3}, connCount: 3, ipCount: 3},
			},
			want: report{rooms: map[string]int32{"live://1": 3}, connCount: 3, ipCount: 3},
		},
		{
			name: "every room emptied",
			reports: []report{
				{rooms: map[string]int32{"live://1": 2}, connCount: 2, ipCount: 1},
				{rooms: nil, connCount: 1, ipCount: 1},
			},
			want: report{rooms: map[string]int32{}, connCount: 1, ipCount: 1},
		},
		{
			name:    "rooms with no connection are left out",
			reports: []report{{rooms: map[string]int32{"live://1": 0, "live://2": 4, "live://3": -1}, connCount: 4, ipCount: 4}},
			want:    report{rooms: map[string]int32{"live://2": 4}, connCount: 4, ipCount: 4},
		},
		{
			name: "draining state and counts follow the last report",
			reports: []report{
				{rooms: map[string]int32{"chat://a": 10}, connCount: 10, ipCount: 9},
				{rooms: map[string]int32{"chat://a": 4}, connCount: 4, ipCount: 4, draining: true},
			},
			want: report{rooms: map[string]int32{"chat://a": 4}, connCount: 4, ipCount: 4, draining: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, raw := newTestRedis(t, func(c *dao.RedisConfig) { c.OnlineTTL = conf.Duration(ttl) })
			ctx := context.Background()
			before := time.Now().Truncate(time.Millisecond)
			for _, rep := range tt.reports {
				if _, err := r.StoreOnline(ctx, "c1", rep.rooms, rep.connCount, rep.ipCount, rep.draining); err != nil {
					t.Fatalf("StoreOnline: %v", err)
				}
			}
			after := time.Now()
			raw.checkTTL("ol_c1", ttl)
			got, err := r.LoadOnline(ctx, []string{"c1"})
			if err != nil {
				t.Fatalf("LoadOnline: %v", err)
			}
			rep, ok := got["c1"]
			if !ok || len(got) != 1 {
				t.Fatalf("LoadOnline = %v, want c1 only", got)
			}
			want := dao.OnlineReport{
				Server: "c1", Rooms: tt.want.rooms, ConnCount: tt.want.connCount,
				IPCount: tt.want.ipCount, Draining: tt.want.draining, Updated: rep.Updated,
			}
			if !reflect.DeepEqual(rep, want) {
				t.Errorf("report = %+v, want %+v", rep, want)
			}
			if rep.Updated.Before(before) || rep.Updated.After(after) {
				t.Errorf("Updated = %v, want in [%v, %v]", rep.Updated, before, after)
			}
		})
	}
}

func TestLoadOnline(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	ctx := context.Background()
	for _, s := range []string{"c1", "c2"} {
		if _, err := r.StoreOnline(ctx, s, map[string]int32{"live://" + s: 1}, 1, 1, false); err != nil {
			t.Fatal(err)
		}
	}
	raw.must("SET", raw.key("ol_garbage"), "{not json")
	raw.must("HSET", raw.key("ol_v2"), "0", `{"server":"v2","room_count":{"live://1":1},"updated":1}`)
	tests := []struct {
		name    string
		servers []string
		want    []string // servers present in the answer
	}{
		{name: "two comets", servers: []string{"c1", "c2"}, want: []string{"c1", "c2"}},
		{name: "comet that never reported is absent", servers: []string{"c1", "c3"}, want: []string{"c1"}},
		{name: "undecodable report is absent", servers: []string{"garbage", "c2"}, want: []string{"c2"}},
		{name: "goim v2 sharded hash is absent", servers: []string{"v2", "c1"}, want: []string{"c1"}},
		{name: "repeated and empty servers", servers: []string{"c2", "", "c2"}, want: []string{"c2"}},
		{name: "no servers", servers: nil, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.LoadOnline(ctx, tt.servers)
			if err != nil {
				t.Fatalf("LoadOnline: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("LoadOnline(%q) = %v, want servers %q", tt.servers, got, tt.want)
			}
			for _, s := range tt.want {
				rep, ok := got[s]
				if !ok || rep.Server != s || rep.Rooms["live://"+s] != 1 {
					t.Errorf("LoadOnline(%q)[%s] = %+v, %v", tt.servers, s, rep, ok)
				}
			}
		})
	}
}

func TestOnlineReportExpires(t *testing.T) {
	// A comet that stops reporting drops out after online_ttl.
	r, _ := newTestRedis(t, func(c *dao.RedisConfig) { c.OnlineTTL = conf.Duration(300 * time.Millisecond) })
	ctx := context.Background()
	if _, err := r.StoreOnline(ctx, "c1", map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.StoreOnline(ctx, "c2", map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
		t.Fatal(err)
	}
	got, err := r.LoadOnline(ctx, []string{"c1", "c2"})
	if err != nil || len(got) != 2 {
		t.Fatalf("LoadOnline right after storing = %v, %v; want both comets", got, err)
	}
	// c2 keeps reporting; c1 stopped.
	waitFor(t, 10*time.Second, func() error {
		if _, err := r.StoreOnline(ctx, "c2", map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
			return err
		}
		got, err := r.LoadOnline(ctx, []string{"c1", "c2"})
		if err != nil {
			return err
		}
		if _, ok := got["c1"]; ok {
			return errors.New("c1's report is still there")
		}
		if _, ok := got["c2"]; !ok {
			return errors.New("c2's report vanished while it kept reporting")
		}
		return nil
	})
}

func TestLoadAllOnline(t *testing.T) {
	ttl := 30 * time.Second
	r, raw := newTestRedis(t, func(c *dao.RedisConfig) { c.OnlineTTL = conf.Duration(ttl) })
	ctx := context.Background()
	before := time.Now().Truncate(time.Millisecond)
	stored := map[string]report{
		"c1": {rooms: map[string]int32{"live://1": 2, "live://2": 1}, connCount: 3, ipCount: 2},
		"c2": {rooms: map[string]int32{"chat://a": 5}, connCount: 5, ipCount: 4, draining: true},
	}
	for s, rep := range stored {
		if _, err := r.StoreOnline(ctx, s, rep.rooms, rep.connCount, rep.ipCount, rep.draining); err != nil {
			t.Fatalf("StoreOnline(%s): %v", s, err)
		}
	}
	after := time.Now()
	raw.checkTTL("online_servers", 3*ttl)
	if got := raw.pttl("online_servers"); got <= ttl {
		t.Errorf("PTTL online_servers = %v, want more than online_ttl (%v)", got, ttl)
	}

	got, err := r.LoadAllOnline(ctx)
	if err != nil {
		t.Fatalf("LoadAllOnline: %v", err)
	}
	if len(got) != len(stored) {
		t.Fatalf("LoadAllOnline = %v, want c1 and c2", got)
	}
	for s, rep := range stored {
		g, ok := got[s]
		want := dao.OnlineReport{
			Server: s, Rooms: rep.rooms, ConnCount: rep.connCount,
			IPCount: rep.ipCount, Draining: rep.draining, Updated: g.Updated,
		}
		if !ok || !reflect.DeepEqual(g, want) {
			t.Errorf("LoadAllOnline[%s] = %+v (present %v), want %+v", s, g, ok, want)
		}
		if g.Updated.Before(before) || g.Updated.After(after) {
			t.Errorf("LoadAllOnline[%s].Updated = %v, want in [%v, %v]", s, g.Updated, before, after)
		}
	}
	// The same reports as LoadOnline's.
	byName, err := r.LoadOnline(ctx, []string{"c1", "c2"})
	if err != nil {
		t.Fatalf("LoadOnline: %v", err)
	}
	if !reflect.DeepEqual(got, byName) {
		t.Errorf("LoadAllOnline = %+v, LoadOnline = %+v", got, byName)
	}
}

func TestLoadAllOnlineIndex(t *testing.T) {
	// How LoadAllOnline treats what it finds in the index, prepared by
	// hand next to a comet that reports normally.
	valid := `{"server":"x","rooms":{"live://9":1},"conn_count":1,"ip_count":1,"updated":1}`
	tests := []struct {
		name      string
		prepare   func(raw *rawRedis, nowMs int64)
		want      []string // servers LoadAllOnline returns besides "c1"
		wantIndex []string // members of online_servers afterwards
	}{
		{
			name:      "a normal report",
			prepare:   func(*rawRedis, int64) {},
			wantIndex: []string{"c1"},
		},
		{
			name: "a member older than online_ttl is dropped even if its key lives",
			prepare: func(raw *rawRedis, nowMs int64) {
				raw.must("SET", raw.key("ol_old"), valid)
				raw.must("ZADD", raw.key("online_servers"), nowMs-time.Hour.Milliseconds(), "old")
			},
			wantIndex: []string{"c1"},
		},
		{
			name: "a member whose report is gone is dropped",
			prepare: func(raw *rawRedis, nowMs int64) {
				raw.must("ZADD", raw.key("online_servers"), nowMs, "deleted")
			},
			wantIndex: []string{"c1"},
		},
		{
			name: "a report that does not decode is left out and kept in the index",
			prepare: func(raw *rawRedis, nowMs int64) {
				raw.must("SET", raw.key("ol_garbage"), "{not json")
				raw.must("ZADD", raw.key("online_servers"), nowMs, "garbage")
			},
			wantIndex: []string{"c1", "garbage"},
		},
		{
			name: "a goim v2 sharded hash is left out",
			prepare: func(raw *rawRedis, nowMs int64) {
				raw.must("HSET", raw.key("ol_v2"), "0", `{"server":"v2","room_count":{"live://1":1},"updated":1}`)
				raw.must("ZADD", raw.key("online_servers"), nowMs, "v2")
			},
			wantIndex: []string{"c1"},
		},
		{
			name: "a recent member with a report is returned under its member name",
			prepare: func(raw *rawRedis, nowMs int64) {
				raw.must("SET", raw.key("ol_manual"), valid)
				raw.must("ZADD", raw.key("online_servers"), nowMs, "manual")
			},
			want:      []string{"manual"},
			wantIndex: []string{"c1", "manual"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, raw := newTestRedis(t, nil)
			ctx := context.Background()
			if _, err := r.StoreOnline(ctx, "c1", map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
				t.Fatal(err)
			}
			tt.prepare(raw, time.Now().UnixMilli())
			got, err := r.LoadAllOnline(ctx)
			if err != nil {
				t.Fatalf("LoadAllOnline: %v", err)
			}
			want := append([]string{"c1"}, tt.want...)
			if len(got) != len(want) {
				t.Errorf("LoadAllOnline = %v, want servers %q", got, want)
			}
			for _, s := range want {
				if rep, ok := got[s]; !ok || rep.Server != s || rep.ConnCount != 1 {
					t.Errorf("LoadAllOnline[%s] = %+v, %v", s, rep, ok)
				}
			}
			members, err := redis.Strings(raw.must("ZRANGE", raw.key("online_servers"), 0, -1), nil)
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(members)
			if !reflect.DeepEqual(members, tt.wantIndex) {
				t.Errorf("online_servers = %q, want %q", members, tt.wantIndex)
			}
		})
	}
}

func TestLoadAllOnlineRoomsFollowLastReport(t *testing.T) {
	r, _ := newTestRedis(t, nil)
	ctx := context.Background()
	if _, err := r.StoreOnline(ctx, "c1", map[string]int32{"live://1": 2, "live://2": 5}, 7, 7, false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.StoreOnline(ctx, "c1", map[string]int32{"live://1": 3, "live://3": 0}, 3, 3, false); err != nil {
		t.Fatal(err)
	}
	got, err := r.LoadAllOnline(ctx)
	if err != nil {
		t.Fatalf("LoadAllOnline: %v", err)
	}
	if want := map[string]int32{"live://1": 3}; len(got) != 1 || !reflect.DeepEqual(got["c1"].Rooms, want) {
		t.Fatalf("LoadAllOnline = %+v, want c1 with rooms %v", got, want)
	}
}

func TestLoadAllOnlineExpires(t *testing.T) {
	// A comet that stops reporting drops out of LoadAllOnline and of the
	// index after online_ttl, while one that keeps reporting stays.
	r, raw := newTestRedis(t, func(c *dao.RedisConfig) { c.OnlineTTL = conf.Duration(200 * time.Millisecond) })
	ctx := context.Background()
	for _, s := range []string{"c1", "c2"} {
		if _, err := r.StoreOnline(ctx, s, map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.LoadAllOnline(ctx)
	if err != nil || len(got) != 2 {
		t.Fatalf("LoadAllOnline right after storing = %v, %v; want both comets", got, err)
	}
	waitFor(t, 10*time.Second, func() error {
		if _, err := r.StoreOnline(ctx, "c2", map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
			return err
		}
		got, err := r.LoadAllOnline(ctx)
		if err != nil {
			return err
		}
		if _, ok := got["c1"]; ok {
			return errors.New("c1's report is still returned")
		}
		if _, ok := got["c2"]; !ok {
			return errors.New("c2's report vanished while it kept reporting")
		}
		return nil
	})
	if _, err := redis.Int64(raw.must("ZSCORE", raw.key("online_servers"), "c1"), nil); !errors.Is(err, redis.ErrNil) {
		t.Errorf("c1 is still in online_servers (ZSCORE: %v)", err)
	}
	// The report's own TTL runs from when Redis stored it, a moment after
	// the score the index was trimmed by.
	waitFor(t, 5*time.Second, func() error {
		if raw.exists("ol_c1") {
			return errors.New("ol_c1 still exists")
		}
		return nil
	})

	// Once nobody reports, the index itself expires.
	waitFor(t, 10*time.Second, func() error {
		if raw.exists("online_servers") {
			return errors.New("online_servers still exists")
		}
		return nil
	})
	if got, err := r.LoadAllOnline(ctx); err != nil || len(got) != 0 {
		t.Errorf("LoadAllOnline with no index = %v, %v; want empty, nil", got, err)
	}
}

func TestLoadAllOnlinePrefixes(t *testing.T) {
	// Two clusters sharing a Redis under different prefixes see only
	// their own comets.
	a, _ := newTestRedis(t, nil)
	b, _ := newTestRedis(t, nil)
	ctx := context.Background()
	if _, err := a.StoreOnline(ctx, "ca", map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.StoreOnline(ctx, "cb", map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		r    *dao.Redis
		want string
	}{
		{name: "a", r: a, want: "ca"},
		{name: "b", r: b, want: "cb"},
	} {
		got, err := tc.r.LoadAllOnline(ctx)
		if err != nil {
			t.Fatalf("LoadAllOnline(%s): %v", tc.name, err)
		}
		if _, ok := got[tc.want]; !ok || len(got) != 1 {
			t.Errorf("LoadAllOnline(%s) = %v, want %s only", tc.name, got, tc.want)
		}
	}
}

func TestLoadAllOnlineMany(t *testing.T) {
	// More comets than the script's MGET and ZREM chunks.
	const n = 1203
	r, raw := newTestRedis(t, nil)
	ctx := context.Background()
	nowMs := time.Now().UnixMilli()
	for i := 0; i < n; i++ {
		s := "c" + itoa(i)
		if i%3 != 0 { // every third one has no report
			if err := raw.c.Send("SET", raw.key("ol_"+s), `{"server":"`+s+`","conn_count":`+itoa(i)+`}`, "PX", 60000); err != nil {
				t.Fatal(err)
			}
		}
		if err := raw.c.Send("ZADD", raw.key("online_servers"), nowMs, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.c.Do(""); err != nil {
		t.Fatal(err)
	}
	got, err := r.LoadAllOnline(ctx)
	if err != nil {
		t.Fatalf("LoadAllOnline: %v", err)
	}
	if want := n - (n+2)/3; len(got) != want {
		t.Errorf("LoadAllOnline returned %d comets, want %d", len(got), want)
	}
	for i := 0; i < n; i++ {
		s := "c" + itoa(i)
		rep, ok := got[s]
		if ok != (i%3 != 0) || (ok && rep.ConnCount != int64(i)) {
			t.Fatalf("LoadAllOnline[%s] = %+v, %v", s, rep, ok)
		}
	}
	if card, _ := redis.Int(raw.must("ZCARD", raw.key("online_servers")), nil); card != len(got) {
		t.Errorf("ZCARD online_servers = %d, want %d (members without a report removed)", card, len(got))
	}
}

// TestStoreOnlineEpoch: every report answers the same epoch while Redis
// keeps its data, and a new one once the data is gone (here: flushed under
// the test's prefix, as a restart without persistence would).
func TestStoreOnlineEpoch(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	ctx := context.Background()
	first, err := r.StoreOnline(ctx, "c1", nil, 0, 0, false)
	if err != nil || len(first) != 16 {
		t.Fatalf("epoch %q, %v", first, err)
	}
	again, err := r.StoreOnline(ctx, "c2", nil, 0, 0, false)
	if err != nil || again != first {
		t.Fatalf("second report: epoch %q (%v), want %q", again, err, first)
	}
	raw.must("DEL", raw.key("epoch"), raw.key("ol_c1"), raw.key("ol_c2"), raw.key("online_servers"))
	fresh, err := r.StoreOnline(ctx, "c1", nil, 0, 0, false)
	if err != nil || fresh == first || len(fresh) != 16 {
		t.Fatalf("after the data was lost: epoch %q (%v), want a new one (old %q)", fresh, err, first)
	}
}
