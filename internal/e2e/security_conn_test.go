package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	"github.com/goim/goim/api/protocol"
	goimclient "github.com/goim/goim/client"
	"github.com/goim/goim/internal/testkit"
	"github.com/gomodule/redigo/redis"
)

// The connection-side tests of the security findings (see
// security_test.go for the list).

const (
	closesTotal = "goim_comet_closes_total"
	authsTotal  = "goim_comet_auths_total"
	// wsPolicyViolation is the WebSocket close status of a refused op 12.
	wsPolicyViolation = 1008
)

// authOnce opens a TCP connection from src to the comet at addr, sends
// one auth frame with body and waits up to timeout for the comet's
// answer, then closes the connection. It reports whether the answer was
// the auth reply; a connection the comet closed (or answered otherwise)
// is false with no error, no answer within timeout is an error.
func authOnce(src, addr, body string, timeout time.Duration) (bool, error) {
	opts := dialOptions(src, "tcp")
	opts.HandshakeTimeout = timeout
	conn, err := goimclient.DialBody(context.Background(), addr, []byte(body), opts)
	var ae *goimclient.AuthError
	switch {
	case err == nil:
		_ = conn.Close()
		return true, nil
	case !errors.As(err, &ae):
		return false, err // no connection
	case errors.Is(err, os.ErrDeadlineExceeded):
		return false, fmt.Errorf("no answer to the auth frame within %v", timeout)
	}
	return false, nil
}

// closedWithin waits up to timeout for cl's connection to end; it
// reports whether it did and why.
func closedWithin(cl *client, timeout time.Duration) (closed bool, why error) {
	select {
	case <-cl.done:
		_, why := cl.closed()
		return true, why
	case <-time.After(timeout):
		return false, nil
	}
}

// frames returns the bodies of the frames with op cl received so far.
func frames(cl *client, op int32) []string {
	var out []string
	for _, p := range cl.received() {
		if p.op == op {
			out = append(out, p.body)
		}
	}
	return out
}

// changeRoom sends op 12 with room and waits up to 5 s for the op 13
// reply echoing it.
func changeRoom(cl *client, seq int32, room string) error {
	if err := cl.write(protocol.OpChangeRoom, seq, []byte(room)); err != nil {
		return fmt.Errorf("%s: op 12 %q: %w", cl.name, room, err)
	}
	return eventually(5*time.Second, func() error {
		for _, b := range frames(cl, protocol.OpChangeRoomReply) {
			if b == room {
				return nil
			}
		}
		_, why := cl.closed()
		return fmt.Errorf("%s: no op 13 reply to op 12 %q (connection error: %v)", cl.name, room, why)
	})
}

// wantRefusedChange checks that op 12 with room closed cl's connection
// without an op 13 reply; a WebSocket connection gets a 1008 close frame
// naming reason. finding says what the failure shows.
func wantRefusedChange(t *testing.T, cl *client, seq int32, room, reason, finding string) {
	t.Helper()
	if err := cl.write(protocol.OpChangeRoom, seq, []byte(room)); err != nil {
		t.Errorf("%s: op 12: %v", cl.name, err)
		return
	}
	closed, why := closedWithin(cl, 5*time.Second)
	if !closed {
		t.Errorf("%s: still connected 5 s after op 12 %.40q, op 13 replies %.60q: %s", cl.name, room, frames(cl, protocol.OpChangeRoomReply), finding)
		return
	}
	if got := frames(cl, protocol.OpChangeRoomReply); len(got) != 0 {
		t.Errorf("%s: op 13 replies %q before the close, want none", cl.name, got)
	}
	if cl.tr == "ws" {
		var ce *goimclient.CloseError
		if !errors.As(why, &ce) || ce.Code != wsPolicyViolation || !strings.Contains(ce.Reason, reason) {
			t.Errorf("%s: closed with %v, want a close frame %d naming %q", cl.name, why, wsPolicyViolation, reason)
		}
	}
}

// broadcastRoom pushes body (op 1000) to room on the comet cl serves, the
// way job does: its gRPC BroadcastRoom with the secret.
func broadcastRoom(t *testing.T, cl cometpb.CometClient, secret, room, body string) {
	t.Helper()
	if _, err := cl.BroadcastRoom(withSecret(t, secret), &cometpb.BroadcastRoomReq{RoomID: room,
		Proto: &protocol.Proto{Ver: 1, Op: 1000, Body: []byte(body)}}); err != nil {
		t.Fatalf("BroadcastRoom %s: %v", room, err)
	}
}

// testRoomClaim (finding 3): in signed mode the token's rooms claim is
// enforced on op 12 too. A client allowed only live://1 that asks for
// live://vip is closed (room_denied, counted) and gets none of
// live://vip's pushes; a pattern claim (live://*) may join it; op 12 to an
// allowed room works; a token without a rooms claim joins no room (at auth
// or by op 12) while auth.any_room is false.
func testRoomClaim(t *testing.T, sp *signedPair) {
	const src = "127.0.0.20"
	tcp, ws, admin := sp.comet.tcp(sp.ports), sp.comet.ws(sp.ports), sp.comet.admin(sp.ports)
	rpc := cometpb.NewCometClient(grpcConn(t, net.JoinHostPort(sp.comet.ip, strconv.Itoa(sp.ports.rpc))))
	denied0, _ := metricWith(admin, closesTotal, `reason="room_denied"`)
	only1 := []string{"live://1"}

	a := mustDialFromT(t, src, "claim-a", "tcp", tcp, tokenAuth(sp.token(t, 101, only1), "live://1", 1000))
	w := mustDialFromT(t, src, "claim-w", "ws", ws, tokenAuth(sp.token(t, 102, []string{"live://*"}), "", 1000))
	b := mustDialFromT(t, src, "claim-b", "tcp", tcp, tokenAuth(sp.token(t, 103, only1), "", 1000))
	if err := changeRoom(w, 2, "live://vip"); err != nil {
		t.Errorf("a live://* claim may join live://vip: %v", err)
	}
	if err := changeRoom(b, 2, "live://1"); err != nil {
		t.Errorf("op 12 to a room of the claim: %v", err)
	}

	wantRefusedChange(t, a, 2, "live://vip", "room_denied", "the rooms claim is not enforced on op 12 (finding 3)")
	broadcastRoom(t, rpc, sp.newSecret, "live://vip", "claim:vip")
	broadcastRoom(t, rpc, sp.newSecret, "live://1", "claim:1")
	w.waitBodies(t, "claim:vip", 1, 5*time.Second)
	b.waitBodies(t, "claim:1", 1, 5*time.Second)
	if got := a.bodies("claim:vip"); len(got) != 0 {
		t.Errorf("the client allowed only live://1 received the push to live://vip %q (finding 3)", got)
	}

	// No rooms claim, any_room false: no room at auth, none by op 12.
	noClaim := sp.token(t, 104, nil)
	if cl, err := dialFrom(t, src, "claim-none-auth", "tcp", tcp, tokenAuth(noClaim, "live://1", 1000), heartbeat); err == nil {
		cl.close()
		t.Errorf("a token without a rooms claim joined live://1 at auth (finding 3: any_room is false by default)")
	}
	n := mustDialFromT(t, src, "claim-none", "tcp", tcp, tokenAuth(noClaim, "", 1000))
	wantRefusedChange(t, n, 2, "live://1", "room_denied", "a token without a rooms claim joined a room by op 12 (finding 3)")

	// WebSocket: the refusal is a 1008 close frame with the reason.
	x := mustDialFromT(t, src, "claim-x", "ws", ws, tokenAuth(sp.token(t, 105, only1), "", 1000))
	wantRefusedChange(t, x, 2, "live://vip", "room_denied", "the rooms claim is not enforced on op 12 (finding 3)")

	if err := eventually(5*time.Second, func() error {
		v, err := metricWith(admin, closesTotal, `reason="room_denied"`)
		if err == nil && v < denied0+3 {
			err = fmt.Errorf("%s{reason=\"room_denied\"} %v, want >= %v", closesTotal, v, denied0+3)
		}
		return err
	}); err != nil {
		t.Error(err)
	}
}

// mustDialFromT is dialFrom failing the test on error; the connection is
// closed at t's end.
func mustDialFromT(t *testing.T, src, name, tr, addr, auth string) *client {
	t.Helper()
	cl, err := dialFrom(t, src, name, tr, addr, auth, heartbeat)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// testUnknownOps (finding 4): 2,000 distinct ops unknown to goim, sent by
// one user, leave goim_logic_received_total with one series per known op
// and one ("other") for the rest. The comets' frames_per_second (50 per
// connection) would close a connection sending 2,000 frames at once, so
// the user sends them from 50 connections, 40 each, at 25 frames a second
// (the heartbeat adds one): under the limit, the point being the labels.
func testUnknownOps(t *testing.T, c *cluster) {
	const (
		conns   = 50
		perConn = 40
		pace    = 40 * time.Millisecond // 25 frames a second
		firstOp = 100_000
	)
	const received = "goim_logic_received_total"
	sum0, _ := metricSum(c.logicAdmin, received)
	other0, _ := metricWith(c.logicAdmin, received, `op="other"`)

	cls := make([]*client, conns)
	for i := range cls {
		src := "127.0.0." + strconv.Itoa(14+i%5)
		cm := c.comets[[]string{"comet-1", "comet-2"}[i%2]]
		key := fmt.Sprintf("ops-%d-%s", i, testkit.RandomHex(2))
		cls[i] = mustDialFromT(t, src, key, "tcp", cm.tcp(c.ports), authBody(4000, key, "", "android", 1000))
	}
	var wg sync.WaitGroup
	errs := make([]error, conns)
	for i, cl := range cls {
		wg.Go(func() {
			tick := time.NewTicker(pace)
			defer tick.Stop()
			for j := range perConn {
				if err := cl.write(int32(firstOp+i*perConn+j), int32(100+j), []byte("x")); err != nil {
					errs[i] = fmt.Errorf("%s: frame %d: %w", cl.name, j, err)
					return
				}
				<-tick.C
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 15*time.Second, func() error {
		v, err := metricSum(c.logicAdmin, received)
		if err == nil && v < sum0+conns*perConn {
			err = fmt.Errorf("logic received %v of the %d frames", v-sum0, conns*perConn)
		}
		return err
	})
	all, err := series(c.logicAdmin, received)
	if err != nil {
		t.Fatal(err)
	}
	// ops 0..17 by name, plus "other".
	if most := len(protocolOpNames()) + 1; len(all) > most {
		t.Errorf("%d series of %s after %d distinct unknown ops, want at most %d (finding 4)", len(all), received, conns*perConn, most)
	}
	if other := all[`op="other"`]; other < other0+conns*perConn {
		t.Errorf(`%s{op="other"} rose by %v, want %d`, received, other-other0, conns*perConn)
	}
	for _, cl := range cls {
		if done, why := cl.closed(); done {
			t.Errorf("%s was closed while sending 25 frames a second: %v", cl.name, why)
		}
	}
}

// protocolOpNames are the label values of the ops goim knows (0..17).
func protocolOpNames() []string {
	var out []string
	for op := int32(0); op <= 17; op++ {
		out = append(out, protocol.OpName(op))
	}
	return out
}

// testRoomIDs (finding 5): room ids longer than 128 bytes or holding a
// byte outside the room id charset are refused everywhere: -400 on the
// HTTP API, a close with reason bad_room on op 12, a refused auth when in
// the auth body. 128 bytes are fine.
func testRoomIDs(t *testing.T, c *cluster) {
	const src = "127.0.0.10"
	cm := c.comets["comet-1"]
	admin := cm.admin(c.ports)
	long := strings.Repeat("x", protocol.MaxRoomIDLen-len("live://")+1) // live://xxx: 129 bytes
	longest := long[1:]                                                 // 128 bytes

	for _, room := range []string{long, "a%20b", "a%22b", "%C3%A9", "a%3Cb%3E"} { // space, quote, é, <>
		for _, path := range []string{
			"/goim/push/room?operation=1999&type=live&room=" + room,
			"/goim/online/room?type=live&rooms=" + room,
		} {
			method := http.MethodGet
			if strings.HasPrefix(path, "/goim/push/") {
				method = http.MethodPost
			}
			r := mustDo(t, method, c.api+path, strings.NewReader("room"))
			r.envelope(t, fmt.Sprintf("%s %.60s (room %.20q..., finding 5)", method, path, room), -400, false)
		}
	}
	mustDo(t, http.MethodGet, c.api+"/goim/online/top?type=li%20ve&limit=5", nil).envelope(t, "online/top of a type with a space", -400, false)
	mustDo(t, http.MethodPost, c.api+"/goim/push/room?operation=1999&type=live&room="+longest, strings.NewReader("room")).
		pushAccepted(t, "a push to a 128-byte room id")

	badRoom0, _ := metricWith(admin, closesTotal, `reason="bad_room"`)
	badAuth0, _ := metricWith(admin, authsTotal, `result="bad_auth_body"`)
	cases := []struct{ name, tr, room string }{
		{name: "129 bytes", tr: "tcp", room: "live://" + long},
		{name: "space", tr: "tcp", room: "live://a b"},
		{name: "quote", tr: "tcp", room: `live://a"b`},
		{name: "non-ASCII", tr: "ws", room: "live://é"},
	}
	for i, tc := range cases {
		key := "room-" + strconv.Itoa(i) + "-" + testkit.RandomHex(2)
		addr := cm.tcp(c.ports)
		if tc.tr == "ws" {
			addr = cm.ws(c.ports)
		}
		cl := mustDialFromT(t, src, key, tc.tr, addr, authBody(4100, key, "", "web", 1000))
		wantRefusedChange(t, cl, 2, tc.room, "bad_room", "room id ("+tc.name+") accepted on op 12 (finding 5)")
	}
	ok := mustDialFromT(t, src, "room-128", "tcp", cm.tcp(c.ports), authBody(4100, "room-128-"+testkit.RandomHex(2), "", "web", 1000))
	if err := changeRoom(ok, 2, "live://"+longest); err != nil {
		t.Errorf("a 128-byte room id: %v", err)
	}
	if cl, err := dialFrom(t, src, "room-auth", "tcp", cm.tcp(c.ports), authBody(4100, "room-auth", "live://"+long, "web", 1000), heartbeat); err == nil {
		cl.close()
		t.Errorf("a 129-byte room id in the auth body was accepted (finding 5)")
	}
	for _, m := range []struct {
		name, labels string
		want         float64
	}{
		{closesTotal, `reason="bad_room"`, badRoom0 + float64(len(cases))},
		{authsTotal, `result="bad_auth_body"`, badAuth0 + 1},
	} {
		if err := eventually(5*time.Second, func() error {
			v, err := metricWith(admin, m.name, m.labels)
			if err == nil && v < m.want {
				err = fmt.Errorf("%s{%s} %v, want >= %v", m.name, m.labels, v, m.want)
			}
			return err
		}); err != nil {
			t.Error(err)
		}
	}
}

// testPacedBroadcast (finding 6): a broadcast paced at 1 connection a
// second to 20 clients (10 on each comet: about 10 s per comet) is under
// way; a plain broadcast, a room push and a keys push sent then all arrive
// within 5 s, long before the paced one is through.
func testPacedBroadcast(t *testing.T, c *cluster) {
	const (
		src     = "127.0.0.13"
		perNode = 10
		wait    = 5 * time.Second
	)
	room := "pace-" + testkit.RandomHex(4)
	var cls []*client
	onComet := map[string][]*client{}
	for _, host := range []string{"comet-1", "comet-2"} {
		for i := range perNode {
			key := fmt.Sprintf("pace-%s-%d-%s", host, i, testkit.RandomHex(2))
			cl := mustDialFromT(t, src, key, "tcp", c.comets[host].tcp(c.ports), authBody(4200, key, "live://"+room, "ios", 1003, 1004))
			cls = append(cls, cl)
			onComet[host] = append(onComet[host], cl)
		}
	}
	pushOK(t, c.api+"/goim/push/all?operation=1003&speed=1", "pace:slow")
	// The paced broadcast runs on both comets once a client of each has it
	// (the first connection of a paced broadcast goes at once).
	testkit.WaitFor(t, 10*time.Second, func() error {
		for host, cl := range onComet {
			if n := countBodies(cl, "pace:slow"); n == 0 {
				return fmt.Errorf("no client on %s has the paced broadcast yet", host)
			}
		}
		return nil
	})
	began := time.Now()
	pushOK(t, c.api+"/goim/push/all?operation=1004", "pace:plain")
	pushOK(t, c.api+"/goim/push/room?operation=1000&type=live&room="+room, "pace:room")
	pushOK(t, c.api+"/goim/push/keys?operation=1004&keys="+cls[0].name+","+cls[perNode].name, "pace:keys")
	if err := eventually(wait, func() error {
		for _, prefix := range []string{"pace:plain", "pace:room"} {
			if n := countBodies(cls, prefix); n < len(cls) {
				return fmt.Errorf("%d of %d clients have %q", n, len(cls), prefix)
			}
		}
		if n := countBodies([]*client{cls[0], cls[perNode]}, "pace:keys"); n < 2 {
			return fmt.Errorf("%d of 2 clients have the keys push", n)
		}
		return nil
	}); err != nil {
		t.Errorf("%v %v after they were sent behind a broadcast paced at speed=1 (finding 6)", err, wait)
		return
	}
	slow := countBodies(cls, "pace:slow")
	t.Logf("paced broadcast: the plain broadcast, room and keys pushes reached everyone %v after they were sent; the paced one had reached %d of %d clients then",
		time.Since(began).Round(time.Millisecond), slow, len(cls))
	if slow == len(cls) {
		t.Errorf("the paced broadcast had reached every client already: the test staged nothing")
	}
}

// countBodies counts the clients of cls that received a body with prefix.
func countBodies(cls []*client, prefix string) int {
	n := 0
	for _, cl := range cls {
		if len(cl.bodies(prefix)) > 0 {
			n++
		}
	}
	return n
}

// testKeyReuse (finding 7): a second connection with a key in use evicts
// the first (goim v2); the evicted connection's Disconnect, which reaches
// logic after the second connection's Connect, must not remove the second
// one's routing: pushes to the key and to the user reach it.
func testKeyReuse(t *testing.T, c *cluster) {
	const (
		src = "127.0.0.11"
		mid = 4300
	)
	cm := c.comets["comet-1"]
	key := "reuse-" + testkit.RandomHex(4)
	a := mustDialFromT(t, src, "reuse-a", "tcp", cm.tcp(c.ports), authBody(mid, key, "", "android", 1000))
	b := mustDialFromT(t, src, "reuse-b", "ws", cm.ws(c.ports), authBody(mid, key, "", "web", 1000))
	if closed, _ := closedWithin(a, 5*time.Second); !closed {
		t.Fatalf("the second connection with key %s did not evict the first", key)
	}

	// The comet sends a's Disconnect when a closes. To know logic has
	// handled it, close a connection after it and wait until that one's
	// session is gone from Redis: disconnects leave the comet in order.
	rc, err := redis.Dial("tcp", c.redis.Addr(), redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	fenceKey := "reuse-fence-" + testkit.RandomHex(4)
	fence := mustDialFromT(t, src, "reuse-fence", "tcp", cm.tcp(c.ports), authBody(mid+1, fenceKey, "", "web", 1000))
	fence.close()
	testkit.WaitFor(t, 10*time.Second, func() error {
		n, err := redis.Int(rc.Do("EXISTS", c.prefix+"key_"+fenceKey))
		if err == nil && n != 0 {
			err = errors.New("the closed fence connection's session is still in Redis")
		}
		return err
	})

	pushOK(t, c.api+"/goim/push/keys?operation=1000&keys="+key, "reuse:keys")
	pushOK(t, c.api+"/goim/push/mids?operation=1000&mids="+strconv.Itoa(mid), "reuse:mids")
	for _, prefix := range []string{"reuse:keys", "reuse:mids"} {
		if err := eventually(5*time.Second, func() error {
			if len(b.bodies(prefix)) == 0 {
				return fmt.Errorf("%q did not reach the connection that re-used key %s", prefix, key)
			}
			return nil
		}); err != nil {
			n, _ := redis.Int(rc.Do("EXISTS", c.prefix+"key_"+key))
			t.Errorf("%v (its routing key_%s exists in Redis: %v): the evicted connection's Disconnect removed the new connection's routing (finding 7)", err, key, n == 1)
		}
	}
	if got := a.bodies("reuse:"); len(got) != 0 {
		t.Errorf("the evicted connection received %q", got)
	}
}

// testAuthLoop (finding 8): connect, authenticate and close in a loop
// from one IP, each connection closed (and gone from the comet) before
// the next: the per-IP handshake rate (20 a second, burst 20) limits it,
// because the IP's state outlives its connections. comet-1 holds base
// connections of the suite's own meanwhile.
func testAuthLoop(t *testing.T, c *cluster, base int) {
	const (
		src    = "127.0.0.12"
		rounds = 200
	)
	cm := c.comets["comet-1"]
	admin := cm.admin(c.ports)
	rate0, _ := metricWith(admin, authsTotal, `result="auth_rate"`)
	closes0, _ := metricWith(admin, closesTotal, `reason="auth_rate"`)
	conns0 := float64(base)
	testkit.WaitFor(t, 10*time.Second, func() error { // earlier tests' clients are gone
		v, err := metric(admin, "goim_comet_connections")
		if err == nil && v != conns0 {
			err = fmt.Errorf("comet-1 has %v connections, want the suite's %v", v, conns0)
		}
		return err
	})
	limitedAt := -1
	began := time.Now()
	for i := range rounds {
		key := "loop-" + strconv.Itoa(i)
		ok, err := authOnce(src, cm.tcp(c.ports), authBody(int64(4400+i), key, "", "web"), 5*time.Second)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if !ok {
			limitedAt = i
			break
		}
		// Gone from the comet before the next round: the IP has no
		// connection left.
		if err := eventually(5*time.Second, func() error {
			v, err := metric(admin, "goim_comet_connections")
			if err == nil && v != conns0 {
				err = fmt.Errorf("comet-1 has %v connections, want %v", v, conns0)
			}
			return err
		}); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	if limitedAt < 0 {
		t.Fatalf("%d connect/auth/close rounds from %s in %v, each closed before the next, were never limited (finding 8)",
			rounds, src, time.Since(began).Round(time.Millisecond))
	}
	t.Logf("auth loop: refused at round %d, %v after the first", limitedAt, time.Since(began).Round(time.Millisecond))
	waitMetric(t, 5*time.Second, admin, authsTotal, `result="auth_rate"`, rate0+1)
	waitMetric(t, 5*time.Second, admin, closesTotal, `reason="auth_rate"`, closes0+1)
}

// testGarbageTokenFlood (finding 8): while 4 IPs flood comet-3 with
// handshakes carrying tokens signed by the wrong key, 10 good clients from
// another IP all authenticate within the handshake timeout (comet's
// handshake_timeout closes a handshake at 5 s, so an authenticated client
// made it in time), and the flood is limited per IP.
func testGarbageTokenFlood(t *testing.T, sp *signedPair) {
	const (
		floodIPs     = 4
		perIP        = 2 // concurrent handshakes per flooding IP
		maxAttempts  = 2000
		goodClients  = 10
		goodSrc      = "127.0.0.34"
		attemptPause = 5 * time.Millisecond
	)
	addr, admin := sp.comet.tcp(sp.ports), sp.comet.admin(sp.ports)
	rate0, _ := metricWith(admin, authsTotal, `result="auth_rate"`)
	bad := tokenAuth(signToken(t, []byte(testkit.RandomHex(32)), 666, []string{"live://1"}), "")

	ctx, stop := context.WithCancel(context.Background())
	var attempts, refused atomic.Int64
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()
	for ip := range floodIPs {
		src := "127.0.0." + strconv.Itoa(30+ip)
		for range perIP {
			wg.Go(func() {
				for ctx.Err() == nil && attempts.Add(1) <= maxAttempts {
					if ok, _ := authOnce(src, addr, bad, 10*time.Second); !ok {
						refused.Add(1)
					}
					time.Sleep(attemptPause)
				}
			})
		}
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := refused.Load(); n < 300 {
			return fmt.Errorf("%d bad handshakes refused so far", n)
		}
		return nil
	})

	began := time.Now()
	errs := make([]error, goodClients)
	var gw sync.WaitGroup
	for i := range goodClients {
		gw.Go(func() {
			cl, err := dialFrom(t, goodSrc, "flood-good-"+strconv.Itoa(i), "tcp", addr, tokenAuth(sp.token(t, int64(4500+i), []string{"live://1"}), "live://1", 1000), heartbeat)
			if err == nil {
				cl.close()
			}
			errs[i] = err
		})
	}
	gw.Wait()
	took := time.Since(began)
	stop()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Errorf("good clients failed to authenticate during a bad-token flood (finding 8):\n%v", err)
	}
	t.Logf("flood: %d good clients authenticated within %v while %d IPs sent %d bad handshakes (%d refused)",
		goodClients, took.Round(time.Millisecond), floodIPs, min(attempts.Load(), maxAttempts), refused.Load())
	if err := eventually(5*time.Second, func() error {
		v, err := metricWith(admin, authsTotal, `result="auth_rate"`)
		if err == nil && v <= rate0 {
			err = fmt.Errorf("%s{result=\"auth_rate\"} still %v: the flood was never limited per IP (finding 8)", authsTotal, v)
		}
		return err
	}); err != nil {
		t.Error(err)
	}
}
