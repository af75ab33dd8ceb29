package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/testkit"
	"github.com/twmb/franz-go/pkg/kfake"
)

// addressKeys are the only keys TestShippedConfigs changes in the shipped
// files: listen and dial addresses, which an operator sets per host (the
// secret and key files the configs name under /etc/goim/ are written by
// testkit.ShippedConfig into the test's directory instead).
var addressKeys = []string{
	"http.bind", "rpc.bind", "admin.addr", "tcp.bind", "websocket.bind",
	"redis.addr", "kafka.brokers", "discovery.nodes",
}

// shippedConfig copies configs/<name> with its /etc/goim/ files written
// (files: name -> contents) and the address keys of set replaced (key path
// "section.key" -> TOML value), and returns the copy's path. Every key of
// set must be one of addressKeys and appear exactly once in the file.
func shippedConfig(t *testing.T, name string, files, set map[string]string) string {
	t.Helper()
	path := testkit.ShippedConfig(t, filepath.Join("..", "..", "configs", name), files)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for key, value := range set {
		if !slices.Contains(addressKeys, key) {
			t.Fatalf("%s: %s is not an address key; the test may change only %v", name, key, addressKeys)
		}
		text = setKey(t, name, text, key, value)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// setKey replaces the value of key path ("section.key") in the TOML text
// of a shipped file, which lists every key once, one per line.
func setKey(t *testing.T, name, text, path, value string) string {
	t.Helper()
	section, key, _ := strings.Cut(path, ".")
	lines := strings.Split(text, "\n")
	current, found := "", -1
	keyLine := regexp.MustCompile(`^` + regexp.QuoteMeta(key) + `\s*=`)
	for i, line := range lines {
		if s, ok := strings.CutPrefix(line, "["); ok && strings.HasSuffix(s, "]") {
			current = strings.TrimSuffix(s, "]")
			continue
		}
		if current == section && keyLine.MatchString(line) {
			if found >= 0 {
				t.Fatalf("%s: %s twice", name, path)
			}
			found = i
		}
	}
	if found < 0 {
		t.Fatalf("%s: no line %s in [%s]", name, key, section)
	}
	lines[found] = key + " = " + value
	return strings.Join(lines, "\n")
}

// list is a TOML array of one string.
func list(s string) string { return "[" + strconv.Quote(s) + "]" }

// TestShippedConfigs runs logic, job and a comet on configs/logic.toml,
// job.toml and comet.toml as shipped, with only their addresses moved to
// free loopback ports and their /etc/goim/ secret files written, beside
// the discovery server (cmd/discovery with its default env, zone and
// region), a redis-server and kfake holding the shipped topic: the comet
// registers, finds logic through discovery, job finds the comet, and
// clients with signed tokens (HS256 from hmac_key_file, a rooms claim)
// get a key, a user, a room and a broadcast push.
func TestShippedConfigs(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs every service")
	}
	began := time.Now()
	bin := buildBinaries(t)
	t.Logf("binaries built in %v", time.Since(began).Round(time.Millisecond))
	addrs := freeAddrs(t, 11)
	discAddr := addrs[0]
	disc := startProcess(t, t, "discovery", bin.discovery, "-listen", discAddr)
	waitDiscovery(t, disc, discAddr)

	_, redisPort, _ := net.SplitHostPort(addrs[1])
	port, _ := strconv.Atoi(redisPort)
	redis := testkit.StartRedisServer(t, port)
	// The shipped topic, with the partitions a small cluster might give it.
	kafka, _ := testkit.Kafka(t, 1, kfake.SeedTopics(4, "goim-push-topic"))

	hmacKey := []byte(testkit.RandomHex(32))
	rpcSecret := testkit.RandomHex(32) + "\n"
	nodes := list(discAddr)
	brokers := list(kafka.ListenAddrs()[0])

	logicConf := shippedConfig(t, "logic.toml", map[string]string{
		"rpc.secret":   rpcSecret,
		"http-tokens":  "# the push API's token\n" + apiToken + "\n",
		"jwt-hmac.key": string(hmacKey) + "\n",
	}, map[string]string{
		"http.bind":       strconv.Quote(addrs[2]),
		"rpc.bind":        strconv.Quote(addrs[3]),
		"admin.addr":      strconv.Quote(addrs[4]),
		"redis.addr":      strconv.Quote(redis.Addr()),
		"kafka.brokers":   brokers,
		"discovery.nodes": nodes,
	})
	cometTCP, cometWS, cometAdmin, jobAdmin := addrs[5], addrs[6], addrs[8], addrs[9]
	cometConf := shippedConfig(t, "comet.toml", map[string]string{"rpc.secret": rpcSecret}, map[string]string{
		"tcp.bind":        list(cometTCP),
		"websocket.bind":  list(cometWS),
		"rpc.bind":        strconv.Quote(addrs[7]),
		"admin.addr":      strconv.Quote(cometAdmin),
		"discovery.nodes": nodes,
	})
	jobConf := shippedConfig(t, "job.toml", map[string]string{"rpc.secret": rpcSecret}, map[string]string{
		"kafka.brokers":   brokers,
		"admin.addr":      strconv.Quote(jobAdmin),
		"discovery.nodes": nodes,
	})

	// Logic first (comets find it in discovery), then the comet, then job
	// (ready once it follows the comet and is in its consumer group).
	api := "http://" + addrs[2]
	lp := startProcess(t, t, "logic", bin.logic, "-conf", logicConf)
	waitReady(t, lp, addrs[4])
	t.Logf("logic ready at %v", time.Since(began).Round(time.Millisecond))
	cp := startProcess(t, t, "comet", bin.comet, "-conf", cometConf)
	waitReady(t, cp, cometAdmin)
	t.Logf("comet ready at %v", time.Since(began).Round(time.Millisecond))
	jp := startProcess(t, t, "job", bin.job, "-conf", jobConf)
	waitReady(t, jp, jobAdmin)
	waitMetric(t, 20*time.Second, jobAdmin, "goim_job_comets", "", 1)
	t.Logf("discovery, logic, comet and job ready in %v (build included)", time.Since(began).Round(time.Millisecond))

	// Two users: a TCP client allowed into live://1000 only, a WebSocket
	// client allowed into every live:// room. Both join live://1000.
	tcp := mustDial(t, t, "tcp-1001", "tcp", cometTCP,
		tokenAuth(signToken(t, hmacKey, 1001, []string{"live://1000"}), "live://1000", 1000), 10*time.Second)
	wsc := mustDial(t, t, "ws-1002", "ws", cometWS,
		tokenAuth(signToken(t, hmacKey, 1002, []string{"live://*"}), "live://1000", 1000), 10*time.Second)

	// The backend addresses a connection by its key, which logic chose:
	// read it where logic keeps it (its Redis, through its own code).
	key := connectionKey(t, logicConf, 1001)

	pushOK(t, api+"/goim/push/keys?operation=1000&keys="+key, "key:1001")
	pushOK(t, api+"/goim/push/mids?operation=1000&mids=1002", "mid:1002")
	pushOK(t, api+"/goim/push/room?operation=1000&type=live&room=1000", "room:live://1000")
	pushOK(t, api+"/goim/push/all?operation=1000", "all:everyone")

	want := map[*client][]string{
		tcp: {"key:1001", "room:live://1000", "all:everyone"},
		wsc: {"mid:1002", "room:live://1000", "all:everyone"},
	}
	for cl, bodies := range want {
		testkit.WaitFor(t, 20*time.Second, func() error {
			for _, p := range []*process{lp, cp, jp} {
				p.failIfExited(t)
			}
			var got []string
			for _, p := range cl.received() {
				got = append(got, p.body)
			}
			slices.Sort(got)
			w := slices.Sorted(slices.Values(bodies))
			if !slices.Equal(got, w) {
				return fmt.Errorf("%s received %q, want %q", cl.name, got, w)
			}
			return nil
		})
	}
	t.Logf("four pushes delivered %v after start", time.Since(began).Round(time.Millisecond))
}

// waitDiscovery waits until the discovery server at addr answers.
func waitDiscovery(t *testing.T, p *process, addr string) {
	t.Helper()
	testkit.WaitFor(t, 20*time.Second, func() error {
		p.failIfExited(t)
		// Any JSON answer means it serves (an unknown app is code -404).
		resp, err := httpClient.Get("http://" + addr + "/discovery/fetch?appid=goim.comet&env=dev&status=1")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// connectionKey returns the key of mid's only connection, from the Redis
// the logic config at path uses.
func connectionKey(t *testing.T, path string, mid int64) string {
	t.Helper()
	cfg, err := logic.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := dao.NewRedis(cfg.Redis, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	servers, err := r.KeysByMids(ctx, []int64{mid})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, ks := range servers {
		keys = append(keys, ks...)
	}
	if len(keys) != 1 {
		t.Fatalf("mid %d has keys %v, want one", mid, keys)
	}
	return keys[0]
}
