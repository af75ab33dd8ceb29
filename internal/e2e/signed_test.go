package e2e

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/goim/goim/internal/testkit"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// signedPair is a logic in signed mode (HS256 connection tokens, the
// default [auth] any_room = false) and a comet of its own, comet-3 on
// 127.0.0.4, beside the suite's cluster: the main logic runs goim v2's
// insecure auth, which the delivery tests need (their clients choose
// their keys). The pair shares the suite's Redis (a key prefix of its
// own) and Kafka, and is in no discovery env, so the main cluster's
// nodes, online counts and job never see comet-3; tests reach comet-3's
// rooms through its gRPC Broadcast and BroadcastRoom, as job would.
//
// Its secrets come from the places an operator may put them: logic's
// push API tokens only from GOIM_HTTP_TOKENS (no token in its config),
// its gRPC secrets from a file holding two (rotation: the first is the
// new one), comet-3's from GOIM_RPC_SECRET listing the old one first.
// comet-3 thus sends the old secret, which logic accepts as the second
// line of its file.
type signedPair struct {
	hmacKey []byte

	logic      *process
	api        string // logic's HTTP base URL
	logicRPC   string
	logicAdmin string

	comet *comet
	ports cometPorts

	newSecret, oldSecret string
}

// startSignedPair starts the pair for the test t (killed at its end) and
// waits until both are ready.
func (c *cluster) startSignedPair(t *testing.T) *signedPair {
	t.Helper()
	sp := &signedPair{
		hmacKey:   []byte(testkit.RandomHex(32)),
		newSecret: "e2e-rpc-new-" + testkit.RandomHex(24),
		oldSecret: "e2e-rpc-old-" + testkit.RandomHex(24),
		ports:     freeCometPorts(t, "127.0.0.4"),
	}
	keyFile := c.writeSecret(t, "signed-hmac.key", string(sp.hmacKey)+"\n")
	secretFile := c.writeSecret(t, "signed-rpc-secret", sp.newSecret+"\n"+sp.oldSecret+"\n")

	addrs := freeAddrs(t, 3)
	sp.api, sp.logicRPC, sp.logicAdmin = "http://"+addrs[0], addrs[1], addrs[2]
	logicConf := c.writeConf(t, "logic-signed", `host = "logic-e2e-signed"
shutdown_timeout = "5s"
# No push API token here: they come from GOIM_HTTP_TOKENS.
[http]
bind = "`+addrs[0]+`"
[rpc]
bind = "`+sp.logicRPC+`"
secret_file = "`+secretFile+`"
# Signed mode, any_room = false (the default): a token without a rooms
# claim joins no room.
[auth]
hmac_key_file = "`+keyFile+`"
[node]
tcp_port = `+strconv.Itoa(sp.ports.tcp)+`
ws_port = `+strconv.Itoa(sp.ports.ws)+`
heartbeat = "`+heartbeat.String()+`"
heartbeat_max = 10
[redis]
addr = "`+c.redis.Addr()+`"
prefix = "`+c.prefix+`signed:"
[kafka]
brokers = ["`+c.kafka.ListenAddrs()[0]+`"]
topic = "`+c.topic+`"
[admin]
addr = "`+sp.logicAdmin+`"
`)
	sp.logic = startProcessEnv(t, t, "logic-signed", []string{"GOIM_HTTP_TOKENS=" + apiToken}, c.bin.logic, "-conf", logicConf)

	cm := &comet{host: "comet-3", ip: "127.0.0.4"}
	a := func(port int) string { return strconv.Quote(net.JoinHostPort(cm.ip, strconv.Itoa(port))) }
	cm.conf = c.writeConf(t, "comet-3", `host = "comet-3"
[tcp]
bind = [`+a(sp.ports.tcp)+`]
[websocket]
bind = [`+a(sp.ports.ws)+`]
# The gRPC secrets come from GOIM_RPC_SECRET.
[rpc]
bind = `+a(sp.ports.rpc)+`
[logic]
addrs = ["`+sp.logicRPC+`"]
report_interval = "1s"
[node]
addrs = ["`+cm.ip+`"]
[admin]
addr = `+a(sp.ports.admin)+`
`)
	waitReady(t, sp.logic, sp.logicAdmin)
	cm.proc = startProcessEnv(t, t, "comet-3", []string{"GOIM_RPC_SECRET=" + sp.oldSecret + "," + sp.newSecret}, c.bin.comet, "-conf", cm.conf)
	waitReady(t, cm.proc, cm.admin(sp.ports))
	sp.comet = cm
	return sp
}

// token signs an HS256 connection token for mid with the pair's key.
// rooms nil: no rooms claim at all; otherwise the claim lists rooms.
func (sp *signedPair) token(t *testing.T, mid int64, rooms []string) string {
	t.Helper()
	return signToken(t, sp.hmacKey, mid, rooms)
}

// signToken signs an HS256 token for mid with key (see signedPair.token).
func signToken(t *testing.T, key []byte, mid int64, rooms []string) string {
	t.Helper()
	now := time.Now()
	claims := jwt.MapClaims{"sub": strconv.FormatInt(mid, 10), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if rooms != nil {
		claims["rooms"] = rooms
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tokenAuth is a signed-mode auth body: the token, the room to join at
// auth ("" for none) and the ops accepted.
func tokenAuth(token, room string, accepts ...int32) string {
	b, _ := json.Marshal(map[string]any{"token": token, "room_id": room, "platform": "web", "accepts": accepts})
	return string(b)
}

// grpcConn dials a gRPC server of the suite the way a stranger on the
// network would: plaintext, no credential of its own (calls add one with
// withSecret). It is closed at t's end.
func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// withSecret is a call context carrying secret the way goim's services
// send it: metadata "authorization: Bearer <secret>". secret "" adds
// nothing. The call has 5 s.
func withSecret(t *testing.T, secret string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	if secret == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
}
