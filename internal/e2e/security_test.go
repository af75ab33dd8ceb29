package e2e

// The tests of "secure by default": one per finding of the security
// review, each run against the services as separate processes, each
// failing on a goim that has the finding and passing once it is fixed.
//
//	finding                                       subtest of "security"          function
//	1  push API open                              1-push-api-credentials         testPushAPICredentials
//	2  internal gRPC open                         2-rpc-secret                   testRPCSecret
//	3  room claim bypassed by op 12               3-room-claim                   testRoomClaim
//	4  unbounded metric series (unknown ops)      4-unknown-ops                  testUnknownOps
//	5  room ids unbounded                         5-room-ids                     testRoomIDs
//	6  a slow broadcast blocks the rest           6-paced-broadcast              testPacedBroadcast
//	7  key re-use loses the session               7-key-reuse                    testKeyReuse
//	8  limits off and resettable: auth loops      8-auth-loop                    testAuthLoop
//	9  fan-out amplification (keys, mids, speed)  9-fan-out-caps                 testFanOutCaps
//	8  ... and a bad-token flood starves auth     10-garbage-token-flood         testGarbageTokenFlood
//	10 secrets only in clear text in the TOML     11-secrets-from-files-and-env  testSecretsFromFilesAndEnv
//
// The subtests share the suite's cluster (the main logic runs goim v2's
// insecure auth, so that clients can choose their keys: findings 4, 5,
// 7, 8) and a signed-mode logic and comet started for them (signedPair:
// findings 3, 10, 11). Every test that makes handshakes dials from source
// addresses of its own (127.0.0.x), because comets keep per-IP state:
//
//	127.0.0.10       room ids             127.0.0.14-18  unknown ops
//	127.0.0.11       key re-use           127.0.0.20     room claim
//	127.0.0.12       auth loop            127.0.0.30-33  bad-token flood
//	127.0.0.13       paced broadcast      127.0.0.34     good clients in the flood
//
// The comets run with the production [limits] defaults: 20 handshakes a
// second per IP (burst 20), 16 per IP waiting for logic, 50 frames a
// second per connection.

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/testkit"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// testSecurity runs the findings' tests. A failing one does not stop the
// others: each says which finding it shows.
func testSecurity(t *testing.T, c *cluster, cs *clients) {
	sp := c.startSignedPair(t)
	onComet1 := 0 // the suite's clients on comet-1
	for _, cl := range cs.all() {
		if host, _, _ := net.SplitHostPort(cl.addr); host == c.comets["comet-1"].ip {
			onComet1++
		}
	}
	for _, s := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"1-push-api-credentials", func(t *testing.T) { testPushAPICredentials(t, c) }},
		{"2-rpc-secret", func(t *testing.T) { testRPCSecret(t, c) }},
		{"3-room-claim", func(t *testing.T) { testRoomClaim(t, sp) }},
		{"4-unknown-ops", func(t *testing.T) { testUnknownOps(t, c) }},
		{"5-room-ids", func(t *testing.T) { testRoomIDs(t, c) }},
		{"6-paced-broadcast", func(t *testing.T) { testPacedBroadcast(t, c) }},
		{"7-key-reuse", func(t *testing.T) { testKeyReuse(t, c) }},
		{"8-auth-loop", func(t *testing.T) { testAuthLoop(t, c, onComet1) }},
		{"9-fan-out-caps", func(t *testing.T) { testFanOutCaps(t, c) }},
		{"10-garbage-token-flood", func(t *testing.T) { testGarbageTokenFlood(t, sp) }},
		{"11-secrets-from-files-and-env", func(t *testing.T) { testSecretsFromFilesAndEnv(t, c, sp) }},
	} {
		began := time.Now()
		t.Run(s.name, s.run)
		t.Logf("%s: %v", s.name, time.Since(began).Round(time.Millisecond))
	}
	// The suite's own clients lived through all of it.
	for _, cl := range cs.all() {
		if done, err := cl.closed(); done {
			t.Errorf("%s was disconnected during the security tests: %v", cl.name, err)
		}
	}
}

// metricSum sums every series of name at admin; 0 when there is none.
func metricSum(admin, name string) (float64, error) {
	all, err := series(admin, name)
	var sum float64
	for _, v := range all {
		sum += v
	}
	return sum, err
}

// eventually polls cond every 5 ms until it returns nil or timeout
// passes, and returns its last error: a wait whose failure the caller
// reports and goes on from (testkit.WaitFor ends the test).
func eventually(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantUnauthorized checks a 401 answer: the -401 envelope and a Bearer
// challenge.
func wantUnauthorized(t *testing.T, r response, what string) {
	t.Helper()
	r.envelope(t, what, -401, false)
	if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(strings.ToLower(h), "bearer") {
		t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge", what, h)
	}
}

// testPushAPICredentials (finding 1): without a credential, or with a
// wrong one, every push and read endpoint answers 401 with the -401
// envelope and a Bearer challenge; a read-scope token may read but not
// push (403); the suite's token may do both; /goim/nodes/weighted, which
// clients call, stays public. Refusals are counted by reason.
func testPushAPICredentials(t *testing.T, c *cluster) {
	const failures = "goim_logic_http_auth_failures_total"
	before := map[string]float64{}
	for _, reason := range []string{"missing", "invalid", "forbidden"} {
		before[reason], _ = metricWith(c.logicAdmin, failures, `reason="`+reason+`"`)
	}
	wrong := "e2e-wrong-" + testkit.RandomHex(16)
	pushes := []string{ // targets nobody: op 1999 is accepted by no client
		"/goim/push/keys?operation=1999&keys=nobody",
		"/goim/push/mids?operation=1999&mids=999999",
		"/goim/push/room?operation=1999&type=live&room=nobody",
		"/goim/push/all?operation=1999",
	}
	for _, path := range pushes {
		send := func(token string) response {
			r, err := do(http.MethodPost, c.api+path, strings.NewReader("security"), bearer(token))
			if err != nil {
				t.Fatalf("POST %s: %v", path, err)
			}
			return r
		}
		wantUnauthorized(t, send(""), "POST "+path+" without a credential")
		wantUnauthorized(t, send(wrong), "POST "+path+" with a wrong token")
		send(readToken).envelope(t, "POST "+path+" with a read-scope token", -403, false)
		send(apiToken).pushAccepted(t, "POST "+path+" with the push token")
	}
	reads := []string{
		"/goim/online/total",
		"/goim/online/top?type=live&limit=5",
		"/goim/online/room?type=live&rooms=1000",
		"/goim/nodes/instances", // lists the comets' grpc:// addresses
		"/nodes/instances",
	}
	for _, path := range reads {
		get := func(token string) response {
			r, err := do(http.MethodGet, c.api+path, nil, bearer(token))
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			return r
		}
		wantUnauthorized(t, get(""), "GET "+path+" without a credential")
		wantUnauthorized(t, get(wrong), "GET "+path+" with a wrong token")
		get(readToken).envelope(t, "GET "+path+" with a read-scope token", 0, true)
		get(apiToken).envelope(t, "GET "+path+" with the push token", 0, true)
	}
	r, err := do(http.MethodGet, c.api+"/goim/nodes/weighted?platform=web", nil, bearer(""))
	if err != nil {
		t.Fatal(err)
	}
	r.envelope(t, "GET /goim/nodes/weighted without a credential", 0, true)

	for reason, n := range map[string]int{"missing": len(pushes) + len(reads), "invalid": len(pushes) + len(reads), "forbidden": len(pushes)} {
		waitMetric(t, 5*time.Second, c.logicAdmin, failures, `reason="`+reason+`"`, before[reason]+float64(n))
	}
}

// testRPCSecret (finding 2): logic's and a comet's gRPC servers refuse
// calls without the suite's secret, or with a wrong one, as
// Unauthenticated, and count them; with the secret the same connection
// works. The forged calls are the attacks of the finding (a draining
// report hides a comet, a heartbeat rewrites a session's routing, a
// broadcast reaches every client); their targets are made up, so that a
// goim that accepts them does no lasting harm to the suite.
func testRPCSecret(t *testing.T, c *cluster) {
	cm := c.comets["comet-1"]
	logicCl := logicpb.NewLogicClient(grpcConn(t, c.logicRPC))
	cometCl := cometpb.NewCometClient(grpcConn(t, net.JoinHostPort(cm.ip, strconv.Itoa(c.ports.rpc))))
	logicBefore, _ := metricSum(c.logicAdmin, "goim_logic_rpc_unauthenticated_total")
	cometBefore, _ := metricSum(cm.admin(c.ports), "goim_comet_rpc_unauthenticated_total")

	forged := "forged-" + testkit.RandomHex(4)
	frame := &protocol.Proto{Ver: 1, Op: 1999, Body: []byte("forged")}
	logicCalls := []struct {
		name string
		call func(secret string) error
	}{
		{"RenewOnline{draining: true}", func(s string) error {
			_, err := logicCl.RenewOnline(withSecret(t, s), &logicpb.OnlineReq{Server: forged, Draining: true})
			return err
		}},
		{"Heartbeat", func(s string) error {
			_, err := logicCl.Heartbeat(withSecret(t, s), &logicpb.HeartbeatReq{Mid: 999999, Key: forged, Server: forged})
			return err
		}},
		{"Connect", func(s string) error {
			_, err := logicCl.Connect(withSecret(t, s), &logicpb.ConnectReq{Server: forged, Token: []byte(authBody(999999, forged, "", "web"))})
			return err
		}},
		{"Disconnect", func(s string) error {
			_, err := logicCl.Disconnect(withSecret(t, s), &logicpb.DisconnectReq{Mid: 999999, Key: forged, Server: forged})
			return err
		}},
	}
	cometCalls := []struct {
		name string
		call func(secret string) error
	}{
		{"Broadcast", func(s string) error {
			_, err := cometCl.Broadcast(withSecret(t, s), &cometpb.BroadcastReq{ProtoOp: 1999, Proto: frame})
			return err
		}},
		{"BroadcastRoom", func(s string) error {
			_, err := cometCl.BroadcastRoom(withSecret(t, s), &cometpb.BroadcastRoomReq{RoomID: "live://" + forged, Proto: frame})
			return err
		}},
		{"PushMsg", func(s string) error {
			_, err := cometCl.PushMsg(withSecret(t, s), &cometpb.PushMsgReq{Keys: []string{forged}, ProtoOp: 1999, Proto: frame})
			return err
		}},
		{"Rooms", func(s string) error {
			_, err := cometCl.Rooms(withSecret(t, s), &cometpb.RoomsReq{})
			return err
		}},
	}
	wrong := "e2e-rpc-wrong-" + testkit.RandomHex(24)
	refuse := func(server, name string, call func(string) error) {
		for _, secret := range []string{"", wrong} {
			what := fmt.Sprintf("%s %s without the secret", server, name)
			if secret != "" {
				what = fmt.Sprintf("%s %s with a wrong secret", server, name)
			}
			if err := call(secret); status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s: %v (code %v), want Unauthenticated", what, err, status.Code(err))
			}
		}
	}
	for _, lc := range logicCalls {
		refuse("logic", lc.name, lc.call)
	}
	for _, cc := range cometCalls {
		refuse("comet", cc.name, cc.call)
	}

	// With the secret, the same connections work.
	if _, err := logicCl.Nodes(withSecret(t, c.rpcSecret), &logicpb.NodesReq{Platform: "web"}); err != nil {
		t.Errorf("logic Nodes with the secret: %v", err)
	}
	if _, err := cometCl.Rooms(withSecret(t, c.rpcSecret), &cometpb.RoomsReq{}); err != nil {
		t.Errorf("comet Rooms with the secret: %v", err)
	}
	if _, err := cometCl.Broadcast(withSecret(t, c.rpcSecret), &cometpb.BroadcastReq{ProtoOp: 1999, Proto: frame}); err != nil {
		t.Errorf("comet Broadcast with the secret: %v", err)
	}

	for _, m := range []struct {
		admin, name string
		want        float64
	}{
		{c.logicAdmin, "goim_logic_rpc_unauthenticated_total", logicBefore + float64(2*len(logicCalls))},
		{cm.admin(c.ports), "goim_comet_rpc_unauthenticated_total", cometBefore + float64(2*len(cometCalls))},
	} {
		if err := eventually(5*time.Second, func() error {
			v, err := metricSum(m.admin, m.name)
			if err == nil && v < m.want {
				err = fmt.Errorf("%s at %s is %v, want >= %v", m.name, m.admin, v, m.want)
			}
			return err
		}); err != nil {
			t.Error(err)
		}
	}
}

// testFanOutCaps (finding 9): one push request carries at most
// http.max_keys (1,000) keys or max_mids (1,000) mids; more answer -400
// naming the bound and publish nothing. speed is bounded too.
func testFanOutCaps(t *testing.T, c *cluster) {
	list := func(n int, f func(int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = f(i)
		}
		return strings.Join(parts, ",")
	}
	key := func(i int) string { return "cap-" + strconv.Itoa(i) }
	mid := func(i int) string { return strconv.Itoa(5_000_000 + i) } // nobody's
	for _, tc := range []struct {
		name, path string
		code       int
		param      string // the -400 message starts with "<param>: " and names the bound
		bound      string
	}{
		{name: "1000 keys", path: "/goim/push/keys?operation=1999&keys=" + list(1000, key), code: 0},
		{name: "1001 keys", path: "/goim/push/keys?operation=1999&keys=" + list(1001, key), code: -400, param: "keys", bound: "1000"},
		{name: "1001 keys in two parameters", path: "/goim/push/keys?operation=1999&keys=" + list(1000, key) + "&keys=cap-x", code: -400, param: "keys", bound: "1000"},
		{name: "1000 mids", path: "/goim/push/mids?operation=1999&mids=" + list(1000, mid), code: 0},
		{name: "1001 mids", path: "/goim/push/mids?operation=1999&mids=" + list(1001, mid), code: -400, param: "mids", bound: "1000"},
		{name: "speed 1000000", path: "/goim/push/all?operation=1999&speed=1000000", code: 0},
		{name: "speed 1000001", path: "/goim/push/all?operation=1999&speed=1000001", code: -400, param: "speed", bound: "1000000"},
	} {
		r := mustDo(t, http.MethodPost, c.api+tc.path, strings.NewReader("cap"))
		if tc.code == 0 {
			r.pushAccepted(t, tc.name)
			continue
		}
		e := r.envelope(t, tc.name, tc.code, false)
		if !strings.HasPrefix(e.Message, tc.param+": ") || !strings.Contains(e.Message, tc.bound) {
			t.Errorf("%s: message %q, want it about %s naming the bound %s", tc.name, e.Message, tc.param, tc.bound)
		}
	}
}

// testSecretsFromFilesAndEnv (finding 10, and the secure defaults): the
// signed pair runs with its push API token only in GOIM_HTTP_TOKENS and
// its gRPC secrets in a file (logic) and in GOIM_RPC_SECRET (comet-3),
// rotated: logic accepts every secret of its file, comet-3 sends the
// first of its list and accepts all. Configs without credentials refuse to
// start, with a message, under -check-config and when run; the
// development escape hatches must be written out.
func testSecretsFromFilesAndEnv(t *testing.T, c *cluster, sp *signedPair) {
	// The token from the environment is the one credential.
	pushOK(t, sp.api+"/goim/push/keys?operation=1999&keys=nobody", "env token")
	r, err := do(http.MethodPost, sp.api+"/goim/push/keys?operation=1999&keys=nobody", strings.NewReader("x"), bearer(""))
	if err != nil {
		t.Fatal(err)
	}
	wantUnauthorized(t, r, "signed logic without a credential")

	// comet-3 authenticates through logic with the old secret (the second
	// line of logic's file).
	cl, err := dialFrom(t, "127.0.0.20", "env-secret", "tcp", sp.comet.tcp(sp.ports), tokenAuth(sp.token(t, 1101, []string{"live://1"}), ""), heartbeat)
	if err != nil {
		t.Errorf("comet-3 (secret from GOIM_RPC_SECRET) could not authenticate a client through logic (secret from secret_file): %v", err)
	} else {
		cl.close()
	}
	logicCl := logicpb.NewLogicClient(grpcConn(t, sp.logicRPC))
	cometCl := cometpb.NewCometClient(grpcConn(t, net.JoinHostPort(sp.comet.ip, strconv.Itoa(sp.ports.rpc))))
	for _, tc := range []struct {
		name   string
		call   func(secret string) error
		secret string
		want   codes.Code
	}{
		{"logic, first secret of its file", func(s string) error {
			_, err := logicCl.Nodes(withSecret(t, s), &logicpb.NodesReq{Platform: "web"})
			return err
		}, sp.newSecret, codes.OK},
		{"logic, second secret of its file", func(s string) error {
			_, err := logicCl.Nodes(withSecret(t, s), &logicpb.NodesReq{Platform: "web"})
			return err
		}, sp.oldSecret, codes.OK},
		{"logic, another cluster's secret", func(s string) error {
			_, err := logicCl.Nodes(withSecret(t, s), &logicpb.NodesReq{Platform: "web"})
			return err
		}, c.rpcSecret, codes.Unauthenticated},
		{"comet, second secret of GOIM_RPC_SECRET", func(s string) error {
			_, err := cometCl.Rooms(withSecret(t, s), &cometpb.RoomsReq{})
			return err
		}, sp.newSecret, codes.OK},
		{"comet, another cluster's secret", func(s string) error {
			_, err := cometCl.Rooms(withSecret(t, s), &cometpb.RoomsReq{})
			return err
		}, c.rpcSecret, codes.Unauthenticated},
	} {
		if err := tc.call(tc.secret); status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// Production configs refuse to start without credentials.
	addrs := freeAddrs(t, 3)
	logicConf := func(name, http, rpc string) string {
		return c.writeConf(t, name, `host = "logic-e2e-`+name+`"
[http]
bind = "`+addrs[0]+`"
`+http+`
[rpc]
bind = "`+addrs[1]+`"
`+rpc+`
[auth]
insecure = true
[redis]
addr = "`+c.redis.Addr()+`"
prefix = "`+c.prefix+`nocred:"
[kafka]
brokers = ["`+c.kafka.ListenAddrs()[0]+`"]
topic = "`+c.topic+`"
[admin]
addr = "`+addrs[2]+`"
`)
	}
	noHTTP := logicConf("no-http-credential", "", c.rpcSecretConf())
	for _, tc := range []struct {
		name, bin, conf string
		ok              bool     // -check-config passes
		words           []string // the refusal names one of these
	}{
		{name: "logic without a push API credential", bin: c.bin.logic, conf: noHTTP, words: []string{"token", "credential", "allow_anonymous"}},
		{name: "logic without an rpc secret", bin: c.bin.logic, conf: logicConf("no-rpc-secret", c.httpCredentials(), ""), words: []string{"secret"}},
		{name: "logic with a missing tokens_file", bin: c.bin.logic,
			conf: logicConf("missing-tokens-file", `tokens_file = "`+c.tokensFile+`.missing"`, c.rpcSecretConf()), words: []string{"tokens_file", ".missing"}},
		{name: "logic with a missing rpc secret_file", bin: c.bin.logic,
			conf: logicConf("missing-secret-file", c.httpCredentials(), `secret_file = "`+c.rpcSecretFile+`.missing"`), words: []string{"secret_file", ".missing"}},
		{name: "logic open on purpose (allow_anonymous, rpc.insecure)", bin: c.bin.logic,
			conf: logicConf("open-on-purpose", "allow_anonymous = true", "insecure = true"), ok: true},
		{name: "comet without an rpc secret", bin: c.bin.comet, conf: c.writeConf(t, "comet-no-secret", `host = "comet-no-secret"
[tcp]
bind = ["127.0.0.1:0"]
[websocket]
bind = []
[rpc]
bind = "127.0.0.1:0"
[logic]
addrs = ["`+c.logicRPC+`"]
`), words: []string{"secret"}},
		{name: "job without an rpc secret", bin: c.bin.job, conf: c.writeConf(t, "job-no-secret", `host = "job-no-secret"
[kafka]
brokers = ["`+c.kafka.ListenAddrs()[0]+`"]
topic = "`+c.topic+`"
group = "e2e-no-secret"
[comets]
"comet-1" = "`+net.JoinHostPort(c.comets["comet-1"].ip, strconv.Itoa(c.ports.rpc))+`"
`), words: []string{"secret"}},
	} {
		cmd := exec.Command(tc.bin, "-conf", tc.conf, "-check-config")
		cmd.Env = childEnv()
		out, err := cmd.CombinedOutput()
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: -check-config: %v\n%s", tc.name, err, out)
		case !tc.ok && err == nil:
			t.Errorf("%s: -check-config passed (%s), want a refusal naming %q", tc.name, strings.TrimSpace(string(out)), tc.words)
		case !tc.ok && !hasAny(string(out), tc.words...):
			t.Errorf("%s: -check-config refused with %q, want it to name one of %q", tc.name, out, tc.words)
		}
	}

	// Run for real, the config without a push API credential ends the
	// process with an error instead of serving an open API.
	p := startProcess(t, t, "logic-no-http-credential", c.bin.logic, "-conf", noHTTP)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("logic without any push API credential still runs 15 s after its start; log:\n%s", p.tail(20))
	}
	var exit *exec.ExitError
	if !errors.As(p.err, &exit) || exit.ExitCode() == 0 {
		t.Errorf("logic without a push API credential exited with %v, want a non-zero status", p.err)
	}
	if log := p.log(); !hasAny(log, "token", "credential", "allow_anonymous") {
		t.Errorf("logic without a push API credential exited without saying why:\n%s", p.tail(20))
	}
}

// hasAny reports whether s contains one of words (case-insensitive).
func hasAny(s string, words ...string) bool {
	s = strings.ToLower(s)
	for _, w := range words {
		if strings.Contains(s, strings.ToLower(w)) {
			return true
		}
	}
	return false
}
