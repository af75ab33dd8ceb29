package logic

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/testkit"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// forge changes the first character of tok's signature, so that it no
// longer verifies. (Changing the last characters may not: the final
// base64 character carries padding bits a decoder ignores.)
func forge(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 1
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestConnect(t *testing.T) {
	e := startLogic(t, nil)
	r := e.connect("comet-a", 1001, "live://1000")
	if r.Mid != 1001 || !uuidRE.MatchString(r.Key) || r.RoomID != "live://1000" || !slices.Equal(r.Accepts, []int32{1000}) {
		t.Fatalf("reply %+v", r)
	}
	if want := int64(8 * time.Minute); r.Heartbeat != want {
		t.Fatalf("heartbeat %d ns, want %d (the default 4m x 2, goim v2's)", r.Heartbeat, want)
	}
	if got := e.rget("key_" + r.Key); got != "comet-a" {
		t.Fatalf("key_%s = %q, want comet-a", r.Key, got)
	}
	// A second connection of the same user gets another key.
	if r2 := e.connect("comet-b", 1001, ""); r2.Key == r.Key {
		t.Fatal("two connections got the same key")
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.auths.WithLabelValues("ok")); got != 2 {
		t.Fatalf("auths ok = %v, want 2", got)
	}
}

func TestConnectRefused(t *testing.T) {
	e := startLogic(t, nil)
	forged := forge(token(t, 7))
	cases := []struct {
		name string
		req  *logicpb.ConnectReq
		code codes.Code
	}{
		{name: "forged signature", req: &logicpb.ConnectReq{Server: "c", Token: authBody(forged, "")}, code: codes.Unauthenticated},
		{name: "no token", req: &logicpb.ConnectReq{Server: "c", Token: []byte(`{"mid":7,"key":"k"}`)}, code: codes.Unauthenticated},
		{name: "not json", req: &logicpb.ConnectReq{Server: "c", Token: []byte(`{`)}, code: codes.InvalidArgument},
		{name: "wrong field type", req: &logicpb.ConnectReq{Server: "c", Token: []byte(`{"mid":"7"}`)}, code: codes.InvalidArgument},
		{name: "room not allowed", req: &logicpb.ConnectReq{Server: "c", Token: authBody(token(t, 7, "live://1"), "live://2")}, code: codes.Unauthenticated},
		{name: "no server", req: &logicpb.ConnectReq{Token: authBody(token(t, 7), "")}, code: codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.rpc.Connect(context.Background(), tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("error %v, want code %v", err, tc.code)
			}
		})
	}
}

// TestConnectBatch: each connection of a batch is judged as Connect would
// judge it alone; the accepted ones get their sessions, the others their
// own status, and the call itself succeeds.
func TestConnectBatch(t *testing.T) {
	e := startLogic(t, nil)
	forged := forge(token(t, 7))
	reqs := []*logicpb.ConnectReq{
		{Server: "comet-a", Token: authBody(token(t, 21, "live://1"), "live://1", 1000)},
		{Server: "comet-a", Token: authBody(forged, "")},
		{Server: "comet-b", Token: authBody(token(t, 22), "")},
		{Token: authBody(token(t, 23), "")},
		{Server: "comet-b", Token: []byte(`{`)},
	}
	wantCodes := []codes.Code{codes.OK, codes.Unauthenticated, codes.OK, codes.InvalidArgument, codes.InvalidArgument}
	r, err := e.rpc.ConnectBatch(context.Background(), &logicpb.ConnectBatchReq{Reqs: reqs})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != len(reqs) {
		t.Fatalf("%d results for %d requests", len(r.Results), len(reqs))
	}
	for i, res := range r.Results {
		if got := codes.Code(res.Code); got != wantCodes[i] {
			t.Errorf("result %d: code %v (%q), want %v", i, got, res.Message, wantCodes[i])
			continue
		}
		if wantCodes[i] != codes.OK {
			if res.Reply != nil || res.Message == "" {
				t.Errorf("result %d: reply %v, message %q; want no reply and a message", i, res.Reply, res.Message)
			}
			continue
		}
		if !uuidRE.MatchString(res.Reply.Key) || res.Reply.Heartbeat != int64(8*time.Minute) {
			t.Errorf("result %d: reply %+v", i, res.Reply)
		}
		if got, want := e.rget("key_"+res.Reply.Key), reqs[i].Server; got != want {
			t.Errorf("result %d: key_%s = %q, want %q", i, res.Reply.Key, got, want)
		}
	}
	if r.Results[0].Reply.Mid != 21 || r.Results[0].Reply.RoomID != "live://1" || !slices.Equal(r.Results[0].Reply.Accepts, []int32{1000}) {
		t.Errorf("result 0: reply %+v", r.Results[0].Reply)
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.auths.WithLabelValues("ok")); got != 2 {
		t.Errorf("auths ok = %v, want 2", got)
	}

	// An empty batch is answered empty; an oversized one is refused whole.
	if r, err := e.rpc.ConnectBatch(context.Background(), &logicpb.ConnectBatchReq{}); err != nil || len(r.Results) != 0 {
		t.Errorf("empty batch: %v, %v", r, err)
	}
	big := make([]*logicpb.ConnectReq, MaxConnectBatch+1)
	for i := range big {
		big[i] = reqs[0]
	}
	if _, err := e.rpc.ConnectBatch(context.Background(), &logicpb.ConnectBatchReq{Reqs: big}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("batch of %d: %v, want InvalidArgument", len(big), err)
	}
}

// TestDisconnectBatch: each session of a batch is removed only where it
// still points at the asking comet; a malformed entry fails alone.
func TestDisconnectBatch(t *testing.T) {
	e := startLogic(t, nil)
	a := e.connect("comet-a", 31, "")
	b := e.connect("comet-b", 31, "")
	r, err := e.rpc.DisconnectBatch(context.Background(), &logicpb.DisconnectBatchReq{Reqs: []*logicpb.DisconnectReq{
		{Mid: 31, Key: a.Key, Server: "comet-a"},
		{Mid: 31, Key: b.Key, Server: "comet-a"}, // b is on comet-b
		{Mid: 31, Server: "comet-a"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != 3 || !r.Results[0].Has || r.Results[1].Has || r.Results[0].Code != 0 || r.Results[1].Code != 0 ||
		codes.Code(r.Results[2].Code) != codes.InvalidArgument {
		t.Fatalf("results %v", r.Results)
	}
	if got := e.rget("key_" + a.Key); got != "" {
		t.Errorf("key_%s = %q after its disconnect", a.Key, got)
	}
	if got := e.rget("key_" + b.Key); got != "comet-b" {
		t.Errorf("key_%s = %q, want comet-b", b.Key, got)
	}
	big := make([]*logicpb.DisconnectReq, MaxDisconnectBatch+1)
	for i := range big {
		big[i] = &logicpb.DisconnectReq{Mid: 1, Key: "k", Server: "comet-a"}
	}
	if _, err := e.rpc.DisconnectBatch(context.Background(), &logicpb.DisconnectBatchReq{Reqs: big}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("batch of %d: %v, want InvalidArgument", len(big), err)
	}
}

// TestConnectIgnoresClaimedKey: with signed tokens a client cannot take
// over another connection's key by naming it.
func TestConnectIgnoresClaimedKey(t *testing.T) {
	e := startLogic(t, nil)
	victim := e.connect("comet-a", 1, "")
	body := fmt.Sprintf(`{"token":%q,"key":%q}`, token(t, 2), victim.Key)
	r, err := e.rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: "comet-evil", Token: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Key == victim.Key || r.Mid != 2 {
		t.Fatalf("attacker got key %q mid %d", r.Key, r.Mid)
	}
	if got := e.rget("key_" + victim.Key); got != "comet-a" {
		t.Fatalf("victim's routing now points at %q", got)
	}
}

func TestConnectInsecureKeepsV2Fields(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Auth = AuthConfig{Insecure: true} })
	r, err := e.rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: "comet-a",
		Token: []byte(`{"mid":42,"key":"k-42","room_id":"live://9","platform":"ios","accepts":[1,2]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Mid != 42 || r.Key != "k-42" || r.RoomID != "live://9" || !slices.Equal(r.Accepts, []int32{1, 2}) {
		t.Fatalf("reply %+v", r)
	}
	// No key: logic generates one.
	r, err = e.rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: "comet-a", Token: []byte(`{"mid":43}`)})
	if err != nil || !uuidRE.MatchString(r.GetKey()) {
		t.Fatalf("reply %+v, %v", r, err)
	}
}

// TestDisconnectOnlyOwnSession: a late Disconnect from the comet a key has
// left does not erase the routing its new connection wrote.
func TestDisconnectOnlyOwnSession(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Auth = AuthConfig{Insecure: true} })
	for _, server := range []string{"comet-a", "comet-b"} {
		if _, err := e.rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: server, Token: []byte(`{"mid":5,"key":"k5"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := e.rpc.Disconnect(context.Background(), &logicpb.DisconnectReq{Mid: 5, Key: "k5", Server: "comet-a"})
	if err != nil || r.Has {
		t.Fatalf("stale disconnect: %+v, %v", r, err)
	}
	if got := e.rget("key_k5"); got != "comet-b" {
		t.Fatalf("key_k5 = %q after a stale disconnect, want comet-b", got)
	}
	r, err = e.rpc.Disconnect(context.Background(), &logicpb.DisconnectReq{Mid: 5, Key: "k5", Server: "comet-b"})
	if err != nil || !r.Has {
		t.Fatalf("disconnect: %+v, %v", r, err)
	}
	if got := e.rget("key_k5"); got != "" {
		t.Fatalf("key_k5 = %q after disconnect", got)
	}
	if _, err := e.rpc.Disconnect(context.Background(), &logicpb.DisconnectReq{Mid: 5, Server: "comet-b"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("disconnect without key: %v", err)
	}
}

// TestKeyReuseKeepsRouting: a client reconnects with its key to the same
// comet (goim v2 clients choose their key in insecure mode): the new
// connection (conn id 2) evicts the old one (conn id 1), whose late
// Heartbeat and Disconnect, single or batched, then leave the new
// connection's routing, so a push to the key still goes to that comet.
func TestKeyReuseKeepsRouting(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Auth = AuthConfig{Insecure: true} })
	ctx := context.Background()
	for _, id := range []uint64{1, 2} {
		if _, err := e.rpc.Connect(ctx, &logicpb.ConnectReq{Server: "comet-a", Token: []byte(`{"mid":5,"key":"k5"}`), ConnId: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.rpc.Heartbeat(ctx, &logicpb.HeartbeatReq{Mid: 5, Key: "k5", Server: "comet-a", ConnId: 1}); err != nil {
		t.Fatal(err)
	}
	r, err := e.rpc.Disconnect(ctx, &logicpb.DisconnectReq{Mid: 5, Key: "k5", Server: "comet-a", ConnId: 1})
	if err != nil || r.Has {
		t.Fatalf("the evicted connection's disconnect: %+v, %v", r, err)
	}
	br, err := e.rpc.DisconnectBatch(ctx, &logicpb.DisconnectBatchReq{Reqs: []*logicpb.DisconnectReq{{Mid: 5, Key: "k5", Server: "comet-a", ConnId: 1}}})
	if err != nil || len(br.Results) != 1 || br.Results[0].Has {
		t.Fatalf("the evicted connection's batched disconnect: %+v, %v", br, err)
	}
	if got, conn := e.rget("key_k5"), e.rget("conn_k5"); got != "comet-a" || conn != "2" {
		t.Fatalf("key_k5 = %q, conn_k5 = %q; want comet-a and 2", got, conn)
	}
	e.push("/goim/push/keys?operation=1000&keys=k5", []byte("hi"))
	if p := e.pushed(1); p[0].msg.Server != "comet-a" || !slices.Equal(p[0].msg.Keys, []string{"k5"}) {
		t.Fatalf("push %+v, want k5 on comet-a", p[0].msg)
	}
	r, err = e.rpc.Disconnect(ctx, &logicpb.DisconnectReq{Mid: 5, Key: "k5", Server: "comet-a", ConnId: 2})
	if err != nil || !r.Has {
		t.Fatalf("the new connection's disconnect: %+v, %v", r, err)
	}
	if got, conn := e.rget("key_k5"), e.rget("conn_k5"); got != "" || conn != "" {
		t.Fatalf("key_k5 = %q, conn_k5 = %q after the owner's disconnect", got, conn)
	}
}

func TestHeartbeatReAddsLostSession(t *testing.T) {
	e := startLogic(t, nil)
	r := e.connect("comet-a", 9, "")
	if _, err := e.redis.Do("DEL", e.prefix+"key_"+r.Key, e.prefix+"mid_9"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rpc.Heartbeat(context.Background(), &logicpb.HeartbeatReq{Mid: 9, Key: r.Key, Server: "comet-a"}); err != nil {
		t.Fatal(err)
	}
	if got := e.rget("key_" + r.Key); got != "comet-a" {
		t.Fatalf("key_ = %q after heartbeat", got)
	}
}

// TestNodesRPC: the Nodes call answers as /goim/nodes/weighted does.
func TestNodesRPC(t *testing.T) {
	e := startLogic(t, nil)
	r, err := e.rpc.Nodes(context.Background(), &logicpb.NodesReq{Platform: "ios"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Nodes, []string{"127.0.0.1"}) || r.Heartbeat != 240 || r.HeartbeatMax != 2 || r.TcpPort != 3101 || r.Backoff.GetMaxDelay() != 300 {
		t.Fatalf("Nodes %+v", r)
	}
	e.expect("GET", "/goim/nodes/weighted?platform=ios", nil, 200, `{"code":0,"message":"","data":{"domain":"127.0.0.1","tcp_port":3101,"ws_port":3102,"wss_port":3103,"heartbeat":240,"heartbeat_max":2,"nodes":["127.0.0.1"],"backoff":{"max_delay":300,"base_delay":3,"factor":1.8,"jitter":0.3}}}`)
}

func TestReceiveCounted(t *testing.T) {
	e := startLogic(t, nil)
	_, err := e.rpc.Receive(context.Background(), &logicpb.ReceiveReq{Mid: 1, Proto: &protocol.Proto{Op: 1000, Body: []byte("hi")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.received.WithLabelValues("other")); got != 1 {
		t.Fatalf("received{op=other} = %v", got)
	}
}

func TestConnectRedisDown(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Redis.Addr = testkit.FreeAddr(t) })
	_, err := e.rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: "c", Token: authBody(token(t, 1), "")})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Connect with Redis down: %v, want Unavailable", err)
	}
	if e.srv.Ready() == nil {
		t.Fatal("Ready with Redis down")
	}
}

// TestPushKeysAndMids: a keys or mids push is published as one PushMsg per
// comet, every one with the msg_id the API answered: one push, one id.
func TestPushKeysAndMids(t *testing.T) {
	e := startLogic(t, nil)
	a1 := e.connect("comet-a", 1, "")
	a2 := e.connect("comet-a", 2, "")
	b2 := e.connect("comet-b", 2, "")
	c3 := e.connect("comet-c", 3, "")
	body := []byte{0, 1, 2, 'x', 0xff}
	keysID := e.push("/goim/push/keys?operation=1000&keys="+a1.Key+","+b2.Key+"&keys=gone,"+c3.Key, body)
	got := e.pushed(3)
	want := []struct {
		server string
		keys   []string
	}{{"comet-a", []string{a1.Key}}, {"comet-b", []string{b2.Key}}, {"comet-c", []string{c3.Key}}}
	for i, w := range want {
		m := got[i].msg
		if got[i].key != w.server || m.Type != logicpb.PushMsg_PUSH || m.Server != w.server || m.Operation != 1000 ||
			!slices.Equal(m.Keys, w.keys) || string(m.Msg) != string(body) || m.MsgId != keysID {
			t.Fatalf("push %d: key %q %+v, want msg_id %s", i, got[i].key, m, keysID)
		}
	}

	midsID := e.push("/goim/push/mids?operation=7&mids=2", []byte("m"))
	if midsID == keysID {
		t.Fatalf("two pushes answered the same msg_id %s", midsID)
	}
	var all []string
	for _, p := range e.pushed(5) {
		if p.msg.Operation != 7 {
			continue
		}
		all = append(all, p.msg.Keys...)
		if p.msg.MsgId != midsID {
			t.Fatalf("mids push record %+v, want msg_id %s", p.msg, midsID)
		}
	}
	slices.Sort(all)
	wantKeys := []string{a2.Key, b2.Key}
	slices.Sort(wantKeys)
	if !slices.Equal(all, wantKeys) {
		t.Fatalf("mids push keys %v, want %v", all, wantKeys)
	}
}

// TestPushOffline: a keys or mids push whose targets are all offline
// publishes nothing and still answers code 0 with a msg_id of its own.
func TestPushOffline(t *testing.T) {
	e := startLogic(t, nil)
	ids := map[string]bool{}
	for _, path := range []string{"/goim/push/keys?operation=1&keys=gone,never", "/goim/push/mids?operation=1&mids=404", "/goim/push/keys?operation=1&keys=gone"} {
		id := e.push(path, []byte("nobody"))
		if ids[id] {
			t.Fatalf("%s answered msg_id %s twice", path, id)
		}
		ids[id] = true
	}
	if n := e.published(logicpb.PushMsg_PUSH); n != 0 {
		t.Fatalf("%d PushMsgs published for offline targets", n)
	}
	roomID := e.push("/goim/push/room?operation=1&type=live&room=1", []byte("somebody"))
	if p := e.pushed(1); p[0].msg.Type != logicpb.PushMsg_ROOM || p[0].msg.MsgId != roomID {
		t.Fatalf("the topic holds %+v, want only the room push %s", p[0].msg, roomID)
	}
}

func TestPushRoomAndAll(t *testing.T) {
	e := startLogic(t, nil)
	roomID := e.push("/goim/push/room?operation=5&type=live&room=1000", []byte("r"))
	allID := e.push("/goim/push/all?operation=6&speed=100", []byte("a"))
	if roomID == allID {
		t.Fatalf("two pushes answered the same msg_id %s", roomID)
	}
	got := e.pushed(2)
	if r := got[0]; r.key != "live://1000" || r.msg.Type != logicpb.PushMsg_ROOM || r.msg.Room != "live://1000" || r.msg.Operation != 5 ||
		string(r.msg.Msg) != "r" || r.msg.MsgId != roomID {
		t.Fatalf("room push: key %q %+v, want msg_id %s", r.key, r.msg, roomID)
	}
	if a := got[1]; a.key != "6" || a.msg.Type != logicpb.PushMsg_BROADCAST || a.msg.Speed != 100 || a.msg.Operation != 6 ||
		string(a.msg.Msg) != "a" || a.msg.MsgId != allID {
		t.Fatalf("broadcast: key %q %+v, want msg_id %s", a.key, a.msg, allID)
	}
}

// TestPushPartlyFailed: when some comets' PushMsgs fail, the push answers
// -500 without data although the others were published (with the id
// that was not answered).
func TestPushPartlyFailed(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Kafka.MaxMessageBytes = 400 })
	var keys []string
	for range 10 { // comet-a's PushMsg: 10 keys, over 400 bytes
		keys = append(keys, e.connect("comet-a", 1, "").Key)
	}
	keys = append(keys, e.connect("comet-b", 2, "").Key) // comet-b's: one key, well under
	code, body := e.do("POST", "/goim/push/keys?operation=1&keys="+strings.Join(keys, ","), []byte("partly"))
	if code != 500 || !strings.HasPrefix(body, `{"code":-500,"message":"logic: 1 of 2 comets' pushes failed: `) ||
		strings.Contains(body, "data") {
		t.Fatalf("got %d %s", code, body)
	}
	if p := e.pushed(1); p[0].msg.Server != "comet-b" || !msgIDPattern.MatchString(p[0].msg.MsgId) {
		t.Fatalf("published %+v, want comet-b's PushMsg", p[0].msg)
	}
}

// TestPushKafkaDown: with the broker gone a push answers -500, never 0.
func TestPushKafkaDown(t *testing.T) {
	e := startLogic(t, nil)
	e.kafka.Close()
	code, body := e.do("POST", "/goim/push/room?operation=5&type=live&room=1", []byte("x"))
	if code != 500 || !strings.HasPrefix(body, `{"code":-500,"message":"`) || !strings.Contains(body, "kafka") {
		t.Fatalf("got %d %s", code, body)
	}
	if e.srv.Ready() == nil {
		t.Fatal("Ready with Kafka down")
	}
}

func TestPushRedisDown(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Redis.Addr = testkit.FreeAddr(t) })
	code, body := e.do("POST", "/goim/push/mids?operation=5&mids=1", []byte("x"))
	if code != 500 || !strings.Contains(body, `"code":-500`) || !strings.Contains(body, "redis") {
		t.Fatalf("got %d %s", code, body)
	}
}

func TestReady(t *testing.T) {
	e := startLogic(t, nil)
	testkit.WaitFor(t, 5*time.Second, e.srv.Ready)
}
