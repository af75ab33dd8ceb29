package dao_test

import (
	"context"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
)

// sessionStep is one operation of a session sequence and what it must
// answer.
type sessionStep struct {
	op        string // "add", "renew" or "del"
	s         session
	wantRenew dao.Renewal // for "renew"
	wantOwned bool        // for "del"
}

// runSteps applies steps in order and fails at the first wrong answer.
func runSteps(t *testing.T, r *dao.Redis, steps []sessionStep) {
	t.Helper()
	ctx := context.Background()
	for i, st := range steps {
		switch st.op {
		case "add":
			if err := r.AddSession(ctx, st.s.dao()); err != nil {
				t.Fatalf("step %d: AddSession(%+v): %v", i, st.s, err)
			}
		case "renew":
			got, err := r.RenewSession(ctx, st.s.dao())
			if err != nil || got != st.wantRenew {
				t.Fatalf("step %d: RenewSession(%+v) = %v, %v; want %v", i, st.s, got, err, st.wantRenew)
			}
		case "del":
			got, err := r.DelSession(ctx, st.s.dao())
			if err != nil || got != st.wantOwned {
				t.Fatalf("step %d: DelSession(%+v) = %v, %v; want %v", i, st.s, got, err, st.wantOwned)
			}
		default:
			t.Fatalf("step %d: unknown op %q", i, st.op)
		}
	}
}

// TestSessionKeyReuse: connection A (conn id 1) is replaced by B (conn
// id 2) with the same key on the same comet, as a client reconnecting
// with its key does. A's late Disconnect and Heartbeat leave B's routing;
// B's own Disconnect removes it. Sessions without a connection id (goim
// v2 comets) are compared by server only, as before.
func TestSessionKeyReuse(t *testing.T) {
	a := session{mid: 7, key: "k1", server: "s1", connID: 1}
	b := session{mid: 7, key: "k1", server: "s1", connID: 2}
	legacy := session{mid: 7, key: "k1", server: "s1"}
	tests := []struct {
		name     string
		steps    []sessionStep
		wantKeys map[string]string // key_ values ("" = no key)
		wantConn string            // conn_k1 ("" = no key)
		wantMids map[int64]map[string]string
	}{
		{
			name:     "the replaced connection's delete leaves the new routing",
			steps:    []sessionStep{{op: "add", s: a}, {op: "add", s: b}, {op: "del", s: a, wantOwned: false}},
			wantKeys: map[string]string{"k1": "s1"},
			wantConn: "2",
			wantMids: map[int64]map[string]string{7: {"k1": "s1"}},
		},
		{
			name:     "the replaced connection's renewal changes nothing",
			steps:    []sessionStep{{op: "add", s: a}, {op: "add", s: b}, {op: "renew", s: a, wantRenew: dao.NotOwned}},
			wantKeys: map[string]string{"k1": "s1"},
			wantConn: "2",
			wantMids: map[int64]map[string]string{7: {"k1": "s1"}},
		},
		{
			name: "the replaced connection's renewal does not re-add a deleted routing",
			steps: []sessionStep{
				{op: "add", s: a}, {op: "add", s: b}, {op: "del", s: b, wantOwned: true},
				{op: "add", s: session{mid: 7, key: "k1", server: "s1", connID: 3}},
				{op: "renew", s: a, wantRenew: dao.NotOwned},
			},
			wantKeys: map[string]string{"k1": "s1"},
			wantConn: "3",
			wantMids: map[int64]map[string]string{7: {"k1": "s1"}},
		},
		{
			name: "the new connection renews and deletes its routing",
			steps: []sessionStep{
				{op: "add", s: a}, {op: "add", s: b}, {op: "del", s: a, wantOwned: false},
				{op: "renew", s: b, wantRenew: dao.Renewed}, {op: "del", s: b, wantOwned: true},
			},
			wantKeys: map[string]string{"k1": ""},
			wantMids: map[int64]map[string]string{7: nil},
		},
		{
			name: "a lost routing is re-added with the connection id",
			steps: []sessionStep{
				{op: "renew", s: b, wantRenew: dao.Readded},
				{op: "del", s: a, wantOwned: false},
			},
			wantKeys: map[string]string{"k1": "s1"},
			wantConn: "2",
			wantMids: map[int64]map[string]string{7: {"k1": "s1"}},
		},
		{
			name:     "the key moved to another comet: the old delete is refused",
			steps:    []sessionStep{{op: "add", s: a}, {op: "add", s: session{mid: 7, key: "k1", server: "s2", connID: 1}}, {op: "del", s: a, wantOwned: false}},
			wantKeys: map[string]string{"k1": "s2"},
			wantConn: "1",
			wantMids: map[int64]map[string]string{7: {"k1": "s2"}},
		},
		{
			name:     "legacy sessions compare the server only, as goim v2's comets expect",
			steps:    []sessionStep{{op: "add", s: legacy}, {op: "add", s: legacy}, {op: "del", s: legacy, wantOwned: true}},
			wantKeys: map[string]string{"k1": ""},
			wantMids: map[int64]map[string]string{7: nil},
		},
		{
			name:     "a legacy session written over one with an id drops conn_",
			steps:    []sessionStep{{op: "add", s: a}, {op: "add", s: legacy}, {op: "renew", s: legacy, wantRenew: dao.Renewed}},
			wantKeys: map[string]string{"k1": "s1"},
			wantMids: map[int64]map[string]string{7: {"k1": "s1"}},
		},
		{
			name:     "an id-less legacy session is deleted by server compare",
			steps:    []sessionStep{{op: "add", s: legacy}, {op: "del", s: a, wantOwned: true}},
			wantKeys: map[string]string{"k1": ""},
			wantMids: map[int64]map[string]string{7: nil},
		},
		{
			name: "a renewal adopts a legacy routing of its own comet",
			steps: []sessionStep{
				{op: "add", s: legacy}, {op: "renew", s: b, wantRenew: dao.Renewed},
				{op: "del", s: a, wantOwned: false},
			},
			wantKeys: map[string]string{"k1": "s1"},
			wantConn: "2",
			wantMids: map[int64]map[string]string{7: {"k1": "s1"}},
		},
		{
			name: "a renewal does not adopt another comet's legacy routing",
			steps: []sessionStep{
				{op: "add", s: session{mid: 7, key: "k1", server: "s2"}}, {op: "renew", s: b, wantRenew: dao.Renewed},
			},
			wantKeys: map[string]string{"k1": "s2"},
			wantMids: map[int64]map[string]string{7: {"k1": "s2"}},
		},
		{
			name:     "anonymous sessions (no mid_) follow the same rules",
			steps:    []sessionStep{{op: "add", s: session{key: "k1", server: "s1", connID: 1}}, {op: "add", s: session{key: "k1", server: "s1", connID: 2}}, {op: "del", s: session{key: "k1", server: "s1", connID: 1}, wantOwned: false}},
			wantKeys: map[string]string{"k1": "s1"},
			wantConn: "2",
			wantMids: map[int64]map[string]string{0: nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, raw := newTestRedis(t, nil)
			runSteps(t, r, tt.steps)
			checkRouting(t, raw, tt.wantKeys, tt.wantMids)
			got, ok := raw.get("conn_k1")
			if got != tt.wantConn || ok != (tt.wantConn != "") {
				t.Errorf("conn_k1 = %q (exists %v), want %q", got, ok, tt.wantConn)
			}
		})
	}
}

// TestSessionKeyReuseBatch: DelSessions applies the same rule to each
// session of a batch, also after Redis lost its script cache.
func TestSessionKeyReuseBatch(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	addSessions(t, r, []session{
		{mid: 7, key: "k1", server: "s1", connID: 1}, {mid: 7, key: "k1", server: "s1", connID: 2},
		{mid: 8, key: "k2", server: "s1", connID: 3},
	})
	raw.must("SCRIPT", "FLUSH")
	owned, errs, err := r.DelSessions(context.Background(), []dao.Session{
		{Mid: 7, Key: "k1", Server: "s1", ConnID: 1},
		{Mid: 8, Key: "k2", Server: "s1", ConnID: 3},
	})
	if err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("DelSessions: %v %v", err, errs)
	}
	if owned[0] || !owned[1] {
		t.Fatalf("owned = %v, want [false true]", owned)
	}
	checkRouting(t, raw, map[string]string{"k1": "s1", "k2": ""}, map[int64]map[string]string{7: {"k1": "s1"}, 8: nil})
	if raw.exists("conn_k2") {
		t.Error("conn_k2 outlived its session")
	}
}

// TestSessionConnTTL: conn_<key> gets the session TTL when written and
// when renewed, like key_<key>.
func TestSessionConnTTL(t *testing.T) {
	ttl := 10 * time.Minute
	r, raw := newTestRedis(t, func(c *dao.RedisConfig) { c.SessionTTL = conf.Duration(ttl) })
	s := session{mid: 7, key: "k1", server: "s1", connID: 1<<64 - 1}
	addSessions(t, r, []session{s})
	raw.checkTTL("conn_k1", ttl)
	if got, _ := raw.get("conn_k1"); got != "18446744073709551615" {
		t.Fatalf("conn_k1 = %q, want the id in decimal", got)
	}
	raw.must("PEXPIRE", raw.key("conn_k1"), 5000)
	runSteps(t, r, []sessionStep{{op: "renew", s: s, wantRenew: dao.Renewed}})
	if got := raw.pttl("conn_k1"); got < ttl-time.Minute {
		t.Fatalf("PTTL conn_k1 = %v after renewal, want about %v", got, ttl)
	}
}
