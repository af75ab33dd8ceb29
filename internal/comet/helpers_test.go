package comet

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	cometpb "github.com/goim/goim/api/comet"
	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// testLogic serves goim.logic.Logic from inside the test over real gRPC
// (the logic service arrives in a later issue). Auth accepts goim v2's JSON;
// a token "reject" is refused.
type testLogic struct {
	logicpb.UnimplementedLogicServer
	session time.Duration

	mu          sync.Mutex
	seq         int
	disconnects []string
	heartbeats  []string
	received    []*protocol.Proto
	reports     []*logicpb.OnlineReq
	allRooms    map[string]int32
	epoch       string // answered in OnlineReply
	noBatch     bool   // ConnectBatch answers Unimplemented, as an older logic
	batches     []int  // sizes of the ConnectBatch calls
	connects    int    // Connect calls
	// gate, when set, holds every Connect and ConnectBatch until closed.
	gate     chan struct{}
	dgate    chan struct{} // the same for Disconnect and DisconnectBatch
	dbatches []int         // sizes of the DisconnectBatch calls
	// dfail is how many more Disconnect and DisconnectBatch calls answer
	// Unavailable (as logic does when its Redis times out); < 0: all.
	dfail   int
	dfailed int // calls answered so
	dheld   int // disconnects that reached logic, held at dgate or not
	// Conn ids of the Connect, Disconnect and Heartbeat requests, by key.
	connIDs    map[string][]uint64
	dconnIDs   map[string][]uint64
	hbConnIDs  map[string][]uint64
	receiveErr error         // answered by Receive when set
	rs         reliableLogic // streams, ReadStream and Ack (reliable_test.go)
}

// noteConnID records the conn id of a request for key in m (l.mu held).
func noteConnID(m *map[string][]uint64, key string, id uint64) {
	if *m == nil {
		*m = map[string][]uint64{}
	}
	(*m)[key] = append((*m)[key], id)
}

// DisconnectBatch records each key as Disconnect does.
func (l *testLogic) DisconnectBatch(_ context.Context, req *logicpb.DisconnectBatchReq) (*logicpb.DisconnectBatchReply, error) {
	l.mu.Lock()
	noBatch, gate := l.noBatch, l.dgate
	if !noBatch {
		l.dheld += len(req.GetReqs())
	}
	l.mu.Unlock()
	if noBatch {
		return nil, status.Error(codes.Unimplemented, "no DisconnectBatch")
	}
	if gate != nil {
		<-gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.failDisconnect(); err != nil {
		return nil, err
	}
	l.dbatches = append(l.dbatches, len(req.GetReqs()))
	out := &logicpb.DisconnectBatchReply{}
	for _, r := range req.GetReqs() {
		l.disconnects = append(l.disconnects, r.GetKey())
		noteConnID(&l.dconnIDs, r.GetKey(), r.GetConnId())
		out.Results = append(out.Results, &logicpb.DisconnectResult{Has: true})
	}
	return out, nil
}

// ConnectBatch answers each request as Connect does.
func (l *testLogic) ConnectBatch(ctx context.Context, req *logicpb.ConnectBatchReq) (*logicpb.ConnectBatchReply, error) {
	l.mu.Lock()
	noBatch, gate := l.noBatch, l.gate
	if !noBatch {
		l.batches = append(l.batches, len(req.GetReqs()))
	}
	l.mu.Unlock()
	if noBatch {
		return nil, status.Error(codes.Unimplemented, "no ConnectBatch")
	}
	if gate != nil {
		<-gate
	}
	out := &logicpb.ConnectBatchReply{}
	for _, r := range req.GetReqs() {
		reply, err := l.connect(r)
		st := status.Convert(err)
		out.Results = append(out.Results, &logicpb.ConnectResult{Reply: reply, Code: int32(st.Code()), Message: st.Message()})
	}
	return out, nil
}

func (l *testLogic) Connect(_ context.Context, req *logicpb.ConnectReq) (*logicpb.ConnectReply, error) {
	l.mu.Lock()
	l.connects++
	gate := l.gate
	l.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return l.connect(req)
}

func (l *testLogic) connect(req *logicpb.ConnectReq) (*logicpb.ConnectReply, error) {
	a, err := protocol.ParseAuthBody(req.GetToken())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if a.Token == "reject" {
		return nil, status.Error(codes.Unauthenticated, "bad token")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	key := a.Key
	if key == "" {
		l.seq++
		key = fmt.Sprintf("gen-%d", l.seq)
	}
	noteConnID(&l.connIDs, key, req.GetConnId())
	reply := &logicpb.ConnectReply{Mid: a.Mid, Key: key, RoomID: a.RoomID, Accepts: a.Accepts, Heartbeat: int64(l.session)}
	// A token "rooms=a,b" grants the rooms a and b (none for "rooms=").
	// The room_id is answered as it is, unchecked, as a buggy logic would.
	if list, ok := strings.CutPrefix(a.Token, "rooms="); ok {
		reply.RoomsLimited = true
		if list != "" {
			reply.Rooms = strings.Split(list, ",")
		}
	}
	l.reliableReply(a, reply) // l.mu held
	return reply, nil
}

func (l *testLogic) Disconnect(_ context.Context, req *logicpb.DisconnectReq) (*logicpb.DisconnectReply, error) {
	l.mu.Lock()
	gate := l.dgate
	l.dheld++
	l.mu.Unlock()
	if gate != nil {
		<-gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.failDisconnect(); err != nil {
		return nil, err
	}
	l.disconnects = append(l.disconnects, req.GetKey())
	noteConnID(&l.dconnIDs, req.GetKey(), req.GetConnId())
	return &logicpb.DisconnectReply{Has: true}, nil
}

// failDisconnect answers a disconnect call Unavailable while dfail says
// so (l.mu held).
func (l *testLogic) failDisconnect() error {
	if l.dfail == 0 {
		return nil
	}
	if l.dfail > 0 {
		l.dfail--
	}
	l.dfailed++
	return status.Error(codes.Unavailable, "logic: disconnect: dao: redis: i/o timeout")
}

func (l *testLogic) Heartbeat(_ context.Context, req *logicpb.HeartbeatReq) (*logicpb.HeartbeatReply, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.heartbeats = append(l.heartbeats, req.GetKey())
	noteConnID(&l.hbConnIDs, req.GetKey(), req.GetConnId())
	return &logicpb.HeartbeatReply{}, nil
}

func (l *testLogic) Receive(_ context.Context, req *logicpb.ReceiveReq) (*logicpb.ReceiveReply, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.received = append(l.received, req.GetProto())
	if l.receiveErr != nil {
		return nil, l.receiveErr
	}
	return &logicpb.ReceiveReply{}, nil
}

func (l *testLogic) RenewOnline(_ context.Context, req *logicpb.OnlineReq) (*logicpb.OnlineReply, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reports = append(l.reports, req)
	return &logicpb.OnlineReply{AllRoomCount: l.allRooms, Epoch: l.epoch}, nil
}

// check runs f with the recorded calls locked.
func (l *testLogic) check(f func(*testLogic) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return f(l)
}

// testRPCSecret is the internal gRPC secret of the tests' comets, test
// logic and job clients.
var testRPCSecret = "comet-test-rpc-secret-" + testkit.RandomHex(8)

// rpcCredentials returns the dial options that send secret.
func rpcCredentials(t testing.TB, secret string) []grpc.DialOption {
	t.Helper()
	keys, err := rpcauth.Config{Secrets: []string{secret}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	return keys.DialOptions()
}

// startLogic serves a testLogic on 127.0.0.1:0, requiring testRPCSecret.
func startLogic(t testing.TB, session time.Duration) (*testLogic, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &testLogic{session: session}
	keys, err := rpcauth.Config{Secrets: []string{testRPCSecret}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(keys.ServerOptions(nil, nil)...) // comets must send the secret
	logicpb.RegisterLogicServer(gs, l)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return l, ln.Addr().String()
}

// testEnv is a comet with every listener on 127.0.0.1:0 and its test logic.
type testEnv struct {
	srv   *Server
	logic *testLogic
	reg   *prometheus.Registry
	push  cometpb.CometClient
}

// startComet starts a comet; edit adjusts the config first.
func startComet(t testing.TB, edit func(*Config)) *testEnv {
	t.Helper()
	return startCometLog(t, edit, nil)
}

// startCometLog is startComet with the comet logging to log (nil: none).
func startCometLog(t testing.TB, edit func(*Config), log *slog.Logger) *testEnv {
	t.Helper()
	logic, logicAddr := startLogic(t, time.Minute)
	cert, key := writeCert(t)
	cfg := Default()
	cfg.Host = "comet-test"
	cfg.TCP.Bind = []string{"127.0.0.1:0"}
	cfg.TCP.TLSBind = []string{"127.0.0.1:0"}
	cfg.WebSocket.Bind = []string{"127.0.0.1:0"}
	cfg.WebSocket.TLSBind = []string{"127.0.0.1:0"}
	cfg.TLS = TLSConfig{CertFile: cert, KeyFile: key}
	cfg.RPC.Bind = "127.0.0.1:0"
	cfg.RPC.Secrets = []string{testRPCSecret}
	cfg.Logic.Addrs = []string{logicAddr}
	cfg.Logic.ReportInterval = conf.Duration(50 * time.Millisecond)
	if edit != nil {
		edit(&cfg)
	}
	before := runtime.NumGoroutine() - foreignGoroutines()
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, Deps{Registry: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(srv.RPCAddr().String(),
		append(rpcCredentials(t, testRPCSecret), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		// Every goroutine the comet started is gone (gRPC's client and the
		// test logic may take a moment to wind down too). Goroutines that
		// are not the comet's are not counted (foreignGoroutines).
		waitFor(t, 5*time.Second, func() error {
			if n := runtime.NumGoroutine() - foreignGoroutines(); n > before {
				return fmt.Errorf("%d goroutines, %d before the comet started\n%s", n, before, goroutineStacks())
			}
			return nil
		})
	})
	return &testEnv{srv: srv, logic: logic, reg: reg, push: cometpb.NewCometClient(cc)}
}

// goroutineStacks is every goroutine's stack.
func goroutineStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// foreignGoroutines counts the goroutines a test may have running that
// belong to other parts than the comet: the embedded discovery server
// (testkit.Discovery: its handlers and the net/http connection goroutines
// around them; a long poll the comet abandoned is held by the server
// until its own timeout) and a real logic a test started (its Redis
// session writers start with the first single Connect, after the count
// before the comet started, and stop when that logic stops, after the
// comet). Those session writers are internal/gather workers, whose stacks
// do not name logic; the comet's own gather workers have stopped by the
// time the count is compared (logicLink.stop waits for them), so every
// gather worker then running is logic's. Likewise the HTTP client
// connections' read and write loops: a real logic's discovery client
// opens and drops keep-alive connections with its long polls, while the
// comet's discovery client has closed its own by then.
func foreignGoroutines() int {
	n := 0
	for _, g := range strings.Split(goroutineStacks(), "\n\n") {
		if strings.Contains(g, "github.com/bilibili/discovery/http.") ||
			strings.Contains(g, "net/http.(*connReader).backgroundRead") ||
			strings.Contains(g, "github.com/goim/goim/internal/logic") ||
			strings.Contains(g, "github.com/goim/goim/internal/gather.(*Gatherer") ||
			strings.Contains(g, "net/http.(*persistConn)") {
			n++
		}
	}
	return n
}

// unlimited turns every [limits] bound off, for tests of many connections
// from one IP (the loopback address) or of many frames.
func unlimited(c *Config) { c.Limits = LimitsConfig{} }

func (e *testEnv) addr(tr string) string { return e.srv.Addrs(tr)[0].String() }

// closes returns how many connections closed for reason.
func (e *testEnv) closes(reason CloseReason) int {
	return int(testutil.ToFloat64(e.srv.metrics.closes.WithLabelValues(reason.String())))
}

// waitFor polls f until it returns nil or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeCert writes a fresh self-signed certificate for 127.0.0.1.
func writeCert(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "goim test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// client speaks goim over TCP, TLS, WS or WSS, the way a goim v2 client does.
type client struct {
	t    testing.TB
	e    *testEnv
	tr   string
	conn net.Conn
	r    *bufio.Reader
	wsIn []*protocol.Proto // inner frames of an op-9 message not yet returned
	seq  int32
}

func dial(t testing.TB, e *testEnv, tr string) *client {
	t.Helper()
	addr := e.addr(tr)
	c := &client{t: t, e: e, tr: tr}
	var err error
	switch tr {
	case "tcp":
		c.conn, err = net.Dial("tcp", addr)
	case "tls":
		c.conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	case "ws", "wss":
		d := ws.Dialer{TLSConfig: &tls.Config{InsecureSkipVerify: true}}
		var br *bufio.Reader
		c.conn, br, _, err = d.Dial(context.Background(), tr+"://"+addr+"/sub?client=test")
		if br != nil {
			ws.PutReader(br)
		}
	}
	if err != nil {
		t.Fatalf("dial %s %s: %v", tr, addr, err)
	}
	c.r = bufio.NewReader(c.conn)
	t.Cleanup(func() { _ = c.conn.Close() })
	return c
}

func (c *client) isWS() bool { return c.tr == "ws" || c.tr == "wss" }

// send writes one frame.
func (c *client) send(op int32, body []byte) int32 {
	c.t.Helper()
	c.seq++
	p := protocol.Proto{Ver: 1, Op: op, Seq: c.seq, Body: body}
	c.sendRaw(p.AppendTCP(nil))
	return c.seq
}

// sendRaw writes bytes as they are (TCP) or as one binary message (WS).
func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	var err error
	if c.isWS() {
		err = wsutil.WriteClientBinary(c.conn, b)
	} else {
		_, err = c.conn.Write(b)
	}
	if err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// read returns the next frame the server sent; op-9 WS messages are
// unpacked into their inner frames.
func (c *client) read() (*protocol.Proto, error) {
	if len(c.wsIn) > 0 {
		p := c.wsIn[0]
		c.wsIn = c.wsIn[1:]
		return p, nil
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	p := new(protocol.Proto)
	if !c.isWS() {
		if err := p.ReadTCP(c.r, 1<<24); err != nil {
			return nil, err
		}
		p.Body = append([]byte(nil), p.Body...)
		return p, nil
	}
	msg, op, err := wsutil.ReadServerData(c.conn)
	if err != nil {
		return nil, err
	}
	if op != ws.OpBinary {
		return nil, fmt.Errorf("server sent opcode %v", op)
	}
	if err := p.DecodeWS(msg, 1<<24); err != nil {
		return nil, err
	}
	if p.Op != protocol.OpRaw {
		return p, nil
	}
	for rest := p.Body; len(rest) > 0; {
		in := new(protocol.Proto)
		n, err := in.Decode(rest, 1<<24)
		if err != nil {
			return nil, err
		}
		c.wsIn = append(c.wsIn, in)
		rest = rest[n:]
	}
	if len(c.wsIn) == 0 {
		return nil, errors.New("empty op-9 message")
	}
	return c.read()
}

// expect reads the next frame and checks its op (and seq, when seq >= 0).
func (c *client) expect(op, seq int32) *protocol.Proto {
	c.t.Helper()
	p, err := c.read()
	if err != nil {
		c.t.Fatalf("%s: waiting for op %d: %v", c.tr, op, err)
	}
	if p.Op != op || (seq >= 0 && p.Seq != seq) {
		c.t.Fatalf("%s: got op %d seq %d body %q, want op %d seq %d", c.tr, p.Op, p.Seq, p.Body, op, seq)
	}
	return p
}

// auth sends goim v2's auth JSON and expects the op-8 reply. The comet
// publishes the channel before it sends op 8, so the key must be reachable
// by pushes as soon as the reply arrives.
func (c *client) auth(body string) {
	c.t.Helper()
	seq := c.send(protocol.OpAuth, []byte(body))
	p := c.expect(protocol.OpAuthReply, seq)
	if len(p.Body) != 0 || p.Ver != 1 {
		c.t.Fatalf("auth reply ver %d body %q", p.Ver, p.Body)
	}
	a, err := protocol.ParseAuthBody([]byte(body))
	if err != nil || a.Key == "" {
		return
	}
	if ch := c.e.srv.bucket(a.Key).get(a.Key); ch == nil || ch.closeReason() != reasonNone {
		c.t.Fatalf("key %q not reachable by pushes when op 8 arrived", a.Key)
	}
}

// expectClosed waits for the server to close the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	_ = c.closedWith()
}

// closedWith waits for the server to close the connection and returns the
// read error that ended it.
func (c *client) closedWith() error {
	c.t.Helper()
	for {
		if _, err := c.read(); err != nil {
			return err
		}
	}
}
