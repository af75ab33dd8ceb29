package logic

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// testSecret signs the tests' HS256 tokens.
var testSecret = []byte("logic-test-secret-0123456789abcdef")

// apiToken is the push API's full-scope bearer token in testConfig; e.do
// sends it.
const apiToken = "logic-test-api-token-0123456789"

// env is a running logic with its own Redis key prefix and kfake topic,
// a gRPC client as a comet would use, and helpers to call the HTTP API.
type env struct {
	t      *testing.T
	srv    *Server
	cfg    Config
	reg    *prometheus.Registry
	base   string // http://host:port
	rpc    logicpb.LogicClient
	redis  redis.Conn
	prefix string
	kafka  *kfake.Cluster
	topic  string
}

// testConfig is a logic config on loopback ports, apiToken for the push
// API, HS256 auth, the shared test Redis under prefix and Kafka at
// brokers.
func testConfig(t *testing.T, prefix string, brokers []string, topic string) Config {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "hmac.key")
	if err := os.WriteFile(keyFile, testSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	cfg.Host = "logic-test"
	cfg.HTTP.Bind = "127.0.0.1:0"
	cfg.RPC.Bind = "127.0.0.1:0"
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.HTTP.Tokens = []string{apiToken}
	cfg.Auth.HMACKeyFile = keyFile
	cfg.RPC.Secrets = []string{testRPCSecret}
	cfg.Redis.Addr = testkit.RedisAddr()
	cfg.Redis.Prefix = prefix
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.Topic = topic
	cfg.Kafka.Timeout = conf.Duration(2 * time.Second)
	cfg.Online.Refresh = conf.Duration(100 * time.Millisecond)
	return cfg
}

// startLogic starts logic against the shared Redis (a prefix of its own)
// and a kfake cluster; edit may change the config first. Everything stops
// at cleanup.
func startLogic(t *testing.T, edit func(*Config)) *env {
	t.Helper()
	rc, prefix := testkit.Redis(t)
	kc, topic := testkit.Kafka(t, 4)
	cfg := testConfig(t, prefix, kc.ListenAddrs(), topic)
	if edit != nil {
		edit(&cfg)
	}
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, Deps{Logger: testkit.Logger(t), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	conn, err := grpc.NewClient(srv.RPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(rpcCredentials(t, testRPCSecret)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{
		t: t, srv: srv, cfg: cfg, reg: reg,
		base:  "http://" + srv.HTTPAddr(),
		rpc:   logicpb.NewLogicClient(conn),
		redis: rc, prefix: prefix,
		kafka: kc, topic: topic,
	}
}

// testRPCSecret is the internal gRPC secret of the tests' logic and the
// comets they run.
var testRPCSecret = "logic-test-rpc-secret-" + testkit.RandomHex(8)

// rpcCredentials returns the per-call credentials that send secret.
func rpcCredentials(t testing.TB, secret string) credentials.PerRPCCredentials {
	t.Helper()
	keys, err := rpcauth.Config{Secrets: []string{secret}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	return keys.Credentials()
}

// token signs an HS256 connection token for mid, with a rooms claim
// listing rooms when any is given (none: no rooms claim).
func token(t testing.TB, mid int64, rooms ...string) string {
	t.Helper()
	c := Claims{Rooms: rooms}
	c.Subject = strconv.FormatInt(mid, 10)
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// authBody is an auth frame body carrying a token.
func authBody(tok, room string, accepts ...int32) []byte {
	var b strings.Builder
	b.WriteString(`{"token":"` + tok + `","room_id":"` + room + `","platform":"web","accepts":[`)
	for i, a := range accepts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(a)))
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// connect authenticates a connection of mid on comet server over gRPC,
// in room (its token's rooms claim) unless room is "".
func (e *env) connect(server string, mid int64, room string) *logicpb.ConnectReply {
	e.t.Helper()
	var rooms []string
	if room != "" {
		rooms = []string{room}
	}
	r, err := e.rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: server, Token: authBody(token(e.t, mid, rooms...), room, 1000)})
	if err != nil {
		e.t.Fatalf("Connect(%s, mid %d): %v", server, mid, err)
	}
	return r
}

// do sends an HTTP request to the API and returns the status and body.
// It carries apiToken unless header sets Authorization ("" sends none).
func (e *env) do(method, path string, body []byte, header ...string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// expect sends a request and checks the status and exact body.
func (e *env) expect(method, path string, body []byte, status int, want string) {
	e.t.Helper()
	got, b := e.do(method, path, body)
	if got != status || b != want {
		e.t.Fatalf("%s %s: got %d %s\nwant %d %s", method, path, got, b, status, want)
	}
}

// msgIDPattern is a push's msg_id: 32 lowercase hex digits.
var msgIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// push POSTs a push to the API, wants 200 and exactly
// {"code":0,"message":"","data":{"msg_id":"<32 lowercase hex>"}}, and
// returns the msg_id.
func (e *env) push(path string, body []byte) string {
	e.t.Helper()
	const head, tail = `{"code":0,"message":"","data":{"msg_id":"`, `"}}`
	got, b := e.do("POST", path, body)
	id, ok := strings.CutPrefix(b, head)
	if ok {
		id, ok = strings.CutSuffix(id, tail)
	}
	if got != 200 || !ok || !msgIDPattern.MatchString(id) {
		e.t.Fatalf("POST %s: got %d %s\nwant 200 %s<32 lowercase hex digits>%s", path, got, b, head, tail)
	}
	return id
}

// published is how many PushMsgs of type t logic tried to publish, by
// its publish latency histogram.
func (e *env) published(t logicpb.PushMsg_Type) uint64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != "goim_logic_publish_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "type" && l.GetValue() == t.String() {
					n += m.GetHistogram().GetSampleCount()
				}
			}
		}
		return n
	}
	e.t.Fatal("no goim_logic_publish_duration_seconds")
	return 0
}

// pushed reads the n PushMsgs produced so far, with their Kafka keys,
// ordered by (type, key) so tests can compare them.
func (e *env) pushed(n int) []pushed {
	e.t.Helper()
	recs := testkit.Consume(e.t, e.kafka.ListenAddrs(), e.topic, n)
	out := make([]pushed, 0, n)
	for _, r := range recs {
		var pm logicpb.PushMsg
		if err := proto.Unmarshal(r.Value, &pm); err != nil {
			e.t.Fatalf("record %d: %v", r.Offset, err)
		}
		out = append(out, pushed{key: string(r.Key), msg: &pm})
	}
	slices.SortFunc(out, func(a, b pushed) int {
		if a.msg.Type != b.msg.Type {
			return int(a.msg.Type) - int(b.msg.Type)
		}
		return strings.Compare(a.key, b.key)
	})
	return out
}

type pushed struct {
	key string
	msg *logicpb.PushMsg
}

// rget reads a key under the test's prefix ("" if absent).
func (e *env) rget(key string) string {
	e.t.Helper()
	v, err := redis.String(e.redis.Do("GET", e.prefix+key))
	if err != nil && err != redis.ErrNil {
		e.t.Fatal(err)
	}
	return v
}
