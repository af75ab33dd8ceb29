package dao_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

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
			// R7: goim v2 kept the emptied room's last count.
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
				if err := r.StoreOnline(ctx, "c1", rep.rooms, rep.connCount, rep.ipCount, rep.draining); err != nil {
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
		if err := r.StoreOnline(ctx, s, map[string]int32{"live://" + s: 1}, 1, 1, false); err != nil {
			t.Fatal(err)
		}
	}
	raw.must("SET", raw.prefix+"ol_garbage", "{not json")
	raw.must("HSET", raw.prefix+"ol_v2", "0", `{"server":"v2","room_count":{"live://1":1},"updated":1}`)
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
	if err := r.StoreOnline(ctx, "c1", map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
		t.Fatal(err)
	}
	if err := r.StoreOnline(ctx, "c2", map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
		t.Fatal(err)
	}
	got, err := r.LoadOnline(ctx, []string{"c1", "c2"})
	if err != nil || len(got) != 2 {
		t.Fatalf("LoadOnline right after storing = %v, %v; want both comets", got, err)
	}
	// c2 keeps reporting; c1 stopped.
	waitFor(t, 10*time.Second, func() error {
		if err := r.StoreOnline(ctx, "c2", map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
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
