package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/testkit"
	"github.com/twmb/franz-go/pkg/kfake"
)

// heartbeat is the clients' heartbeat period, logic's [node] heartbeat.
// Short, so that after a Redis restart (once the comets have seen logic's
// new Redis epoch in a report) the next heartbeat re-creates each session
// within about a second.
const heartbeat = time.Second

// comet is one comet process and where it listens. Every comet listens on
// the same ports (cluster.ports) on an address of its own, because
// /goim/nodes/weighted gives clients one tcp_port and ws_port for all
// nodes.
type comet struct {
	host string // server id: comet-1, comet-2
	ip   string // 127.0.0.2, 127.0.0.3
	conf string // config file
	proc *process
}

func (c *comet) tcp(p cometPorts) string   { return net.JoinHostPort(c.ip, strconv.Itoa(p.tcp)) }
func (c *comet) ws(p cometPorts) string    { return net.JoinHostPort(c.ip, strconv.Itoa(p.ws)) }
func (c *comet) admin(p cometPorts) string { return net.JoinHostPort(c.ip, strconv.Itoa(p.admin)) }

// cometPorts are the ports every comet uses on its own address.
type cometPorts struct{ tcp, ws, rpc, admin int }

// cluster is the suite's goim: discovery, Redis, Kafka, logic, job and two
// comets, each service a process of its own.
type cluster struct {
	top *testing.T // owns every process, client and temporary file
	bin binaries

	env       string // discovery env of this run
	discovery string // the discovery server's host:port

	// A redis-server of the suite's own on its own port, not the shared
	// test Redis on 127.0.0.1:6379: the suite stops and restarts Redis,
	// which would break the tests of other packages that run in parallel
	// against the shared one. The key prefix is unique all the same.
	redis  *testkit.RedisServer
	prefix string

	kafka *kfake.Cluster // in-process, 4 partitions
	topic string

	logic      *process
	api        string // logic's HTTP base URL
	logicRPC   string
	logicAdmin string

	job      *process
	jobAdmin string
	group    string

	ports  cometPorts
	comets map[string]*comet

	runs    map[string]int // processes started per service name
	jobConf string

	// logicExtra is appended to logic's config (sections of its own, such
	// as [stream]); empty for the suite's main cluster.
	logicExtra string

	// Secret files every generated config points to: the push API
	// tokens (apiToken, readToken) and the internal gRPC secret
	// (rpcSecret) that logic, job and the comets share.
	tokensFile, readTokensFile string
	rpcSecret, rpcSecretFile   string
}

// startDiscovery runs cmd/discovery on c.discovery and waits until it
// serves.
func (c *cluster) startDiscovery(t *testing.T) {
	t.Helper()
	disc := startProcess(t, t, "discovery", c.bin.discovery, "-listen", c.discovery)
	testkit.WaitFor(t, 20*time.Second, func() error {
		disc.failIfExited(t)
		// Any JSON answer means it serves (an unknown app is code -404).
		resp, err := http.Get("http://" + c.discovery + "/discovery/fetch?appid=goim.comet&env=" + c.env + "&status=1")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// startCluster builds the binaries and starts discovery, Redis, Kafka,
// logic, two comets and job, each ready.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	return startClusterWith(t, "")
}

// startClusterWith is startCluster with logicExtra appended to logic's
// config.
func startClusterWith(t *testing.T, logicExtra string) *cluster {
	t.Helper()
	c := &cluster{top: t, env: "e2e-" + testkit.RandomHex(4), prefix: "e2e:" + testkit.RandomHex(6) + ":",
		group: "e2e-job-" + testkit.RandomHex(4), comets: map[string]*comet{}, runs: map[string]int{},
		logicExtra: logicExtra}
	c.bin = buildBinaries(t)
	c.writeSecrets(t)

	addrs := freeAddrs(t, 6)
	c.discovery = addrs[0]
	c.startDiscovery(t)

	_, redisPort, _ := net.SplitHostPort(addrs[1])
	port, _ := strconv.Atoi(redisPort)
	c.redis = testkit.StartRedisServer(t, port)
	c.kafka, c.topic = testkit.Kafka(t, 4)

	c.ports = freeCometPorts(t, "127.0.0.2", "127.0.0.3")
	c.startLogic(t, addrs[2], addrs[3], addrs[4])
	c.jobAdmin = addrs[5]
	c.startComet(t, "comet-1", "127.0.0.2")
	c.startComet(t, "comet-2", "127.0.0.3")
	c.startJob(t)
	return c
}

// discoveryConf is a [discovery] section: this run's server and env, and
// quick fetches so that membership changes show within a second.
func (c *cluster) discoveryConf() string {
	return `[discovery]
nodes = ["` + c.discovery + `"]
env = "` + c.env + `"
poll_timeout = "5s"
fetch_interval = "500ms"
`
}

// writeSecrets writes the suite's secret files, as an operator would:
// one secret per line, mode 0600, comments allowed in token files.
func (c *cluster) writeSecrets(t *testing.T) {
	t.Helper()
	c.rpcSecret, c.rpcSecretFile = testkit.RPCSecret(t)
	c.tokensFile = c.writeSecret(t, "http-tokens", "# push API tokens (push and read scope)\n"+apiToken+"\n")
	c.readTokensFile = c.writeSecret(t, "http-read-tokens", readToken+"\n")
}

// writeSecret writes text to a file of its own in the suite's temporary
// directory and returns its path.
func (c *cluster) writeSecret(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(c.top.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// httpCredentials are the [http] keys of a logic serving the suite: its
// token files.
func (c *cluster) httpCredentials() string {
	return `tokens_file = "` + c.tokensFile + `"
read_tokens_file = "` + c.readTokensFile + `"
`
}

// rpcSecretConf is the [rpc] key every service of the suite gets: the
// shared internal gRPC secret's file.
func (c *cluster) rpcSecretConf() string {
	return `secret_file = "` + c.rpcSecretFile + `"
`
}

// writeConf writes a config file into the suite's temporary directory.
func (c *cluster) writeConf(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(c.top.TempDir(), name+".toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (c *cluster) startLogic(t *testing.T, httpAddr, rpcAddr, adminAddr string) {
	t.Helper()
	c.api = "http://" + httpAddr
	c.logicRPC, c.logicAdmin = rpcAddr, adminAddr
	path := c.writeConf(t, "logic", `host = "logic-e2e"
shutdown_timeout = "5s"
[http]
bind = "`+httpAddr+`"
`+c.httpCredentials()+`[rpc]
bind = "`+c.logicRPC+`"
`+c.rpcSecretConf()+`# goim v2's plain JSON auth: the suite's clients choose their keys and
# rooms (signedPair runs a logic in signed mode).
[auth]
insecure = true
[node]
tcp_port = `+strconv.Itoa(c.ports.tcp)+`
ws_port = `+strconv.Itoa(c.ports.ws)+`
heartbeat = "`+heartbeat.String()+`"
heartbeat_max = 10
[online]
refresh = "1s"
[redis]
addr = "`+c.redis.Addr()+`"
prefix = "`+c.prefix+`"
# A comet killed without a final report leaves the online totals after
# this (a few report intervals).
online_ttl = "5s"
[kafka]
brokers = ["`+c.kafka.ListenAddrs()[0]+`"]
topic = "`+c.topic+`"
[admin]
addr = "`+c.logicAdmin+`"
`+c.discoveryConf()+c.logicExtra)
	c.logic = startProcess(t, c.top, "logic", c.bin.logic, "-conf", path)
	waitReady(t, c.logic, c.logicAdmin)
}

// startComet starts comet host on ip (or restarts it with its config).
func (c *cluster) startComet(t *testing.T, host, ip string) *comet {
	t.Helper()
	cm := c.comets[host]
	if cm == nil {
		cm = &comet{host: host, ip: ip}
		a := func(port int) string { return strconv.Quote(net.JoinHostPort(ip, strconv.Itoa(port))) }
		cm.conf = c.writeConf(t, host, `host = "`+host+`"
[tcp]
bind = [`+a(c.ports.tcp)+`]
[websocket]
bind = [`+a(c.ports.ws)+`]
[rpc]
bind = `+a(c.ports.rpc)+`
`+c.rpcSecretConf()+`[logic]
addrs = ["`+c.logicRPC+`"]
report_interval = "1s"
[node]
addrs = ["`+ip+`"]
[drain]
window = "1s"
grace = "5s"
[admin]
addr = `+a(c.ports.admin)+`
# [limits] keeps the production defaults (per IP: 1000 connections, 20
# handshakes a second, 16 waiting for logic; 50 frames a second per
# connection): the suite's long-lived clients make a few handshakes from
# 127.0.0.1 over the whole run, and the security tests dial from source
# addresses of their own (127.0.0.x), so that the per-IP state one test
# builds never limits another.
`+c.discoveryConf())
		c.comets[host] = cm
	}
	c.runs[host]++
	cm.proc = startProcess(t, c.top, fmt.Sprintf("%s-run%d", host, c.runs[host]), c.bin.comet, "-conf", cm.conf)
	waitReady(t, cm.proc, cm.admin(c.ports))
	return cm
}

// startJob starts a job process (the first, or one replacing a killed one:
// same group, same config) and waits until it is ready: it knows comets
// and is in a consumer group session.
func (c *cluster) startJob(t *testing.T) *process {
	t.Helper()
	c.runs["job"]++
	if c.runs["job"] == 1 {
		c.jobConf = c.writeConf(t, "job", `host = "job-e2e"
shutdown_timeout = "5s"
[kafka]
brokers = ["`+c.kafka.ListenAddrs()[0]+`"]
topic = "`+c.topic+`"
group = "`+c.group+`"
# kfake's minimum: a killed job's partitions move after this.
session_timeout = "6s"
[rpc]
`+c.rpcSecretConf()+`# Deferred deliveries are reported to the logic found in discovery.
[logic]
addrs = []
[admin]
addr = "`+c.jobAdmin+`"
`+c.discoveryConf())
	}
	c.job = startProcess(t, c.top, fmt.Sprintf("job-run%d", c.runs["job"]), c.bin.job, "-conf", c.jobConf)
	waitReady(t, c.job, c.jobAdmin)
	return c.job
}

// waitReady waits until p's admin listener answers /readyz with 200,
// failing at once if p exits.
func waitReady(t *testing.T, p *process, admin string) {
	t.Helper()
	testkit.WaitFor(t, 30*time.Second, func() error {
		p.failIfExited(t)
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /readyz: %d %s", p.name, resp.StatusCode, b)
		}
		return nil
	})
}

// metric sums every series of the Prometheus metric name (any labels)
// that admin serves on /metrics.
func metric(admin, name string) (float64, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest == "" || (rest[0] != ' ' && rest[0] != '{')) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", name, line, err)
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("no series %s at %s", name, admin)
	}
	return sum, nil
}

// series returns every series of the Prometheus metric name that admin
// serves on /metrics, by label set as exposed (`reason="drain"`; "" for a
// series without labels).
func series(admin, name string) (map[string]float64, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		labels := ""
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				return nil, fmt.Errorf("%s: %q: no closing brace", name, line)
			}
			labels = rest[1:end]
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", name, line, err)
		}
		out[labels] = v
	}
	return out, sc.Err()
}

// metricWith is the value of the series of name with exactly the label
// set labels (`reason="room_denied"`) at admin; 0 when there is no such
// series (a counter not yet counted).
func metricWith(admin, name, labels string) (float64, error) {
	all, err := series(admin, name)
	if err != nil {
		return 0, err
	}
	return all[labels], nil
}

// waitMetric waits until the series of name with labels at admin reaches
// at least want.
func waitMetric(t *testing.T, timeout time.Duration, admin, name, labels string, want float64) {
	t.Helper()
	testkit.WaitFor(t, timeout, func() error {
		v, err := metricWith(admin, name, labels)
		if err != nil {
			return err
		}
		if v < want {
			return fmt.Errorf("%s{%s} at %s is %v, want >= %v", name, labels, admin, v, want)
		}
		return nil
	})
}

// freeAddrs returns n distinct 127.0.0.1 addresses whose ports were free
// a moment ago, all held open together so that none is handed out twice.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		out[i] = l.Addr().String()
	}
	return out
}

// freeCometPorts finds four ports that are free on every one of ips at
// once (the comets share port numbers on different addresses).
func freeCometPorts(t *testing.T, ips ...string) cometPorts {
	t.Helper()
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for try := 0; len(ports) < 4; try++ {
		if try == 100 {
			t.Fatalf("no port free on all of %v after 100 tries", ips)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		for _, ip := range ips[1:] {
			l2, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l2)
		}
		if ok {
			ports = append(ports, port)
		}
	}
	return cometPorts{tcp: ports[0], ws: ports[1], rpc: ports[2], admin: ports[3]}
}
