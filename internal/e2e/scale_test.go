package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goim/goim/internal/testkit"
)

// The scale-out scenarios: two logic processes, two job processes in one
// consumer group and three comets that find the logics through discovery
// (comet [logic] addrs empty). They are heavy for a 2-core machine (10,000
// client connections), so they run only with GOIM_E2E_SCALE=1: `make
// e2e-scale`, which CI runs after `make test`.

// scaleLogic is one logic process of the scale cluster.
type scaleLogic struct {
	name      string // its discovery host: logic-1, logic-2
	http, rpc string // listen addresses
	admin     string
	api       string // HTTP base URL
	conf      string
	proc      *process
	runs      int
}

// scaleJob is one job process of the scale cluster's consumer group.
type scaleJob struct {
	name  string // its discovery host: job-1, job-2
	admin string
	conf  string
	proc  *process
}

// scaleCluster is the suite's cluster (discovery, Redis, Kafka, secrets,
// comets) with two logics and any number of jobs.
type scaleCluster struct {
	*cluster
	// redisCluster holds the logics' session routing and online data: a
	// real Redis Cluster of three masters (redis-server processes), so the
	// scale-out runs on the engine a cluster that outgrew one Redis uses.
	redisCluster *testkit.RedisCluster
	bench        string // the goim-bench binary
	logics       []*scaleLogic
	jobs         map[string]*scaleJob
}

// buildBench compiles cmd/goim-bench (without -race, as the services).
func buildBench(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "github.com/goim/goim/cmd/goim-bench").CombinedOutput()
	if err != nil {
		t.Fatalf("go build goim-bench: %v\n%s", err, out)
	}
	return filepath.Join(dir, "goim-bench")
}

// startScaleCluster starts discovery, a Redis Cluster of three masters, Kafka (8 partitions), two
// logics, three comets (127.0.0.2-4) and job-1, each ready, with job-1
// knowing the three comets.
func startScaleCluster(t *testing.T) *scaleCluster {
	t.Helper()
	c := &cluster{top: t, env: "e2e-scale-" + testkit.RandomHex(4), prefix: "e2e-scale:" + testkit.RandomHex(6) + ":",
		group: "e2e-scale-job-" + testkit.RandomHex(4), comets: map[string]*comet{}, runs: map[string]int{}}
	c.bin = buildBinaries(t)
	sc := &scaleCluster{cluster: c, bench: buildBench(t), jobs: map[string]*scaleJob{}}
	c.writeSecrets(t)

	addrs := freeAddrs(t, 10)
	c.discovery = addrs[0]
	c.startDiscovery(t)
	sc.redisCluster = testkit.StartRedisCluster(t, 3, nil)
	c.kafka, c.topic = testkit.Kafka(t, 8)
	c.ports = freeCometPorts(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")

	for i := range 2 {
		l := &scaleLogic{name: fmt.Sprintf("logic-%d", i+1), http: addrs[2+3*i], rpc: addrs[3+3*i], admin: addrs[4+3*i]}
		l.api = "http://" + l.http
		sc.logics = append(sc.logics, l)
		sc.startLogic(t, l)
	}
	c.api = sc.logics[0].api // the cluster helpers' logic (probeRoom)
	for i, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		sc.startComet(t, fmt.Sprintf("comet-%d", i+1), ip)
	}
	sc.jobs["job-1"] = &scaleJob{name: "job-1", admin: addrs[8]}
	sc.jobs["job-2"] = &scaleJob{name: "job-2", admin: addrs[9]}
	sc.startJob(t, "job-1")
	sc.waitJobComets(t, "job-1", 3)
	return sc
}

// startLogic starts (or restarts, same config) logic l.
func (sc *scaleCluster) startLogic(t *testing.T, l *scaleLogic) {
	t.Helper()
	c := sc.cluster
	if l.conf == "" {
		l.conf = c.writeConf(t, l.name, `host = "`+l.name+`"
shutdown_timeout = "5s"
[http]
bind = "`+l.http+`"
`+c.httpCredentials()+`[rpc]
bind = "`+l.rpc+`"
`+c.rpcSecretConf()+`[auth]
insecure = true
[node]
tcp_port = `+strconv.Itoa(c.ports.tcp)+`
ws_port = `+strconv.Itoa(c.ports.ws)+`
heartbeat = "20s"
heartbeat_max = 3
# [backoff] keeps the production hint (3 s, x1.8 per failure up to 300 s,
# +-30 %): the mass reconnect follows it.
[online]
refresh = "1s"
[redis]
cluster = true
cluster_addrs = ["`+strings.Join(sc.redisCluster.Addrs(), `", "`)+`"]
prefix = "`+c.prefix+`"
online_ttl = "5s"
[kafka]
brokers = ["`+c.kafka.ListenAddrs()[0]+`"]
topic = "`+c.topic+`"
[admin]
addr = "`+l.admin+`"
`+c.discoveryConf())
	}
	l.runs++
	l.proc = startProcess(t, c.top, fmt.Sprintf("%s-run%d", l.name, l.runs), c.bin.logic, "-conf", l.conf)
	waitReady(t, l.proc, l.admin)
}

// startComet starts comet host on ip with no logic address: it finds the
// logics in discovery.
func (sc *scaleCluster) startComet(t *testing.T, host, ip string) *comet {
	t.Helper()
	c := sc.cluster
	cm := &comet{host: host, ip: ip}
	a := func(port int) string { return strconv.Quote(net.JoinHostPort(ip, strconv.Itoa(port))) }
	cm.conf = c.writeConf(t, host, `host = "`+host+`"
[tcp]
bind = [`+a(c.ports.tcp)+`]
[websocket]
bind = [`+a(c.ports.ws)+`]
[rpc]
bind = `+a(c.ports.rpc)+`
`+c.rpcSecretConf()+`[logic]
# No address: the logics come from discovery (goim.logic).
addrs = []
report_interval = "1s"
[node]
addrs = ["`+ip+`"]
[drain]
window = "1s"
grace = "5s"
[admin]
addr = `+a(c.ports.admin)+`
# [limits] keeps the production defaults (per client IP: 1000
# connections, 20 handshakes a second, 16 waiting for logic): the mass
# reconnect comes from 500 source addresses, 20 clients each, as a
# crowd behind many small NATs would.
`+c.discoveryConf())
	c.comets[host] = cm
	c.runs[host]++
	cm.proc = startProcess(t, c.top, fmt.Sprintf("%s-run%d", host, c.runs[host]), c.bin.comet, "-conf", cm.conf)
	waitReady(t, cm.proc, cm.admin(c.ports))
	return cm
}

// startJob starts job name (a member of the cluster's one consumer group)
// and waits until it is in a group session.
func (sc *scaleCluster) startJob(t *testing.T, name string) *scaleJob {
	t.Helper()
	c := sc.cluster
	j := sc.jobs[name]
	if j.conf == "" {
		j.conf = c.writeConf(t, name, `host = "`+name+`"
shutdown_timeout = "5s"
[kafka]
brokers = ["`+c.kafka.ListenAddrs()[0]+`"]
topic = "`+c.topic+`"
group = "`+c.group+`"
session_timeout = "6s"
[rpc]
`+c.rpcSecretConf()+`[logic]
addrs = []
[admin]
addr = "`+j.admin+`"
`+c.discoveryConf())
	}
	c.runs[name]++
	j.proc = startProcess(t, c.top, fmt.Sprintf("%s-run%d", name, c.runs[name]), c.bin.job, "-conf", j.conf)
	waitReady(t, j.proc, j.admin)
	return j
}

// waitJobComets waits until job name has n comets in its pool.
func (sc *scaleCluster) waitJobComets(t *testing.T, name string, n int) {
	t.Helper()
	j := sc.jobs[name]
	testkit.WaitFor(t, 20*time.Second, func() error {
		j.proc.failIfExited(t)
		v, err := metric(j.admin, "goim_job_comets")
		if err != nil {
			return err
		}
		if int(v) != n {
			return fmt.Errorf("%s has %v comets, want %d", name, v, n)
		}
		return nil
	})
}

// TestScaleOut runs the scale-out scenarios on one cluster of processes:
// a push stream through job rebalances and a logic outage, then a mass
// reconnect of 10,000 clients from a killed comet.
func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite: builds and runs every service")
	}
	if os.Getenv("GOIM_E2E_SCALE") != "1" {
		t.Skip("scale-out scenarios (2 logic, 2 job, 3 comets, 10,000 clients): run with GOIM_E2E_SCALE=1 (make e2e-scale)")
	}
	began := time.Now()
	sc := startScaleCluster(t)
	t.Logf("scale cluster started in %v (builds included)", time.Since(began).Round(time.Millisecond))
	for _, s := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"rebalance", func(t *testing.T) { testRebalance(t, sc) }},
		{"mass-reconnect", func(t *testing.T) { testMassReconnect(t, sc) }},
	} {
		began := time.Now()
		ok := t.Run(s.name, s.run)
		t.Logf("%s: %v", s.name, time.Since(began).Round(time.Millisecond))
		if !ok {
			return
		}
	}
}

// failoverPusher is a push API client that knows two logic addresses, as
// a backend behind no load balancer would: push i goes first to logic
// i mod 2 and, when that fails (no answer, or an error answer), to the
// other, back and forth until one answers code 0. Each attempt has a body
// of its own ("<prefix><i>:<attempt>"), so that a receiver can tell a
// push the pusher sent twice (an attempt whose answer was lost, though
// logic had published it) from one that job delivered twice.
type failoverPusher struct {
	apis   []string
	prefix string

	mu        sync.Mutex
	acked     int            // pushes answered code 0
	failovers int            // attempts that failed and went to the other logic
	reasons   map[string]int // failed attempts by "logic: answer"
	err       error          // a push no logic took within the bound
}

// push sends push i to room, failing over between the logics for at most
// 30 s.
func (p *failoverPusher) push(i int, room string) {
	p.pushWith(i, room, func(attempt int) string { return p.prefix + strconv.Itoa(i) + ":" + strconv.Itoa(attempt) })
}

// pushWith sends push i to room with the body body(attempt).
func (p *failoverPusher) pushWith(i int, room string, body func(attempt int) string) {
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 0; ; attempt++ {
		api := p.apis[(i+attempt)%len(p.apis)]
		status, code, err := pushAnswer(api+"/goim/push/room?operation=1000&type=live&room="+room, body(attempt))
		p.mu.Lock()
		if err == nil && status == http.StatusOK && code == 0 {
			p.acked++
			p.mu.Unlock()
			return
		}
		reason := fmt.Sprintf("HTTP %d code %d", status, code)
		if err != nil {
			reason = errorKind(err)
		}
		p.reasons[api+": "+reason]++
		p.failovers++
		if time.Now().After(deadline) {
			p.err = errors.Join(p.err, fmt.Errorf("push %d: no logic took it within 30 s; last answer %s", i, reason))
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		if attempt%len(p.apis) == len(p.apis)-1 {
			time.Sleep(100 * time.Millisecond) // every logic failed: a short pause
		}
	}
}

// errorKind sorts a transport error into a few kinds for the log.
func errorKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case strings.Contains(err.Error(), "EOF"):
		return "EOF"
	}
	return "transport error"
}

// ackedCount is how many pushes were answered code 0 so far.
func (p *failoverPusher) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked
}

// testRebalance streams room pushes (about 200 a second, six rooms with
// members on the three comets) while job-2 joins the group, logic-1 is
// killed and restarted (the pusher fails over to logic-2), and job-1
// leaves the group (SIGTERM). Every push reaches every member of its
// room; duplicates are counted: by job (the same attempt's body twice:
// a partition handed over before its last offsets were committed) and by
// the pusher (two attempts of one push both published).
func testRebalance(t *testing.T, sc *scaleCluster) {
	const rooms = 6
	c := sc.cluster
	// Members: one client per room and comet, TCP and WebSocket in turn.
	members := make([][]*client, rooms)
	var all []*client
	for r := range rooms {
		for i, host := range []string{"comet-1", "comet-2", "comet-3"} {
			cm := c.comets[host]
			tr, addr := "tcp", cm.tcp(c.ports)
			if (r+i)%2 == 1 {
				tr, addr = "ws", cm.ws(c.ports)
			}
			name := fmt.Sprintf("s%d-%d", r, i+1)
			cl := mustDial(t, c.top, name, tr, addr, authBody(int64(100+r*3+i), name, "live://scale-"+strconv.Itoa(r), "android", 1000), 5*time.Second)
			members[r] = append(members[r], cl)
			all = append(all, cl)
		}
	}
	defer func() {
		for _, cl := range all { // the mass reconnect kills comet-3: close first
			cl.close()
		}
	}()
	for r := range rooms {
		c.probeRoom(t, "scale-"+strconv.Itoa(r), members[r]...)
	}

	p := &failoverPusher{apis: []string{sc.logics[0].api, sc.logics[1].api}, prefix: "scale:", reasons: map[string]int{}}
	var (
		wg      sync.WaitGroup
		stop    = make(chan struct{})
		sentMu  sync.Mutex
		sent    int
		began   = time.Now()
		sendNow = make(chan int)
	)
	// Four senders, fed at 200 pushes a second.
	for range 4 {
		wg.Go(func() {
			for i := range sendNow {
				p.push(i, "scale-"+strconv.Itoa(i%rooms))
			}
		})
	}
	wg.Go(func() {
		defer close(sendNow)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			select {
			case <-stop:
				return
			case sendNow <- i:
				sentMu.Lock()
				sent = i + 1
				sentMu.Unlock()
			}
		}
	})
	stopped := false
	halt := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer halt()
	waitAcked := func(n int) {
		t.Helper()
		testkit.WaitFor(t, 60*time.Second, func() error {
			if got := p.ackedCount(); got < n {
				return fmt.Errorf("%d of %d pushes acknowledged", got, n)
			}
			return nil
		})
	}
	at := func() string { return time.Since(began).Round(time.Millisecond).String() }
	job1, job2 := sc.jobs["job-1"], sc.jobs["job-2"]
	sessions := func(j *scaleJob) float64 {
		v, err := metric(j.admin, "goim_job_group_sessions_total")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	// A job joins: the group rebalances and job-1 starts a new session
	// with part of the partitions.
	waitAcked(300)
	s1 := sessions(job1)
	sc.startJob(t, "job-2")
	sc.waitJobComets(t, "job-2", 3)
	testkit.WaitFor(t, 30*time.Second, func() error {
		job1.proc.failIfExited(t)
		if n := sessions(job1); n <= s1 {
			return fmt.Errorf("job-1 still in its first group session (%v sessions)", n)
		}
		return nil
	})
	waitReady(t, job1.proc, job1.admin)
	joined := p.ackedCount()
	t.Logf("rebalance: job-2 joined at %s; job-1 re-joined with its share (%d pushes acknowledged)", at(), joined)

	// A logic dies: the pusher fails over to the other one.
	waitAcked(joined + 300)
	logic1 := sc.logics[0]
	logic1.proc.kill()
	killed := p.ackedCount()
	t.Logf("rebalance: logic-1 killed (-9) at %s (%d acknowledged)", at(), killed)
	waitAcked(killed + 400)
	sc.startLogic(t, logic1)
	t.Logf("rebalance: logic-1 restarted and ready at %s (%d acknowledged while it was down)", at(), p.ackedCount()-killed)

	// A job leaves: job-2 takes every partition.
	waitAcked(p.ackedCount() + 300)
	s2 := sessions(job2)
	job1.proc.signal(t, syscall.SIGTERM)
	if err := job1.proc.waitExit(t, 30*time.Second); err != nil {
		t.Errorf("job-1 exited with %v after SIGTERM", err)
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		job2.proc.failIfExited(t)
		if n := sessions(job2); n <= s2 {
			return fmt.Errorf("job-2 still in the session it had before job-1 left (%v sessions)", n)
		}
		return nil
	})
	waitReady(t, job2.proc, job2.admin)
	left := p.ackedCount()
	t.Logf("rebalance: job-1 left (SIGTERM, exit 0) at %s; job-2 re-joined alone (%d acknowledged)", at(), left)
	waitAcked(left + 300)
	halt()
	sentMu.Lock()
	n := sent
	sentMu.Unlock()
	streamed := time.Since(began)
	if p.err != nil {
		t.Fatal(p.err)
	}
	if p.acked != n {
		t.Fatalf("%d pushes acknowledged of %d sent", p.acked, n)
	}

	// Every member receives every push of its room at least once.
	for r, cls := range members {
		want := 0
		for i := r; i < n; i += rooms {
			want++
		}
		for _, cl := range cls {
			testkit.WaitFor(t, 60*time.Second, func() error {
				if got := len(distinctPushes(cl.bodies(p.prefix))); got < want {
					_, err := cl.closed()
					return fmt.Errorf("%s: %d of %d pushes of live://scale-%d (connection error: %v)", cl.name, got, want, r, err)
				}
				return nil
			})
		}
	}
	var jobDups, pusherDups, deliveries int
	for _, cl := range all {
		bodies := cl.bodies(p.prefix)
		deliveries += len(bodies)
		seen := map[string]int{}
		for _, b := range bodies {
			seen[b]++
		}
		for _, k := range seen {
			jobDups += k - 1
		}
		pusherDups += len(seen) - len(distinctPushes(bodies))
	}
	reasons := make([]string, 0, len(p.reasons))
	for k, v := range p.reasons {
		reasons = append(reasons, fmt.Sprintf("%s x%d", k, v))
	}
	slices.Sort(reasons)
	t.Logf("rebalance: %d pushes in %v (%.0f/s), all delivered to the %d members of their rooms (%d deliveries); duplicates: %d by job (redelivered after a rebalance), %d by the pusher's retries; %d failovers: %s",
		n, streamed.Round(time.Millisecond), float64(n)/streamed.Seconds(), len(all), deliveries, jobDups, pusherDups, p.failovers, strings.Join(reasons, "; "))
	for _, j := range []*scaleJob{job1, job2} {
		t.Logf("rebalance: %s group sessions: %s", j.name, strings.Join(groupSessions(j.proc.log()), "; "))
	}
	if p.failovers == 0 {
		t.Errorf("no push failed over while logic-1 was down: the outage tested nothing")
	}
	// A rebalance hands a partition back only after its pushes in flight
	// finished and their offsets were committed (docs/operations.md: a
	// clean stop repeats nothing), so only a killed job redelivers.
	if jobDups != 0 {
		t.Errorf("%d deliveries repeated by job across two clean rebalances, want 0", jobDups)
	}
}

// distinctPushes maps the bodies "<prefix><i>:<attempt>" to the distinct
// push numbers i.
func distinctPushes(bodies []string) map[string]bool {
	out := make(map[string]bool, len(bodies))
	for _, b := range bodies {
		i, _, _ := strings.Cut(b[strings.IndexByte(b, ':')+1:], ":")
		out[i] = true
	}
	return out
}

// groupSessions returns the "generation=... claims=..." part of each
// group session job logged, in order.
func groupSessions(log string) []string {
	var out []string
	for line := range strings.SplitSeq(log, "\n") {
		if !strings.Contains(line, "job: group session") {
			continue
		}
		if i := strings.Index(line, "generation="); i >= 0 {
			out = append(out, line[i:])
		}
	}
	return out
}
