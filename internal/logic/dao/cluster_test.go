package dao_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/testkit"
)

// clusterUnderTest is TestRedisCluster's cluster while it runs: the tests
// it runs as its subtests get DAOs in cluster mode on it (newTestRedis).
var clusterUnderTest atomic.Pointer[testkit.RedisCluster]

// testCluster is the Redis Cluster t runs against, nil for the single
// test Redis.
func testCluster(t testing.TB) *testkit.RedisCluster {
	if !strings.HasPrefix(t.Name(), "TestRedisCluster/") {
		return nil
	}
	return clusterUnderTest.Load()
}

// newClusterTestRedis is newTestRedis on Redis Cluster rc: a DAO in
// cluster mode under a prefix of its own (the cluster is the test's, and
// goes with it), and a raw client that routes commands by slot.
func newClusterTestRedis(t testing.TB, rc *testkit.RedisCluster, mutate func(*dao.RedisConfig)) (*dao.Redis, *rawRedis) {
	t.Helper()
	prefix := "test:" + randomHex(8) + ":"
	cfg := dao.DefaultRedisConfig()
	cfg.Cluster = true
	cfg.ClusterAddrs = rc.Addrs()[:1] // one seed: the client learns the others
	cfg.Prefix = prefix
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := dao.NewRedis(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	cl := &redisc.Cluster{StartupNodes: rc.Addrs()}
	t.Cleanup(func() { cl.Close() })
	if err := cl.Refresh(); err != nil {
		t.Fatalf("raw cluster client: %v", err)
	}
	c := cl.Get()
	t.Cleanup(func() { c.Close() })
	if err := redisc.BindConn(c, prefix+"{online}"); err != nil {
		t.Fatal(err)
	}
	return r, &rawRedis{t: t, c: c, prefix: prefix, rc: rc, cl: cl}
}

// clusterTLS is the TLS side of TestRedisCluster's cluster: each node's
// TLS port (where CLUSTER SLOTS names the other nodes' TLS ports) and the
// CA of their certificates.
type clusterTLS struct {
	ca    *testkit.CA
	ports []int
}

// TestRedisCluster runs the DAO's Redis tests against a real Redis
// Cluster of three masters (redis-server processes of its own), in
// cluster mode, then what only a cluster has: keys spread over the
// masters, hash-tagged slots, slots migrated while the DAO runs, TLS and
// ACL on the connections to every node. The nodes listen on a plain port
// (the tests' and the set-up's) and a TLS port, and talk TLS to each
// other.
func TestRedisCluster(t *testing.T) {
	tc := &clusterTLS{ca: testkit.NewCA(t, "redis-cluster-test"), ports: make([]int, 3)}
	cert := tc.ca.Server("redis", "127.0.0.1", "localhost")
	// The cluster bus always asks the connecting node for a certificate.
	node := tc.ca.Client("redis-node")
	rc := testkit.StartRedisCluster(t, 3, func(i int) []string {
		tc.ports[i] = freePort(t)
		return []string{"--tls-port", strconv.Itoa(tc.ports[i]), "--tls-cluster", "yes",
			"--tls-cert-file", cert.CertFile, "--tls-key-file", cert.KeyFile,
			"--tls-client-cert-file", node.CertFile, "--tls-client-key-file", node.KeyFile,
			"--tls-ca-cert-file", tc.ca.CertFile, "--tls-auth-clients", "no",
			// The last subtest stops a master: the others keep serving.
			"--cluster-require-full-coverage", "no"}
	})
	clusterUnderTest.Store(rc)
	t.Cleanup(func() { clusterUnderTest.Store(nil) })

	// The single-mode tests, unchanged: same answers, same logical keys.
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{name: "AddSession", fn: TestAddSession},
		{name: "AddSessions", fn: TestAddSessions},
		{name: "AddSessionConcurrent", fn: TestAddSessionConcurrent},
		{name: "AddSessionClose", fn: TestAddSessionClose},
		{name: "DelSessions", fn: TestDelSessions},
		{name: "RenewSession", fn: TestRenewSession},
		{name: "DelSession", fn: TestDelSession},
		{name: "SessionInvalidArgument", fn: TestSessionInvalidArgument},
		{name: "SessionKeyReuse", fn: TestSessionKeyReuse},
		{name: "SessionKeyReuseBatch", fn: TestSessionKeyReuseBatch},
		{name: "SessionConnTTL", fn: TestSessionConnTTL},
		{name: "ServersByKeys", fn: TestServersByKeys},
		{name: "KeysByMids", fn: TestKeysByMids},
		{name: "KeysByMidsWrongType", fn: TestKeysByMidsWrongType},
		{name: "RedisPingAndClose", fn: TestRedisPingAndClose},
		{name: "StoreOnline", fn: TestStoreOnline},
		{name: "LoadOnline", fn: TestLoadOnline},
		{name: "OnlineReportExpires", fn: TestOnlineReportExpires},
		{name: "LoadAllOnline", fn: TestLoadAllOnline},
		{name: "LoadAllOnlineIndex", fn: TestLoadAllOnlineIndex},
		{name: "LoadAllOnlineRoomsFollowLastReport", fn: TestLoadAllOnlineRoomsFollowLastReport},
		{name: "LoadAllOnlineExpires", fn: TestLoadAllOnlineExpires},
		{name: "LoadAllOnlinePrefixes", fn: TestLoadAllOnlinePrefixes},
		{name: "LoadAllOnlineMany", fn: TestLoadAllOnlineMany},
		{name: "StoreOnlineEpoch", fn: TestStoreOnlineEpoch},
		{name: "OpenStream", fn: TestOpenStream},
		{name: "StreamAppendWhenOpen", fn: TestStreamAppendWhenOpen},
		{name: "AppendRoom", fn: TestAppendRoom},
		{name: "StreamConcurrentAppends", fn: TestStreamConcurrentAppends},
		{name: "StreamTrim", fn: TestStreamTrim},
		{name: "StreamEpochChange", fn: TestStreamEpochChange},
		{name: "StreamOutOfStep", fn: TestStreamOutOfStep},
		{name: "ReadStreamMissing", fn: TestReadStreamMissing},
		{name: "StreamInvalidArgument", fn: TestStreamInvalidArgument},
		{name: "StreamWrongType", fn: TestStreamWrongType},
		{name: "Receipts", fn: TestReceipts},
		{name: "DeferReceipts", fn: TestDeferReceipts},
	} {
		t.Run(tc.name, tc.fn)
	}
	t.Run("KeysSpreadOverMasters", testClusterSpread)
	t.Run("HashTags", testClusterHashTags)
	t.Run("StreamTags", testClusterStreamTags)
	t.Run("SlotMoved", testClusterSlotMoved)
	t.Run("SlotMigrating", testClusterSlotMigrating)
	t.Run("ACL", testClusterACL)
	t.Run("TLS", func(t *testing.T) { testClusterTLS(t, tc) })
	t.Run("MasterGone", testClusterMasterGone) // last: it stops a node
}

// testClusterMasterGone: a slot moves to another master and its old master
// goes away before the client learns of it (as after a failover): the
// client cannot reach the old address, sends the command to another master
// instead (redisc), follows its MOVED and reads the slot map again; the
// operations succeed.
func testClusterMasterGone(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	ctx := context.Background()
	s := dao.Session{Key: "orphan", Server: "s1", ConnID: 1}
	if err := r.AddSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	slot := redisc.Slot(raw.key("key_orphan"))
	from := raw.rc.Owner(t, slot)
	raw.rc.MoveSlot(t, slot, (from+1)%len(raw.rc.Nodes))
	raw.rc.Nodes[from].Stop()

	if got, err := r.ServersByKeys(ctx, []string{"orphan"}); err != nil || len(got["s1"]) != 1 {
		t.Fatalf("ServersByKeys = %v, %v", got, err)
	}
	if res, err := r.RenewSession(ctx, s); err != nil || res != dao.Renewed {
		t.Fatalf("RenewSession = %v, %v", res, err)
	}
	if owned, err := r.DelSession(ctx, s); err != nil || !owned {
		t.Fatalf("DelSession = %v, %v", owned, err)
	}
}

// testClusterTLS: given one TLS seed, the DAO reaches every master over
// TLS (the slot map a TLS client reads names the TLS ports), verifying
// their certificates; an untrusted CA fails.
func testClusterTLS(t *testing.T, tc *clusterTLS) {
	seed := "127.0.0.1:" + strconv.Itoa(tc.ports[0])
	t.Run("trusted", func(t *testing.T) {
		r, _ := newTestRedis(t, func(c *dao.RedisConfig) {
			c.ClusterAddrs = []string{seed}
			c.TLS = true
			c.TLSCAFile = tc.ca.CertFile
		})
		useEveryOperation(t, r)
		testClusterSpreadOn(t, r, nil)
	})
	t.Run("untrusted", func(t *testing.T) {
		r, _ := newTestRedis(t, func(c *dao.RedisConfig) {
			c.ClusterAddrs = []string{seed}
			c.TLS = true
			c.TLSCAFile = testkit.NewCA(t, "other").CertFile
		})
		if err := r.Ping(context.Background()); !errors.Is(err, dao.ErrRedis) || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("Ping with an untrusted CA = %v, want a certificate error", err)
		}
	})
}

// testClusterSpread: sessions land on every master, and the operations
// that span many keys (one pipeline per master) answer as in single mode.
func testClusterSpread(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	testClusterSpreadOn(t, r, raw)
}

// testClusterSpreadOn is testClusterSpread's body on DAO r; raw, when not
// nil, checks where the keys are.
func testClusterSpreadOn(t *testing.T, r *dao.Redis, raw *rawRedis) {
	ctx := context.Background()
	const n = 90
	sessions := make([]dao.Session, n)
	mids := make([]int64, n)
	keys := make([]string, n)
	want := map[string][]string{}
	for i := range sessions {
		server := "s" + strconv.Itoa(i%3)
		sessions[i] = dao.Session{Mid: int64(i + 1), Key: "k" + strconv.Itoa(i), Server: server, ConnID: uint64(i + 1)}
		mids[i], keys[i] = int64(i+1), sessions[i].Key
		want[server] = append(want[server], sessions[i].Key)
	}
	for i, err := range r.AddSessions(ctx, sessions) {
		if err != nil {
			t.Fatalf("AddSessions[%d]: %v", i, err)
		}
	}
	for i := 0; raw != nil && i < len(raw.rc.Nodes); i++ {
		keys, err := redis.Strings(raw.rc.Do(t, i, "KEYS", raw.prefix+"*"), nil)
		if err != nil || len(keys) == 0 {
			t.Errorf("node %d holds no key of the test (%v)", i, err)
		}
	}
	got, err := r.ServersByKeys(ctx, keys)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("ServersByKeys = %v, %v; want %v", got, err, want)
	}
	byMid, err := r.KeysByMids(ctx, mids)
	if err != nil || !reflect.DeepEqual(sortedGroups(byMid), sortedGroups(want)) {
		t.Fatalf("KeysByMids = %v, %v; want %v", byMid, err, want)
	}
	owned, errs, err := r.DelSessions(ctx, sessions)
	if err != nil {
		t.Fatalf("DelSessions: %v", err)
	}
	for i := range owned {
		if !owned[i] || errs[i] != nil {
			t.Fatalf("DelSessions[%d] = %v, %v", i, owned[i], errs[i])
		}
	}
	if got, err := r.ServersByKeys(ctx, keys); err != nil || len(got) != 0 {
		t.Fatalf("ServersByKeys after DelSessions = %v, %v", got, err)
	}
	for i := 0; raw != nil && i < len(raw.rc.Nodes); i++ {
		if keys, _ := redis.Strings(raw.rc.Do(t, i, "KEYS", raw.prefix+"*"), nil); len(keys) != 0 {
			t.Errorf("node %d still holds %q", i, keys)
		}
	}
}

// testClusterHashTags: a connection's key_ and conn_ share a slot (also
// for keys with braces), a member's mid_ has its own, and the online keys
// share one; the keys carry the shapes docs/architecture.md lists.
func testClusterHashTags(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	ctx := context.Background()
	for _, key := range []string{"k1", "}k", "{k}", "a}b{c", "5c2b8a1e-1b3e-4c9a-9a57-2d6f3c1f0e11"} {
		s := dao.Session{Mid: 42, Key: key, Server: "s1", ConnID: 9}
		if err := r.AddSession(ctx, s); err != nil {
			t.Fatalf("AddSession(%q): %v", key, err)
		}
		kk, ck := raw.prefix+"key_{:"+key+"}", raw.prefix+"conn_{:"+key+"}"
		if redisc.Slot(kk) != redisc.Slot(ck) {
			t.Errorf("key %q: %s and %s in slots %d and %d", key, kk, ck, redisc.Slot(kk), redisc.Slot(ck))
		}
		if v, _ := redis.String(raw.must("GET", kk), nil); v != "s1" {
			t.Errorf("GET %s = %q", kk, v)
		}
		if v, _ := redis.String(raw.must("GET", ck), nil); v != "9" {
			t.Errorf("GET %s = %q", ck, v)
		}
		if res, err := r.RenewSession(ctx, s); err != nil || res != dao.Renewed {
			t.Errorf("RenewSession(%q) = %v, %v", key, res, err)
		}
		if owned, err := r.DelSession(ctx, s); err != nil || !owned {
			t.Errorf("DelSession(%q) = %v, %v", key, owned, err)
		}
	}
	if _, err := r.StoreOnline(ctx, "c1", nil, 0, 0, false); err != nil {
		t.Fatal(err)
	}
	slot := redisc.Slot(raw.prefix + "{online}online_servers")
	for _, k := range []string{"{online}ol_c1", "{online}epoch"} {
		if !raw.exists(strings.TrimPrefix(k, "{online}")) || redisc.Slot(raw.prefix+k) != slot {
			t.Errorf("%s: missing, or not in the online slot", k)
		}
	}
}

// testClusterSlotMoved: slots of a connection's keys, of its member's hash
// and of the online keys move to another master behind the DAO's back;
// every operation follows (MOVED) and answers as before.
func testClusterSlotMoved(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	ctx := context.Background()
	s := dao.Session{Mid: 77, Key: "moving", Server: "s1", ConnID: 5}
	if err := r.AddSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := r.StoreOnline(ctx, "c1", map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
		t.Fatal(err)
	}
	if err := r.Ping(ctx); err != nil { // the DAO has read the slot map
		t.Fatal(err)
	}
	for _, k := range []string{raw.key("key_moving"), raw.key("mid_77"), raw.key("online_servers")} {
		slot := redisc.Slot(k)
		raw.rc.MoveSlot(t, slot, (raw.rc.Owner(t, slot)+1)%len(raw.rc.Nodes))
	}
	if got, err := r.ServersByKeys(ctx, []string{"moving"}); err != nil || !reflect.DeepEqual(got, map[string][]string{"s1": {"moving"}}) {
		t.Fatalf("ServersByKeys after the move = %v, %v", got, err)
	}
	if got, err := r.KeysByMids(ctx, []int64{77}); err != nil || !reflect.DeepEqual(got, map[string][]string{"s1": {"moving"}}) {
		t.Fatalf("KeysByMids after the move = %v, %v", got, err)
	}
	if res, err := r.RenewSession(ctx, s); err != nil || res != dao.Renewed {
		t.Fatalf("RenewSession after the move = %v, %v", res, err)
	}
	if got, err := r.LoadAllOnline(ctx); err != nil || len(got) != 1 || got["c1"].ConnCount != 1 {
		t.Fatalf("LoadAllOnline after the move = %v, %v", got, err)
	}
	if _, err := r.StoreOnline(ctx, "c2", nil, 2, 2, false); err != nil {
		t.Fatalf("StoreOnline after the move: %v", err)
	}
	if owned, err := r.DelSession(ctx, s); err != nil || !owned {
		t.Fatalf("DelSession after the move = %v, %v", owned, err)
	}
	checkRouting(t, raw, map[string]string{"moving": ""}, map[int64]map[string]string{77: nil})
}

// testClusterSlotMigrating: while a slot is half migrated (its new keys
// already go to the importing master, ASK), a session whose keys hash to
// it is added and found; after the migration it is still there.
func testClusterSlotMigrating(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	ctx := context.Background()
	if err := r.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	key := "migrating"
	slot := redisc.Slot(raw.key("key_" + key))
	to := (raw.rc.Owner(t, slot) + 1) % len(raw.rc.Nodes)
	from := raw.rc.StartMigration(t, slot, to)
	finished := false
	defer func() {
		if !finished {
			raw.rc.FinishMigration(t, slot, from, to)
		}
	}()
	s := dao.Session{Key: key, Server: "s1", ConnID: 1}
	if err := r.AddSession(ctx, s); err != nil {
		t.Fatalf("AddSession during the migration: %v", err)
	}
	if n, _ := redis.Int(raw.rc.Do(t, to, "CLUSTER", "COUNTKEYSINSLOT", slot), nil); n != 2 {
		t.Errorf("importing node holds %d keys of the slot, want key_ and conn_", n)
	}
	if got, err := r.ServersByKeys(ctx, []string{key}); err != nil || len(got["s1"]) != 1 {
		t.Fatalf("ServersByKeys during the migration = %v, %v", got, err)
	}
	raw.rc.FinishMigration(t, slot, from, to)
	finished = true
	if owned, err := r.DelSession(ctx, s); err != nil || !owned {
		t.Fatalf("DelSession after the migration = %v, %v", owned, err)
	}
}

// testClusterACL: username, password (from a file) and the pool settings
// apply to the connections to every node, the seed and the ones learnt
// from the slot map; a wrong password fails every operation.
func testClusterACL(t *testing.T) {
	rc := testCluster(t)
	// The rights docs/security.md lists for cluster mode.
	for i := range rc.Nodes {
		rc.Do(t, i, "ACL", "SETUSER", aclUser, "reset", "on", ">"+aclPassword, "~test:*",
			"+@read", "+@write", "+@scripting", "+@connection", "-@dangerous", "+cluster|slots")
	}
	t.Cleanup(func() {
		for i := range rc.Nodes {
			rc.Do(t, i, "ACL", "DELUSER", aclUser)
		}
	})
	for _, tc := range []struct {
		name     string
		password string
		wantErr  bool
	}{
		{name: "right password", password: aclPassword},
		{name: "wrong password", password: "nope", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newTestRedis(t, func(c *dao.RedisConfig) {
				c.Username = aclUser
				c.PasswordFile = secretFile(t, tc.password+"\n")
			})
			if tc.wantErr {
				err := r.Ping(context.Background())
				if !errors.Is(err, dao.ErrRedis) {
					t.Fatalf("Ping = %v, want ErrRedis", err)
				}
				return
			}
			useEveryOperation(t, r)
			for i := range rc.Nodes {
				list, _ := redis.String(rc.Do(t, i, "CLIENT", "LIST"), nil)
				if !strings.Contains(list, "user="+aclUser+" ") {
					t.Errorf("node %d has no connection of user %s:\n%s", i, aclUser, list)
				}
			}
		})
	}
}

func TestRedisClusterConfigValidate(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(*dao.RedisConfig)
		wantPaths []string
	}{
		{name: "seeds", mutate: func(c *dao.RedisConfig) { c.ClusterAddrs = []string{"10.0.0.1:7000", "redis-1:7001"} }},
		{name: "no seeds: addr is the seed", mutate: func(*dao.RedisConfig) {}},
		{name: "bad seed", mutate: func(c *dao.RedisConfig) { c.ClusterAddrs = []string{"ok:1", "noport"} }, wantPaths: []string{"redis.cluster_addrs[1]"}},
		{name: "db other than 0", mutate: func(c *dao.RedisConfig) { c.DB = 3 }, wantPaths: []string{"redis.db"}},
		{name: "hash tag in the prefix", mutate: func(c *dao.RedisConfig) { c.Prefix = "{goim}:" }, wantPaths: []string{"redis.prefix"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := dao.DefaultRedisConfig()
			cfg.Cluster = true
			tt.mutate(&cfg)
			var p conf.Problems
			cfg.Validate(p.Sub("redis"))
			err := p.Err()
			if len(tt.wantPaths) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			wantInvalid(t, err, tt.wantPaths)
		})
	}
	// Outside cluster mode the cluster keys are not read.
	cfg := dao.DefaultRedisConfig()
	cfg.ClusterAddrs, cfg.Prefix, cfg.DB = []string{"noport"}, "{goim}:", 3
	var p conf.Problems
	cfg.Validate(&p)
	if err := p.Err(); err != nil {
		t.Fatalf("single mode: %v", err)
	}
}

// TestRedisClusterDown: a cluster no seed of which answers fails every
// operation with ErrRedis within the timeouts, and Ping names it.
func TestRedisClusterDown(t *testing.T) {
	cfg := dao.DefaultRedisConfig()
	cfg.Cluster = true
	cfg.ClusterAddrs = []string{fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	r, err := dao.NewRedis(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if err := r.Ping(ctx); !errors.Is(err, dao.ErrRedis) {
		t.Fatalf("Ping = %v, want ErrRedis", err)
	}
	if err := r.AddSession(ctx, dao.Session{Key: "k", Server: "s"}); !errors.Is(err, dao.ErrRedis) {
		t.Fatalf("AddSession = %v, want ErrRedis", err)
	}
	if _, err := r.LoadAllOnline(ctx); !errors.Is(err, dao.ErrRedis) {
		t.Fatalf("LoadAllOnline = %v, want ErrRedis", err)
	}
}
