package allinone

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/testkit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TestStart runs the cluster in the test process (so under -race) with
// the embedded Kafka and Redis and the test binary's discovery server
// standing in for a real one: a room push and a mids push (a session in
// the embedded Redis) reach a TCP client, a page given in Deps is served,
// sessions expire on the embedded Redis's clock, and Shutdown closes the
// client and every listener. The binary's own path, discovery embedded,
// is cmd/goim's test.
func TestStart(t *testing.T) {
	d := testkit.Discovery(t, "allinone-"+testkit.RandomHex(4))
	cfg := Default()
	port := func() string { return testkit.FreeAddr(t) }
	cfg.Kafka.Port = testkit.FreePort(t)
	cfg.Redis.Listen = port()
	cfg.Discovery.Nodes, cfg.Discovery.Env = d.Nodes, d.Env
	cfg.Logic.Discovery, cfg.Job.Discovery, cfg.Comet.Discovery = d, d, d
	cfg.Logic.Auth.Insecure = true
	const apiToken = "allinone-test-push-api-token-0123"
	cfg.Logic.HTTP.Tokens = []string{apiToken}
	cfg.Logic.HTTP.Bind, cfg.Logic.RPC.Bind, cfg.Logic.Admin.Addr = port(), port(), port()
	cfg.Logic.Online.Refresh = conf.Duration(200 * time.Millisecond)
	cfg.Logic.Redis.SessionTTL = conf.Duration(time.Second)
	cfg.Logic.Stream.Rooms = []string{"chat://*"}
	cfg.Comet.TCP.Bind, cfg.Comet.WebSocket.Bind = []string{port()}, []string{port()}
	cfg.Comet.RPC.Bind, cfg.Comet.Admin.Addr, cfg.Job.Admin.Addr = port(), port(), port()
	cfg.Comet.Host, cfg.Logic.Host, cfg.Job.Host = "c1", "l1", "j1"
	cfg.Comet.Drain.InterruptWindow = conf.Duration(100 * time.Millisecond)
	cfg.Wire()

	page := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "a page") })
	c, err := Start(cfg, Deps{Logger: testkit.Logger(t), Pages: map[string]http.Handler{"/page": page}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	testkit.WaitFor(t, 20*time.Second, c.Ready)
	if s := c.Summary(); !strings.Contains(s, "Redis (embedded miniredis)") || strings.Contains(s, "discovery (embedded)") ||
		strings.Contains(s, "allow_anonymous = true and no token") || !strings.Contains(s, "Authorization: Bearer $GOIM_HTTP_TOKEN") {
		t.Errorf("summary does not match the parts and the push API's token:\n%s", s)
	}

	conn, err := client.Dial(context.Background(), cfg.Comet.TCP.Bind[0],
		client.Auth{Mid: 3, Key: "k3", RoomID: "live://r", Accepts: []int32{1000}}, client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func() client.Frame {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var got client.Frame
		if err := conn.ReadFrames(func(f client.Frame) { got = client.Frame{Op: f.Op, Seq: f.Seq, Body: bytes.Clone(f.Body)} }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	api := "http://" + c.HTTPAddr()
	post := func(path, body string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, api+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !testkit.IsPushAnswer(b) {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
	}
	post("/goim/push/room?operation=1000&type=live&room=r", "room")
	if p := read(); p.Op != 1000 || string(p.Body) != "room" {
		t.Fatalf("got op %d %q, want the room push", p.Op, p.Body)
	}
	post("/goim/push/mids?operation=1000&mids=3", "mid")
	if p := read(); p.Op != 1000 || string(p.Body) != "mid" {
		t.Fatalf("got op %d %q, want the mids push", p.Op, p.Body)
	}

	testReliable(t, cfg.Comet.TCP.Bind[0], post)

	// The services authenticate each other with the generated secret
	// (the pushes above went comet -> logic and job -> comet); a caller
	// without it is refused by both gRPC services.
	for addr, method := range map[string]string{
		cfg.Logic.RPC.Bind: "/goim.logic.Logic/RenewOnline",
		cfg.Comet.RPC.Bind: "/goim.comet.Comet/Rooms",
	} {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		err = cc.Invoke(context.Background(), method, &emptypb.Empty{}, &emptypb.Empty{})
		cc.Close()
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%s without the secret: %v, want Unauthenticated", method, err)
		}
	}

	resp, err := http.Get(api + "/page")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "a page" {
		t.Fatalf("GET /page: %d %q", resp.StatusCode, b)
	}
	// The browser client module the demo page imports.
	resp, err = http.Get(api + "/goim.js")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" ||
		!strings.Contains(string(b), "export class Client") {
		t.Fatalf("GET /goim.js: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
	}

	// The client never heartbeats: its 1 s session must expire in the
	// embedded Redis, which only happens if its clock advances.
	testkit.WaitFor(t, 10*time.Second, func() error {
		if c.redis.Exists(cfg.Logic.Redis.Prefix + "mid_3") {
			return errNotYet("session mid_3 still in the embedded Redis")
		}
		return nil
	})

	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if err := conn.ReadFrames(func(client.Frame) {}); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("client not closed cleanly: %v", err)
			}
			break
		}
	}
	for _, a := range []string{cfg.Redis.Listen, "127.0.0.1:" + strconv.Itoa(cfg.Kafka.Port), c.HTTPAddr()} {
		if conn, err := net.Dial("tcp", a); err == nil {
			conn.Close()
			t.Errorf("%s still listens after Shutdown", a)
		}
	}
}

// testReliable: reliable delivery on the embedded Redis (its streams and
// Lua): a reliable client gets op 20, then its user's and its recoverable
// room's pushes as op-18 envelopes in order; away, it misses a push of
// each, and reconnecting with its positions recovers both.
func testReliable(t *testing.T, addr string, post func(path, body string)) {
	t.Helper()
	auth := client.Auth{Mid: 4, Key: "k4", RoomID: "chat://r", Accepts: []int32{1000}, Reliable: true}
	dial := func(since *protocol.Since) *client.Conn {
		t.Helper()
		a := auth
		a.Since = since
		conn, err := client.Dial(context.Background(), addr, a, client.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	next := func(conn *client.Conn) client.Frame {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var got client.Frame
		if err := conn.ReadFrames(func(f client.Frame) { got = client.Frame{Op: f.Op, Seq: f.Seq, Body: bytes.Clone(f.Body)} }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	report := func(conn *client.Conn) protocol.StreamsBody {
		t.Helper()
		f := next(conn)
		var sb protocol.StreamsBody
		if err := json.Unmarshal(f.Body, &sb); f.Op != protocol.OpStreams || err != nil {
			t.Fatalf("got op %d %q (%v), want op 20", f.Op, f.Body, err)
		}
		return sb
	}
	envelope := func(conn *client.Conn, stream int32, offset uint64, body string) protocol.Envelope {
		t.Helper()
		f := next(conn)
		e, err := protocol.DecodeEnvelope(f.Body)
		if f.Op != protocol.OpMessage || err != nil || e.Stream != stream || e.Offset != offset || e.Op != 1000 || string(e.Body) != body {
			t.Fatalf("got op %d %+v (%v), want an envelope of %q at offset %d of stream %d", f.Op, e, err, body, offset, stream)
		}
		return e
	}
	conn := dial(nil)
	if sb := report(conn); len(sb.Streams) != 3 {
		t.Fatalf("report %+v, want the user, key and room streams", sb)
	}
	post("/goim/push/mids?operation=1000&mids=4", "u1")
	user := envelope(conn, protocol.StreamUser, 1, "u1")
	post("/goim/push/room?operation=1000&type=chat&room=r", "r1")
	room := envelope(conn, protocol.StreamRoom, 1, "r1")
	conn.Close()
	post("/goim/push/mids?operation=1000&mids=4", "u2")
	post("/goim/push/room?operation=1000&type=chat&room=r", "r2")
	since := &protocol.Since{
		User: &protocol.SincePos{Epoch: protocol.FormatEpoch(user.Epoch), Offset: 1},
		Room: &protocol.SincePos{Epoch: protocol.FormatEpoch(room.Epoch), Offset: 1},
	}
	conn = dial(since)
	for _, s := range report(conn).Streams {
		if s.Stream != "key" && !s.Recovered {
			t.Fatalf("%+v, want the user and room streams recovered", s)
		}
	}
	// The order of the two streams' recovered messages is not fixed.
	got := map[string]bool{}
	for range 2 {
		f := next(conn)
		e, err := protocol.DecodeEnvelope(f.Body)
		if f.Op != protocol.OpMessage || err != nil || e.Offset != 2 {
			t.Fatalf("got op %d %+v (%v), want a recovered envelope at offset 2", f.Op, e, err)
		}
		got[string(e.Body)] = true
	}
	if !got["u2"] || !got["r2"] {
		t.Fatalf("recovered %v, want u2 and r2", got)
	}
}

type errNotYet string

func (e errNotYet) Error() string { return string(e) }

// TestInfraOnly: with InfraOnly the embedded Kafka and Redis serve and no
// service starts (logic's HTTP address stays free); Shutdown stops them.
func TestInfraOnly(t *testing.T) {
	d := testkit.Discovery(t, "allinone-"+testkit.RandomHex(4))
	cfg := Default()
	cfg.Kafka.Port = testkit.FreePort(t)
	cfg.Redis.Listen = testkit.FreeAddr(t)
	cfg.Discovery.Nodes = d.Nodes
	cfg.Logic.HTTP.Bind = testkit.FreeAddr(t)
	cfg.Logic.Auth.Insecure = true // the services' sections are still validated
	cfg.Wire()
	c, err := Start(cfg, Deps{Logger: testkit.Logger(t), InfraOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	if err := c.Ready(); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if c.logic != nil || c.comet != nil || c.job != nil || c.HTTPAddr() != "" {
		t.Fatal("a service started with InfraOnly")
	}
	if s := c.Summary(); !strings.Contains(s, "-infra-only") || strings.Contains(s, "logic HTTP API") {
		t.Errorf("summary:\n%s", s)
	}
	for _, addr := range []string{c.kafka.ListenAddrs()[0], cfg.Redis.Listen} {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("embedded part at %s: %v", addr, err)
		}
		conn.Close()
	}
	// Redis answers the protocol.
	conn, err := net.Dial("tcp", cfg.Redis.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "*1\r\n$4\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING: %q %v", line, err)
	}
	if ln, err := net.Listen("tcp", cfg.Logic.HTTP.Bind); err != nil {
		t.Fatalf("logic's HTTP address is taken: %v", err)
	} else {
		ln.Close()
	}
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
}
