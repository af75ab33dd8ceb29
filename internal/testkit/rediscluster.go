package testkit

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// RedisCluster is a Redis Cluster of the test's own: masters redis-server
// processes (no replicas) with --cluster-enabled on loopback ports, the
// 16384 slots split evenly between them in order. Its methods take the
// testing.TB to fail, so subtests can use a cluster their parent started.
type RedisCluster struct {
	Nodes []*RedisServer
	ids   []string // CLUSTER MYID of each node
	// migratePorts are the ports MIGRATE reaches each node on: the TLS
	// ports when the nodes talk TLS to each other (--tls-cluster yes).
	migratePorts []int
}

// StartRedisCluster starts masters redis-server processes in cluster mode,
// assigns them the slots (CLUSTER ADDSLOTSRANGE), joins them (CLUSTER
// MEET) and waits until every node sees the whole cluster ok. nodeArgs,
// when not nil, gives more options for node i (such as a TLS port of its
// own; with --tls-cluster yes the cluster bus asks every node for a client
// certificate: give --tls-client-cert-file and --tls-client-key-file).
// Each node's cluster bus port is a free port of its own (--cluster-port),
// not port+10000. It skips the test when redis-server is not installed
// (StartRedisServer); it takes one to two seconds.
func StartRedisCluster(t testing.TB, masters int, nodeArgs func(i int) []string) *RedisCluster {
	t.Helper()
	c := &RedisCluster{}
	buses := make([]int, masters)
	for i := range masters {
		buses[i] = FreePort(t)
		args := []string{"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(buses[i]),
			"--cluster-node-timeout", "5000"}
		if nodeArgs != nil {
			args = append(args, nodeArgs(i)...)
		}
		node := StartRedisServer(t, FreePort(t), args...)
		c.Nodes = append(c.Nodes, node)
		c.migratePorts = append(c.migratePorts, migratePort(node.Port, args))
	}
	per := 16384 / masters
	for i := range masters {
		first, last := i*per, (i+1)*per-1
		if i == masters-1 {
			last = 16383
		}
		// A distinct config epoch per node saves the collision rounds
		// nodes that all start at 0 would go through.
		c.Do(t, i, "CLUSTER", "SET-CONFIG-EPOCH", i+1)
		c.Do(t, i, "CLUSTER", "ADDSLOTSRANGE", first, last)
		id, err := redis.String(c.Do(t, i, "CLUSTER", "MYID"), nil)
		if err != nil {
			t.Fatalf("CLUSTER MYID: %v", err)
		}
		c.ids = append(c.ids, id)
	}
	for i := 1; i < masters; i++ {
		c.Do(t, 0, "CLUSTER", "MEET", "127.0.0.1", c.Nodes[i].Port, buses[i])
	}
	WaitFor(t, 20*time.Second, func() error {
		for i := range c.Nodes {
			if err := c.nodeReady(i); err != nil {
				return err
			}
		}
		return nil
	})
	return c
}

// migratePort is the port other nodes' MIGRATE reaches a node on: its
// --tls-port when args have --tls-cluster yes (MIGRATE then speaks TLS),
// else port.
func migratePort(port int, args []string) int {
	i := slices.Index(args, "--tls-cluster")
	j := slices.Index(args, "--tls-port")
	if i < 0 || i+1 >= len(args) || args[i+1] != "yes" || j < 0 || j+1 >= len(args) {
		return port
	}
	if p, err := strconv.Atoi(args[j+1]); err == nil {
		return p
	}
	return port
}

// nodeReady reports whether node i sees every node and the whole slot
// range, in state ok.
func (c *RedisCluster) nodeReady(i int) error {
	info, err := redis.String(c.try(i, "CLUSTER", "INFO"))
	if err != nil {
		return err
	}
	want := []string{"cluster_state:ok", "cluster_slots_ok:16384",
		"cluster_known_nodes:" + strconv.Itoa(len(c.Nodes))}
	for _, w := range want {
		if !strings.Contains(info, w+"\r\n") {
			return fmt.Errorf("node %d: no %q in CLUSTER INFO", i, w)
		}
	}
	slots, err := redis.Values(c.try(i, "CLUSTER", "SLOTS"))
	if err != nil {
		return err
	}
	if len(slots) != len(c.Nodes) {
		return fmt.Errorf("node %d: CLUSTER SLOTS has %d ranges, want %d", i, len(slots), len(c.Nodes))
	}
	return nil
}

// Addrs are the nodes' "127.0.0.1:port", in order.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Do sends a command to node i (on a connection of its own) and fails t
// on an error.
func (c *RedisCluster) Do(t testing.TB, i int, cmd string, args ...any) any {
	t.Helper()
	reply, err := c.try(i, cmd, args...)
	if err != nil {
		t.Fatalf("node %d: %s %v: %v", i, cmd, args, err)
	}
	return reply
}

func (c *RedisCluster) try(i int, cmd string, args ...any) (any, error) {
	conn, err := redis.Dial("tcp", c.Nodes[i].Addr(), redis.DialConnectTimeout(time.Second),
		redis.DialReadTimeout(5*time.Second), redis.DialWriteTimeout(time.Second))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.Do(cmd, args...)
}

// Owner is the index of the node that serves slot, by node 0's view.
func (c *RedisCluster) Owner(t testing.TB, slot int) int {
	t.Helper()
	port := c.ownerOn(0, slot)
	for i, n := range c.Nodes {
		if n.Port == port {
			return i
		}
	}
	t.Fatalf("slot %d has no owner", slot)
	return -1
}

// StartMigration marks slot as migrating from its owner to node to (the
// first half of a resharding, as redis-cli --cluster reshard does it): the
// owner still serves the slot's keys it has and answers ASK for the
// others. It returns the owner's index.
func (c *RedisCluster) StartMigration(t testing.TB, slot, to int) int {
	t.Helper()
	from := c.Owner(t, slot)
	if from == to {
		t.Fatalf("slot %d is already on node %d", slot, to)
	}
	c.Do(t, to, "CLUSTER", "SETSLOT", slot, "IMPORTING", c.ids[from])
	c.Do(t, from, "CLUSTER", "SETSLOT", slot, "MIGRATING", c.ids[to])
	return from
}

// FinishMigration moves the keys of slot from node from to node to and
// gives the slot to node to on every node (the second half of a
// resharding), then waits until every node agrees. Clients then get MOVED
// for the slot from the other nodes.
func (c *RedisCluster) FinishMigration(t testing.TB, slot, from, to int) {
	t.Helper()
	for {
		keys, err := redis.Strings(c.Do(t, from, "CLUSTER", "GETKEYSINSLOT", slot, 100), nil)
		if err != nil {
			t.Fatalf("CLUSTER GETKEYSINSLOT: %v", err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"127.0.0.1", c.migratePorts[to], "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		c.Do(t, from, "MIGRATE", args...)
	}
	c.Do(t, to, "CLUSTER", "SETSLOT", slot, "NODE", c.ids[to])
	c.Do(t, from, "CLUSTER", "SETSLOT", slot, "NODE", c.ids[to])
	for i := range c.Nodes {
		if i != from && i != to {
			c.Do(t, i, "CLUSTER", "SETSLOT", slot, "NODE", c.ids[to])
		}
	}
	WaitFor(t, 10*time.Second, func() error {
		for i := range c.Nodes {
			if owner := c.ownerOn(i, slot); owner != c.Nodes[to].Port {
				return fmt.Errorf("node %d sees slot %d on port %d, want %d", i, slot, owner, c.Nodes[to].Port)
			}
		}
		return nil
	})
}

// MoveSlot migrates slot with its keys to node to.
func (c *RedisCluster) MoveSlot(t testing.TB, slot, to int) {
	t.Helper()
	from := c.StartMigration(t, slot, to)
	c.FinishMigration(t, slot, from, to)
}

// ownerOn is the port of the master that node i says serves slot (0 if
// none).
func (c *RedisCluster) ownerOn(i, slot int) int {
	ranges, err := redis.Values(c.try(i, "CLUSTER", "SLOTS"))
	if err != nil {
		return 0
	}
	for _, r := range ranges {
		var first, last int
		var master []any
		if _, err := redis.Scan(r.([]any), &first, &last, &master); err != nil {
			return 0
		}
		if slot >= first && slot <= last {
			port, _ := redis.Int(master[1], nil)
			return port
		}
	}
	return 0
}
