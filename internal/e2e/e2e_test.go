package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	goimclient "github.com/goim/goim/client"
	"github.com/goim/goim/internal/testkit"
)

// clients are the suite's long-lived connections, two per comet, one TCP
// and one WebSocket on each:
//
//	name  comet    transport  mid  room        accepts
//	c1t   comet-1  tcp        1    live://1000 1000, 1002
//	c1w   comet-1  ws         2    live://1000 1000
//	c2w   comet-2  ws         1    live://1000 1000, 1002
//	c2t   comet-2  tcp        3    live://2000 1000
//
// User 1 has a TCP connection on comet-1 and a WebSocket one on comet-2.
// The connection key is the name (goim v2's insecure auth keeps it). The
// drain moves c2w and c2t to comet-1. The rejoin adds job, two clients in
// live://job (j1t on comet-1, j2w on the restarted comet-2) on which the
// job fault counts deliveries.
type clients struct {
	c1t, c1w, c2w, c2t *client
	job                [2]*client
}

func (cs *clients) all() []*client { return []*client{cs.c1t, cs.c1w, cs.c2w, cs.c2t} }

// authBody is a goim v2 auth body.
func authBody(mid int64, key, room, platform string, accepts ...int32) string {
	b, _ := json.Marshal(map[string]any{"mid": mid, "key": key, "room_id": room, "platform": platform, "accepts": accepts})
	return string(b)
}

// TestEndToEnd runs the whole cluster as processes and checks it through
// its public interfaces only: logic's HTTP API and goim v2 clients. The
// subtests share the cluster and run in order; faults come last, and the
// first failing subtest stops the rest.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite: builds and runs every service")
	}
	began := time.Now()
	c := startCluster(t)
	t.Logf("cluster started in %v (build included)", time.Since(began).Round(time.Millisecond))

	cs := &clients{
		c1t: mustDial(t, t, "c1t", "tcp", c.comets["comet-1"].tcp(c.ports), authBody(1, "c1t", "live://1000", "android", 1000, 1002), heartbeat),
		c1w: mustDial(t, t, "c1w", "ws", c.comets["comet-1"].ws(c.ports), authBody(2, "c1w", "live://1000", "web", 1000), heartbeat),
		c2w: mustDial(t, t, "c2w", "ws", c.comets["comet-2"].ws(c.ports), authBody(1, "c2w", "live://1000", "web", 1000, 1002), heartbeat),
		c2t: mustDial(t, t, "c2t", "tcp", c.comets["comet-2"].tcp(c.ports), authBody(3, "c2t", "live://2000", "ios", 1000), heartbeat),
	}
	// Room and broadcast pushes reach only the comets job knows.
	c.waitJobComets(t, 2)

	steps := []struct {
		name string
		run  func(*testing.T)
	}{
		{"api", func(t *testing.T) { testAPI(t, c) }},
		{"api-secure", func(t *testing.T) { testAPISecure(t, c, cs) }},
		{"rpc-auth", func(t *testing.T) { testRPCAuth(t, c, cs) }},
		{"delivery", func(t *testing.T) { testDelivery(t, c, cs) }},
		{"online", func(t *testing.T) { testOnline(t, c, cs) }},
		{"security", func(t *testing.T) { testSecurity(t, c, cs) }},
		{"drain", func(t *testing.T) { testDrain(t, c, cs) }},
		{"rejoin", func(t *testing.T) { testRejoin(t, c, cs) }},
		{"fault-job", func(t *testing.T) { testJobKill(t, c, cs) }},
		{"fault-redis", func(t *testing.T) { testRedisRestart(t, c, cs) }},
		{"fault-kafka", func(t *testing.T) { testKafkaOutage(t, c) }},
	}
	for _, s := range steps {
		began := time.Now()
		ok := t.Run(s.name, s.run)
		t.Logf("%s: %v", s.name, time.Since(began).Round(time.Millisecond))
		if !ok {
			return
		}
	}
	for _, p := range []*process{c.logic, c.job, c.comets["comet-1"].proc, c.comets["comet-2"].proc} {
		p.failIfExited(t)
	}
}

// waitJobComets waits until the running job has n comets in its pool.
func (c *cluster) waitJobComets(t *testing.T, n int) {
	t.Helper()
	testkit.WaitFor(t, 20*time.Second, func() error {
		c.job.failIfExited(t)
		v, err := metric(c.jobAdmin, "goim_job_comets")
		if err != nil {
			return err
		}
		if int(v) != n {
			return fmt.Errorf("job has %v comets, want %d", v, n)
		}
		return nil
	})
}

// nodesData is the data of /goim/nodes/weighted.
type nodesData struct {
	Domain       string   `json:"domain"`
	TCPPort      int      `json:"tcp_port"`
	WSPort       int      `json:"ws_port"`
	WSSPort      int      `json:"wss_port"`
	Heartbeat    int      `json:"heartbeat"`
	HeartbeatMax int      `json:"heartbeat_max"`
	Nodes        []string `json:"nodes"`
}

// nodes returns the sorted node list /goim/nodes/weighted gives platform.
func (c *cluster) nodes(platform string) ([]string, error) {
	var nd nodesData
	if err := getData(c.api+"/goim/nodes/weighted?platform="+platform, &nd); err != nil {
		return nil, err
	}
	return slices.Sorted(slices.Values(nd.Nodes)), nil
}

// waitNodes waits until /goim/nodes/weighted lists exactly want (sorted).
func (c *cluster) waitNodes(t *testing.T, want ...string) {
	t.Helper()
	testkit.WaitFor(t, 20*time.Second, func() error {
		got, err := c.nodes("android")
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("nodes %q, want %q", got, want)
		}
		return nil
	})
}

// only checks that a client's pushes after the first n are exactly want
// (bodies, in order).
func only(t *testing.T, cl *client, n int, want ...string) {
	t.Helper()
	var got []string
	for _, p := range cl.since(n) {
		got = append(got, p.body)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s received %q, want exactly %q", cl.name, got, want)
	}
}

// marks returns how many pushes each client has received so far.
func marks(cls ...*client) []int {
	out := make([]int, len(cls))
	for i, cl := range cls {
		out[i] = len(cl.received())
	}
	return out
}

func testDelivery(t *testing.T, c *cluster, cs *clients) {
	const wait = 20 * time.Second
	all := cs.all()
	start := marks(all...)

	// keys: exactly the named connections, filtered by their accepts. One
	// key's pushes keep their order, so "keys:filtered" (op 1001, which
	// c1w does not accept) would arrive between the two others.
	pushOK(t, c.api+"/goim/push/keys?operation=1000&keys=c1w,c2t", "keys:1")
	pushOK(t, c.api+"/goim/push/keys?operation=1001&keys=c1w", "keys:filtered")
	pushOK(t, c.api+"/goim/push/keys?operation=1000&keys=c1w", "keys:2")
	cs.c1w.waitBodies(t, "keys:", 2, wait)
	cs.c2t.waitBodies(t, "keys:", 1, wait)

	// mids: every connection of user 1, TCP on comet-1 and WS on comet-2.
	pushOK(t, c.api+"/goim/push/mids?operation=1000&mids=1", "mids:1")
	cs.c1t.waitBodies(t, "mids:", 1, wait)
	cs.c2w.waitBodies(t, "mids:", 1, wait)

	// room: 1,000 pushes, one after another, to live://1000 (members on
	// both comets), each in publish order on every member.
	const n = 1000
	began := time.Now()
	for i := range n {
		pushOK(t, c.api+"/goim/push/room?operation=1000&type=live&room=1000", fmt.Sprintf("room:%04d", i))
	}
	published := time.Since(began)
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("room:%04d", i)
	}
	for _, cl := range []*client{cs.c1t, cs.c1w, cs.c2w} {
		if got := cl.waitBodies(t, "room:", n, 30*time.Second); !slices.Equal(got, want) {
			t.Errorf("%s: %d room pushes, not the %d in publish order (first difference at %d)", cl.name, len(got), n, firstDiff(got, want))
		}
	}
	t.Logf("room: %d pushes published one by one in %v (%.0f/s), all delivered in order to 3 members on 2 comets %v after the first",
		n, published.Round(time.Millisecond), n/published.Seconds(), time.Since(began).Round(time.Millisecond))

	// broadcast: only connections that accept the op. Once both accepting
	// clients (one per comet) have it, a keys push to the others is the
	// first thing they get after their mark.
	mark := marks(all...)
	pushOK(t, c.api+"/goim/push/all?operation=1002", "all:1002")
	cs.c1t.waitBodies(t, "all:1002", 1, wait)
	cs.c2w.waitBodies(t, "all:1002", 1, wait)
	pushOK(t, c.api+"/goim/push/keys?operation=1000&keys=c1w,c2t", "marker:all")
	cs.c1w.waitBodies(t, "marker:all", 1, wait)
	cs.c2t.waitBodies(t, "marker:all", 1, wait)
	only(t, cs.c1w, mark[1], "marker:all")
	only(t, cs.c2t, mark[3], "marker:all")
	only(t, cs.c1t, mark[0], "all:1002")
	only(t, cs.c2w, mark[2], "all:1002")
	// A broadcast every connection accepts, paced (speed = connections
	// per second for the whole cluster).
	pushOK(t, c.api+"/goim/push/all?operation=1000&speed=100", "all:1000")
	for _, cl := range all {
		cl.waitBodies(t, "all:1000", 1, wait)
	}

	// Nothing reached a connection it was not meant for: everything above
	// was delivered, so a stray push would have arrived by now.
	wantAll := map[*client][]string{
		cs.c1t: append(append([]string{"mids:1"}, want...), "all:1002", "all:1000"),
		cs.c1w: append(append([]string{"keys:1", "keys:2"}, want...), "marker:all", "all:1000"),
		cs.c2w: append(append([]string{"mids:1"}, want...), "all:1002", "all:1000"),
		cs.c2t: {"keys:1", "marker:all", "all:1000"},
	}
	for i, cl := range all {
		var got []string
		for _, p := range cl.since(start[i]) {
			got = append(got, p.body)
		}
		slices.Sort(got)
		w := slices.Sorted(slices.Values(wantAll[cl]))
		if !slices.Equal(got, w) {
			t.Errorf("%s: %d pushes, want %d (first difference at %d of the sorted lists)", cl.name, len(got), len(w), firstDiff(got, w))
		}
	}
	// Pushes carry the op they were sent with.
	for _, p := range cs.c1t.since(start[0]) {
		if wantOp := int32(map[bool]int{true: 1002, false: 1000}[p.body == "all:1002"]); p.op != wantOp {
			t.Errorf("c1t: %q came with op %d, want %d", p.body, p.op, wantOp)
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// waitOnline waits until the three online endpoints answer exactly the
// given data: the staleness is documented as report_interval + refresh
// (2 s here).
func (c *cluster) waitOnline(t *testing.T, timeout time.Duration, want map[string]string) time.Duration {
	t.Helper()
	began := time.Now()
	testkit.WaitFor(t, timeout, func() error {
		for path, data := range want {
			r, err := do(http.MethodGet, c.api+path, nil, nil)
			if err != nil {
				return err
			}
			if w := `{"code":0,"message":"","data":` + data + `}`; string(r.body) != w {
				return fmt.Errorf("GET %s: %s, want %s", path, r.body, w)
			}
		}
		return nil
	})
	return time.Since(began)
}

func testOnline(t *testing.T, c *cluster, cs *clients) {
	// Each comet sees its two clients from one IP (127.0.0.1).
	took := c.waitOnline(t, 15*time.Second, map[string]string{
		"/goim/online/total":                               `{"conn_count":4,"ip_count":2}`,
		"/goim/online/top?type=live&limit=10":              `[{"room_id":"1000","count":3},{"room_id":"2000","count":1}]`,
		"/goim/online/top?type=live&limit=1":               `[{"room_id":"1000","count":3}]`,
		"/goim/online/top?type=liv&limit=10":               `[]`,
		"/goim/online/room?type=live&rooms=1000,2000,3000": `{"1000":3,"2000":1,"3000":0}`,
	})
	t.Logf("online counts matched %v after the check began", took.Round(time.Millisecond))
	testkit.WaitFor(t, 10*time.Second, func() error {
		for _, cl := range cs.all() {
			if cl.heartbeats() == 0 {
				return fmt.Errorf("%s: no heartbeat reply", cl.name)
			}
		}
		return nil
	})
}

// reconnect dials a replacement for cl the way a client does: ask
// /goim/nodes/weighted, dial the nodes it names in order, same auth.
func (c *cluster) reconnect(t *testing.T, cl *client, platform string) *client {
	t.Helper()
	var nc *client
	testkit.WaitFor(t, 20*time.Second, func() error {
		nd, err := goimclient.FetchNodes(context.Background(), nil, c.api, platform)
		if err != nil {
			return err
		}
		var errs []error
		for _, addr := range nd.Addrs(goimclient.Transport(cl.tr)) {
			if nc, err = dial(c.top, cl.name+"'", cl.tr, addr, cl.auth, heartbeat); err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	return nc
}

func testDrain(t *testing.T, c *cluster, cs *clients) {
	c.waitNodes(t, "127.0.0.2", "127.0.0.3")
	c2 := c.comets["comet-2"]
	began := time.Now()
	c2.proc.signal(t, syscall.SIGTERM)

	var offline time.Duration
	var closedAt [2]time.Duration
	testkit.WaitFor(t, 20*time.Second, func() error {
		if offline == 0 {
			if nodes, err := c.nodes("android"); err == nil && slices.Equal(nodes, []string{"127.0.0.2"}) {
				offline = time.Since(began)
			}
		}
		for i, cl := range []*client{cs.c2w, cs.c2t} {
			if done, _ := cl.closed(); done && closedAt[i] == 0 {
				closedAt[i] = time.Since(began)
			}
		}
		if offline == 0 || closedAt[0] == 0 || closedAt[1] == 0 {
			return fmt.Errorf("after SIGTERM: nodes without comet-2 at %v, c2w closed at %v, c2t closed at %v", offline, closedAt[0], closedAt[1])
		}
		return nil
	})
	_, e1 := cs.c2w.closed()
	_, e2 := cs.c2t.closed()
	t.Logf("drain: comet-2 left /goim/nodes/weighted %v after SIGTERM; its clients were closed at %v (%v) and %v (%v)",
		offline.Round(time.Millisecond), closedAt[0].Round(time.Millisecond), e1, closedAt[1].Round(time.Millisecond), e2)

	// The clients reconnect where the nodes answer sends them: comet-1.
	old := cs.c2w
	cs.c2w = c.reconnect(t, cs.c2w, "web")
	cs.c2t = c.reconnect(t, cs.c2t, "ios")
	reconnected := time.Since(began)
	for _, cl := range []*client{cs.c2w, cs.c2t} {
		if host, _, _ := net.SplitHostPort(cl.addr); host != "127.0.0.2" {
			t.Errorf("%s reconnected to %s, want comet-1 (127.0.0.2)", cl.name, cl.addr)
		}
	}
	if err := c2.proc.waitExit(t, 20*time.Second); err != nil {
		t.Errorf("comet-2 exited with %v after SIGTERM", err)
	}
	exited := time.Since(began)
	if log := c2.proc.log(); !strings.Contains(log, "comet: draining") || !strings.Contains(log, "comet stopped") {
		t.Errorf("comet-2's log lacks the drain:\n%s", c2.proc.tail(20))
	}
	t.Logf("drain: reconnected to comet-1 %v after SIGTERM; comet-2 exited (status 0) at %v",
		reconnected.Round(time.Millisecond), exited.Round(time.Millisecond))

	// Later pushes reach the moved clients: room, user, key. The drained
	// comet's late Disconnect must not have erased the new routing.
	pushOK(t, c.api+"/goim/push/room?operation=1000&type=live&room=1000", "drain:room")
	pushOK(t, c.api+"/goim/push/mids?operation=1000&mids=1", "drain:mids")
	pushOK(t, c.api+"/goim/push/keys?operation=1000&keys=c2t", "drain:keys")
	for _, cl := range []*client{cs.c1t, cs.c1w, cs.c2w} {
		cl.waitBodies(t, "drain:room", 1, 20*time.Second)
	}
	cs.c1t.waitBodies(t, "drain:mids", 1, 20*time.Second)
	cs.c2w.waitBodies(t, "drain:mids", 1, 20*time.Second)
	cs.c2t.waitBodies(t, "drain:keys", 1, 20*time.Second)
	if got := old.bodies("drain:"); len(got) != 0 {
		t.Errorf("the closed connection got %q", got)
	}

	// comet-2's last report, sent as it stopped, says it has no clients:
	// 4 connections, all on comet-1, one IP.
	took := c.waitOnline(t, 20*time.Second, map[string]string{
		"/goim/online/total":                          `{"conn_count":4,"ip_count":1}`,
		"/goim/online/room?type=live&rooms=1000,2000": `{"1000":3,"2000":1}`,
	})
	t.Logf("drain: online totals without comet-2 %v after the moved clients' pushes", took.Round(time.Millisecond))
}

func testRejoin(t *testing.T, c *cluster, cs *clients) {
	began := time.Now()
	c2 := c.startComet(t, "comet-2", "127.0.0.3")
	c.waitNodes(t, "127.0.0.2", "127.0.0.3")
	listed := time.Since(began)
	cs.job[0] = mustDial(t, c.top, "j1t", "tcp", c.comets["comet-1"].tcp(c.ports), authBody(11, "j1t", "live://job", "android", 1000), heartbeat)
	cs.job[1] = mustDial(t, c.top, "j2w", "ws", c2.ws(c.ports), authBody(12, "j2w", "live://job", "web", 1000), heartbeat)
	// job may still hold the old comet-2 or not know the new one yet:
	// probe until a push reaches both comets.
	c.probeRoom(t, "job", cs.job[:]...)
	t.Logf("rejoin: comet-2 restarted; in /goim/nodes/weighted %v after its start, a room push reached clients on both comets after %v",
		listed.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// probeRoom pushes to live://room until every one of cls (members of the
// room) has received a push; see pushUntil.
func (c *cluster) probeRoom(t *testing.T, room string, cls ...*client) {
	t.Helper()
	c.pushUntil(t, "/goim/push/room?operation=1000&type=live&room="+room, "probe:", cls...)
}

// pushUntil POSTs path with the body "<prefix><n>", at most every 200 ms,
// until every one of cls has received such a push, and returns how many
// pushes it took and when the first answered code 0. For pushes a code 0
// does not make delivered: one whose targets have no session (yet)
// answers 0 and publishes nothing, and job may not know a comet yet. Any
// answer but 200 / code 0 or 500 / code -500 fails the test.
func (c *cluster) pushUntil(t *testing.T, path, prefix string, cls ...*client) (attempts int, firstOK time.Duration) {
	t.Helper()
	began := time.Now()
	var last time.Time
	testkit.WaitFor(t, 30*time.Second, func() error {
		for _, cl := range cls {
			if len(cl.bodies(prefix)) > 0 {
				continue
			}
			if time.Since(last) >= 200*time.Millisecond {
				last = time.Now()
				attempts++
				status, code, err := pushAnswer(c.api+path, prefix+strconv.Itoa(attempts))
				switch {
				case err != nil:
					return err
				case status == 200 && code == 0:
					if firstOK == 0 {
						firstOK = time.Since(began)
					}
				case status != 500 || code != -500:
					t.Fatalf("POST %s answered HTTP %d, code %d", path, status, code)
				}
			}
			return fmt.Errorf("%s: no %q push after %d attempts", cl.name, prefix, attempts)
		}
		return nil
	})
	return attempts, firstOK
}
