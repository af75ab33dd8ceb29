package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/cluster"
	"github.com/goim/goim/internal/testkit/jobtest"
)

// recorder records a Client's state changes and the dials of its
// connections, with their times.
type recorder struct {
	mu     sync.Mutex
	states []stateEvent
	dials  []time.Time
}

type stateEvent struct {
	s   client.State
	err error
	at  time.Time
}

func (r *recorder) onState(s client.State, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, stateEvent{s: s, err: err, at: time.Now()})
}

// dialer wraps dial (nil: a net.Dialer) to record each dial's time.
func (r *recorder) dialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		r.mu.Lock()
		r.dials = append(r.dials, time.Now())
		r.mu.Unlock()
		return dial(ctx, network, addr)
	}
}

// events returns a copy of the state changes.
func (r *recorder) events() []stateEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.states)
}

// count returns how many times state s was entered.
func (r *recorder) count(s client.State) int {
	n := 0
	for _, e := range r.events() {
		if e.s == s {
			n++
		}
	}
	return n
}

// wait waits until state s was entered n times and returns the n-th.
func (r *recorder) wait(t *testing.T, s client.State, n int) stateEvent {
	t.Helper()
	var ev stateEvent
	testkit.WaitFor(t, 15*time.Second, func() error {
		k := 0
		for _, e := range r.events() {
			if e.s == s {
				if k++; k == n {
					ev = e
					return nil
				}
			}
		}
		return fmt.Errorf("state %v entered %d times, want %d: %v", s, k, n, r.events())
	})
	return ev
}

// firstDialAfter returns the time of the first dial after at.
func (r *recorder) firstDialAfter(t *testing.T, at time.Time) time.Time {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.dials {
		if d.After(at) {
			return d
		}
	}
	t.Fatalf("no dial after %v", at)
	return time.Time{}
}

// receiveUntil reads c's messages until one of op with body want and
// returns those before it.
func receiveUntil(t *testing.T, c *client.Client, op int32, want string) []client.Message {
	t.Helper()
	var before []client.Message
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				t.Fatalf("messages closed waiting for op %d %q", op, want)
			}
			if m.Op == op && string(m.Body) == want {
				return before
			}
			before = append(before, m)
		case <-timeout:
			t.Fatalf("no message op %d %q within 15s; got %v", op, want, before)
		}
	}
}

// bodies returns the bodies of ms.
func bodies(ms []client.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Body)
	}
	return out
}

func (e *env) config(tr client.Transport, auth client.Auth, rec *recorder) client.Config {
	cfg := client.Config{
		Addrs:     []string{e.addr(tr)},
		Transport: tr,
		Auth:      auth,
		Dial:      e.opts(tr),
		Backoff:   &client.Backoff{Base: 50 * time.Millisecond, Max: time.Second, Factor: 2},
	}
	if rec != nil {
		cfg.OnState = rec.onState
		cfg.Dial.NetDial = rec.dialer(nil)
	}
	return cfg
}

func connect(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestClient(t *testing.T) {
	e := startEnv(t)
	t.Run("transports", func(t *testing.T) { testClientTransports(t, e) })
	t.Run("change room", func(t *testing.T) { testClientChangeRoom(t, e) })
	t.Run("request from a callback", func(t *testing.T) { testClientRequestFromCallback(t, e) })
	t.Run("sub unsub", func(t *testing.T) { testClientSub(t, e) })
	t.Run("batch", func(t *testing.T) { testClientBatch(t, e) })
	t.Run("drop and token", func(t *testing.T) { testClientDrop(t, e) })
	t.Run("errors", func(t *testing.T) { testClientErrors(t, e) })
	t.Run("close", func(t *testing.T) { testClientClose(t, e) })
	t.Run("goroutines", func(t *testing.T) { testClientGoroutines(t, e) })
	t.Run("backpressure", func(t *testing.T) { testClientBackpressure(t, e) })
}

// testClientBackpressure: a reader that does not keep up holds the client
// back (a buffer of one message) without the heartbeat check taking the
// stalled connection for a dead one; every message then arrives, in
// order.
func testClientBackpressure(t *testing.T, e *env) {
	rec := &recorder{}
	cfg := e.config(client.TCP, client.Auth{Mid: e.id(), RoomID: "live://hl-slow"}, rec)
	cfg.Heartbeat = 250 * time.Millisecond
	cfg.MessageBuffer = 1
	c := connect(t, cfg)
	const n = 50
	for i := range n {
		e.c.Push("/goim/push/room?operation=1000&type=live&room=hl-slow", "slow "+strconv.Itoa(i))
	}
	time.Sleep(time.Second) // four heartbeat periods, nobody reading
	for i := range n {
		select {
		case m := <-c.Messages():
			if want := "slow " + strconv.Itoa(i); string(m.Body) != want {
				t.Fatalf("message %d is %q, want %q", i, m.Body, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%d of %d messages", i, n)
		}
	}
	if k := rec.count(client.Disconnected); k != 0 {
		t.Fatalf("disconnected %d times: %v", k, rec.events())
	}
}

// testClientTransports: on every transport the client connects, gets
// pushes by key, mid and room, heartbeats (a short period) without a drop,
// and Close reports Closed and closes Messages.
func testClientTransports(t *testing.T, e *env) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			rec := &recorder{}
			mid := e.id()
			key := "hl-" + string(tr) + "-" + strconv.FormatInt(mid, 10)
			room := "hl-" + string(tr)
			cfg := e.config(tr, client.Auth{Mid: mid, Key: key, RoomID: "live://" + room, Platform: "web", Accepts: []int32{1000}}, rec)
			cfg.Heartbeat = 250 * time.Millisecond
			c := connect(t, cfg)
			if c.Addr() != e.addr(tr) || c.Key() != key || c.Room() != "live://"+room {
				t.Fatalf("addr %q key %q room %q", c.Addr(), c.Key(), c.Room())
			}
			e.c.Push("/goim/push/keys?operation=1000&keys="+key, "by-key")
			receiveUntil(t, c, 1000, "by-key")
			e.c.Push("/goim/push/mids?operation=1000&mids="+strconv.FormatInt(mid, 10), "by-mid")
			receiveUntil(t, c, 1000, "by-mid")
			e.c.Push("/goim/push/room?operation=1001&type=live&room="+room, "by-room")
			receiveUntil(t, c, 1001, "by-room")
			time.Sleep(800 * time.Millisecond) // over three heartbeat periods
			if n := rec.count(client.Disconnected); n != 0 {
				t.Fatalf("disconnected %d times: %v", n, rec.events())
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if _, ok := <-c.Messages(); ok {
				t.Fatal("a message after Close")
			}
			ev := rec.events()
			if got := ev[len(ev)-1]; got.s != client.Closed || ev[0].s != client.Connecting || ev[1].s != client.Connected {
				t.Fatalf("states %v", ev)
			}
		})
	}
}

// testClientChangeRoom: after ChangeRoom a room push reaches the client
// in the new room only.
func testClientChangeRoom(t *testing.T, e *env) {
	c := connect(t, e.config(client.WS, client.Auth{Mid: e.id(), RoomID: "live://hl-old", Platform: "web"}, nil))
	if err := c.ChangeRoom(t.Context(), "live://hl-new"); err != nil {
		t.Fatal(err)
	}
	if c.Room() != "live://hl-new" {
		t.Fatalf("room %q", c.Room())
	}
	e.c.Push("/goim/push/room?operation=1000&type=live&room=hl-old", "old room")
	e.c.Push("/goim/push/room?operation=1000&type=live&room=hl-new", "new room 1")
	e.c.Push("/goim/push/room?operation=1000&type=live&room=hl-old", "old room")
	e.c.Push("/goim/push/room?operation=1000&type=live&room=hl-new", "new room 2")
	got := receiveUntil(t, c, 1000, "new room 1")
	got = append(got, receiveUntil(t, c, 1000, "new room 2")...)
	if len(got) != 0 {
		t.Fatalf("messages besides the new room's: %q", bodies(got))
	}
	// Leaving the room.
	if err := c.ChangeRoom(t.Context(), ""); err != nil || c.Room() != "" {
		t.Fatalf("leave: %v, room %q", err, c.Room())
	}
}

// testClientRequestFromCallback: OnMessage may call ChangeRoom (the
// reader goes on while the callback waits for the reply).
func testClientRequestFromCallback(t *testing.T, e *env) {
	var cp atomic.Pointer[client.Client]
	res := make(chan error, 1)
	got := make(chan string, 10)
	cfg := e.config(client.TCP, client.Auth{Mid: e.id(), RoomID: "live://hl-cb-1"}, nil)
	cfg.OnMessage = func(m client.Message) {
		got <- string(m.Body)
		if string(m.Body) == "move" {
			res <- cp.Load().ChangeRoom(t.Context(), "live://hl-cb-2")
		}
	}
	c := connect(t, cfg)
	cp.Store(c)
	e.c.Push("/goim/push/room?operation=1000&type=live&room=hl-cb-1", "move")
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("ChangeRoom from OnMessage did not return")
	}
	e.c.Push("/goim/push/room?operation=1000&type=live&room=hl-cb-2", "moved")
	for _, want := range []string{"move", "moved"} {
		select {
		case b := <-got:
			if b != want {
				t.Fatalf("got %q, want %q", b, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no %q", want)
		}
	}
}

// testClientSub: the accepts filter follows Sub and Unsub.
func testClientSub(t *testing.T, e *env) {
	mid := e.id()
	push := func(op int, body string) {
		e.c.Push("/goim/push/mids?operation="+strconv.Itoa(op)+"&mids="+strconv.FormatInt(mid, 10), body)
	}
	c := connect(t, e.config(client.TCP, client.Auth{Mid: mid, Platform: "web", Accepts: []int32{1000}}, nil))
	push(1001, "before sub")
	push(1000, "marker 1")
	if got := receiveUntil(t, c, 1000, "marker 1"); len(got) != 0 {
		t.Fatalf("unexpected %q", bodies(got))
	}
	if err := c.Sub(t.Context(), 1001, 1002); err != nil {
		t.Fatal(err)
	}
	push(1001, "after sub")
	receiveUntil(t, c, 1001, "after sub")
	if err := c.Unsub(t.Context(), 1000); err != nil {
		t.Fatal(err)
	}
	push(1000, "after unsub")
	push(1002, "marker 2")
	if got := receiveUntil(t, c, 1002, "marker 2"); len(got) != 0 {
		t.Fatalf("unexpected %q", bodies(got))
	}
	if got := c.Accepts(); !slices.Equal(got, []int32{1001, 1002}) {
		t.Fatalf("accepts %v", got)
	}
	if err := c.Sub(t.Context()); err == nil {
		t.Fatal("Sub without ops")
	}
	if err := c.Sub(t.Context(), make([]int32, 1025)...); err == nil {
		t.Fatal("Sub of 1025 ops")
	}
}

// testClientBatch: room pushes sent quickly arrive whole and in order,
// op-9 batches unpacked, through Messages (WebSocket) and OnMessage
// (TCP).
func testClientBatch(t *testing.T, e *env) {
	const n = 40
	room := "hl-batch"
	ws := connect(t, e.config(client.WS, client.Auth{Mid: e.id(), RoomID: "live://" + room}, nil))
	var mu sync.Mutex
	var got []string
	cfg := e.config(client.TCP, client.Auth{Mid: e.id(), RoomID: "live://" + room}, nil)
	cfg.OnMessage = func(m client.Message) {
		mu.Lock()
		got = append(got, string(m.Body))
		mu.Unlock()
	}
	tcp := connect(t, cfg)
	if tcp.Messages() != nil {
		t.Fatal("Messages with OnMessage set")
	}
	want := make([]string, n)
	for i := range n {
		want[i] = "m" + strconv.Itoa(i) + strings.Repeat("x", 30)
		e.c.Push("/goim/push/room?operation=1000&type=live&room="+room, want[i])
	}
	var wsGot []string
	for len(wsGot) < n {
		select {
		case m := <-ws.Messages():
			wsGot = append(wsGot, string(m.Body))
		case <-time.After(15 * time.Second):
			t.Fatalf("%d of %d messages", len(wsGot), n)
		}
	}
	if !slices.Equal(wsGot, want) {
		t.Fatalf("websocket got %q", wsGot)
	}
	testkit.WaitFor(t, 15*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < n {
			return fmt.Errorf("%d of %d messages", len(got), n)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("tcp got %q", got)
		}
		return nil
	})
}

// testClientDrop: a room the comet refuses drops the connection: the
// ChangeRoom fails with ErrDisconnected and the close frame, the client
// reconnects (a fresh token each time) to its previous room and gets a
// push there.
func testClientDrop(t *testing.T, e *env) {
	for _, tr := range []client.Transport{client.WS, client.TCP} {
		t.Run(string(tr), func(t *testing.T) {
			rec := &recorder{}
			var tokens atomic.Int32
			room := "hl-drop-" + string(tr)
			cfg := e.config(tr, client.Auth{Mid: e.id(), RoomID: "live://" + room}, rec)
			cfg.Token = func(ctx context.Context) (string, error) {
				return "token-" + strconv.Itoa(int(tokens.Add(1))), nil
			}
			c := connect(t, cfg)
			err := c.ChangeRoom(t.Context(), "no room id")
			if !errors.Is(err, client.ErrDisconnected) {
				t.Fatalf("ChangeRoom to a bad room: %v", err)
			}
			var ce *client.CloseError
			if tr == client.WS && (!errors.As(err, &ce) || ce.Code != 1008 || ce.Reason != "bad_room") {
				t.Fatalf("ChangeRoom to a bad room: %v, want close 1008 bad_room", err)
			}
			// TCP: the comet closes (EOF, or a reset when a heartbeat
			// was in flight).
			if tr == client.TCP && errors.As(err, &ce) {
				t.Fatalf("ChangeRoom to a bad room: %v, want the connection's end", err)
			}
			rec.wait(t, client.Connected, 2)
			if c.Room() != "live://"+room {
				t.Fatalf("room %q", c.Room())
			}
			e.c.Push("/goim/push/room?operation=1000&type=live&room="+room, "after reconnect")
			receiveUntil(t, c, 1000, "after reconnect")
			rec.mu.Lock()
			dials := len(rec.dials)
			rec.mu.Unlock()
			if n := int(tokens.Load()); n != dials || n != 2 {
				t.Fatalf("%d tokens asked for %d dials", n, dials)
			}
		})
	}
}

// testClientErrors: typed errors through Connect: a config error, a
// nodes error answer, auth refused, nothing listening; each but the
// first after ctx ended, wrapping ctx's error and the last cause.
func testClientErrors(t *testing.T, e *env) {
	ctx := t.Context()
	if _, err := client.Connect(ctx, client.Config{}); err == nil {
		t.Fatal("no API nor Addrs")
	}
	if _, err := client.Connect(ctx, client.Config{API: e.c.API, Transport: client.TLS}); err == nil {
		t.Fatal("tls with API")
	}
	if _, err := client.Connect(ctx, client.Config{Addrs: []string{"x:1"}, Transport: "quic"}); err == nil {
		t.Fatal("unknown transport")
	}
	short := func(cfg client.Config) error {
		rec := &recorder{}
		cfg.OnState = rec.onState
		cfg.Backoff = &client.Backoff{Base: 50 * time.Millisecond, Max: 100 * time.Millisecond, Factor: 2}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		c, err := client.Connect(ctx, cfg)
		if c != nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Connect: %v, %v", c, err)
		}
		if n := rec.count(client.Disconnected); n < 2 {
			t.Fatalf("%d attempts", n)
		}
		if ev := rec.events(); ev[len(ev)-1].s != client.Closed {
			t.Fatalf("states %v", ev)
		}
		t.Log(err)
		return err
	}
	var ne *client.NodesError
	if err := short(client.Config{API: e.c.API + "/nope"}); !errors.As(err, &ne) || ne.Status != 404 {
		t.Fatalf("bad API: %v", err)
	}
	var ae *client.AuthError
	cfg := e.config(client.WS, client.Auth{Mid: e.id(), RoomID: "no room id"}, nil)
	if err := short(cfg); !errors.As(err, &ae) || ae.Addr != e.addr(client.WS) {
		t.Fatalf("auth refused: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	var de *client.DialError
	if err := short(client.Config{Addrs: []string{dead}}); !errors.As(err, &de) || de.Addr != dead {
		t.Fatalf("nothing listening: %v", err)
	}
	// Both addresses fail: both errors are in the cause.
	cfg = client.Config{Addrs: []string{dead, e.addr(client.TCP)}, Auth: client.Auth{RoomID: "no room id"}}
	if err := short(cfg); !errors.As(err, &de) || !errors.As(err, &ae) {
		t.Fatalf("two addresses: %v", err)
	}
	errToken := errors.New("no token today")
	cfg = e.config(client.TCP, client.Auth{Mid: e.id()}, nil)
	cfg.Token = func(context.Context) (string, error) { return "", errToken }
	if err := short(cfg); !errors.Is(err, errToken) {
		t.Fatalf("token error: %v", err)
	}
}

// testClientClose: after Close every method says ErrClosed, Done and
// Messages are closed, Closed is the last state.
func testClientClose(t *testing.T, e *env) {
	rec := &recorder{}
	c := connect(t, e.config(client.WSS, client.Auth{Mid: e.id(), RoomID: "live://hl-close"}, rec))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if err := c.Close(); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.ChangeRoom(t.Context(), "live://other"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("ChangeRoom after Close: %v", err)
	}
	if err := c.Sub(t.Context(), 1); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Sub after Close: %v", err)
	}
	if err := c.Unsub(t.Context(), 1); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Unsub after Close: %v", err)
	}
	if _, ok := <-c.Messages(); ok || c.Addr() != "" || c.Room() != "live://hl-close" {
		t.Fatalf("after Close: addr %q room %q", c.Addr(), c.Room())
	}
	ev := rec.events()
	if ev[len(ev)-1].s != client.Closed || rec.count(client.Closed) != 1 {
		t.Fatalf("states %v", ev)
	}
}

// clientGoroutines counts the goroutines running code of the client
// package.
func clientGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	var stacks []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/goim/goim/client.") {
			n++
			stacks = append(stacks, g)
		}
	}
	return n, strings.Join(stacks, "\n\n")
}

// testClientGoroutines: clients on every transport, with messages and
// OnMessage, with a request pending and while reconnecting, leave no
// goroutine behind after Close; the process's count settles back.
func testClientGoroutines(t *testing.T, e *env) {
	before := runtime.NumGoroutine()
	var cs []*client.Client
	for i, tr := range transports {
		cfg := e.config(tr, client.Auth{Mid: e.id(), RoomID: "live://hl-leak"}, nil)
		if i%2 == 0 {
			cfg.OnMessage = func(client.Message) {}
		}
		cs = append(cs, connect(t, cfg))
	}
	e.c.Push("/goim/push/room?operation=1000&type=live&room=hl-leak", "x")
	// One reconnecting: a refused room, a long back-off.
	cfg := e.config(client.TCP, client.Auth{Mid: e.id()}, nil)
	cfg.Backoff = &client.Backoff{Base: time.Hour, Max: time.Hour, Factor: 1}
	rc := connect(t, cfg)
	_ = rc.ChangeRoom(t.Context(), "no room id")
	cs = append(cs, rc)
	if n, _ := clientGoroutines(); n == 0 {
		t.Fatal("no client goroutine counted")
	}
	for _, c := range cs {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n, stacks := clientGoroutines(); n != 0 {
		t.Fatalf("%d client goroutines after Close:\n%s", n, stacks)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
}

// TestClientFake: against fake comets, a missed heartbeat reply drops
// the connection, a request waits for its reply until ctx ends, and
// Close fails a pending request with ErrClosed.
func TestClientFake(t *testing.T) {
	authReply := protocol.AppendFrame(nil, 1, protocol.OpAuthReply, 1, nil)
	t.Run("heartbeat timeout", func(t *testing.T) {
		addr := fakeComet(t, func(nc net.Conn) { _, _ = nc.Write(authReply) })
		rec := &recorder{}
		c := connect(t, client.Config{Addrs: []string{addr}, Heartbeat: 100 * time.Millisecond, OnState: rec.onState,
			Backoff: &client.Backoff{Base: time.Hour, Max: time.Hour}})
		if ev := rec.wait(t, client.Disconnected, 1); !errors.Is(ev.err, client.ErrHeartbeatTimeout) {
			t.Fatalf("dropped with %v", ev.err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("heartbeat from the nodes answer", func(t *testing.T) {
		// A logic whose answer says heartbeat 0.1s, pointing at a comet
		// that never answers heartbeats.
		addr := fakeComet(t, func(nc net.Conn) { _, _ = nc.Write(authReply) })
		h, p, _ := net.SplitHostPort(addr)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/goim/nodes/weighted" || r.URL.Query().Get("platform") != "ios" {
				http.NotFound(w, r)
				return
			}
			fmt.Fprintf(w, `{"code":0,"message":"","data":{"tcp_port":%s,"heartbeat":0.1,"nodes":[%q],`+
				`"backoff":{"base_delay":3600,"max_delay":3600,"factor":1,"jitter":0}}}`, p, h)
		}))
		defer srv.Close()
		rec := &recorder{}
		hc := &http.Client{}
		defer hc.CloseIdleConnections()
		start := time.Now()
		c := connect(t, client.Config{API: srv.URL, HTTPClient: hc, Auth: client.Auth{Platform: "ios"}, OnState: rec.onState})
		ev := rec.wait(t, client.Disconnected, 1)
		if !errors.Is(ev.err, client.ErrHeartbeatTimeout) || ev.at.Sub(start) < 100*time.Millisecond {
			t.Fatalf("dropped with %v after %v", ev.err, ev.at.Sub(start))
		}
		// The hint's back-off is an hour: no second attempt.
		time.Sleep(100 * time.Millisecond)
		if n := rec.count(client.Connecting); n != 1 {
			t.Fatalf("%d attempts: %v", n, rec.events())
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("backoff grows", func(t *testing.T) {
		// Nothing listening: each failed attempt waits longer.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close()
		rec := &recorder{}
		bo := client.Backoff{Base: 50 * time.Millisecond, Max: time.Second, Factor: 2}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(5*time.Second, cancel)
		go func() { // cancel after the fifth dial
			defer cancel()
			for ctx.Err() == nil {
				rec.mu.Lock()
				n := len(rec.dials)
				rec.mu.Unlock()
				if n >= 5 {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		_, err = client.Connect(ctx, client.Config{Addrs: []string{dead}, Backoff: &bo,
			Dial: client.DialOptions{NetDial: rec.dialer(nil)}})
		var de *client.DialError
		if !errors.As(err, &de) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Connect: %v", err)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.dials) < 5 {
			t.Fatalf("%d dials within 5s", len(rec.dials))
		}
		for i := 1; i < 5; i++ {
			if gap, least := rec.dials[i].Sub(rec.dials[i-1]), bo.Delay(i-1, 0); gap < least {
				t.Fatalf("attempt %d %v after the one before, back-off %v", i, gap, least)
			}
		}
	})
	t.Run("pending request", func(t *testing.T) {
		addr := fakeComet(t, func(nc net.Conn) { _, _ = nc.Write(authReply) })
		c := connect(t, client.Config{Addrs: []string{addr}, Heartbeat: time.Hour})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if err := c.ChangeRoom(ctx, "live://1"); !errors.Is(err, context.DeadlineExceeded) || c.Room() != "" {
			t.Fatalf("ChangeRoom without a reply: %v, room %q", err, c.Room())
		}
		res := make(chan error, 1)
		go func() { res <- c.Sub(t.Context(), 1) }()
		time.Sleep(50 * time.Millisecond)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-res; !errors.Is(err, client.ErrClosed) {
			t.Fatalf("Sub pending at Close: %v", err)
		}
	})
}

// env2 is a cluster with two comets (each on every transport) that logic
// names in /goim/nodes/weighted as "<host>.client.test" with fixed ports;
// its dial function maps those names to the comets' real listeners, as a
// resolver would.
type env2 struct {
	c    *cluster.Cluster
	srv  map[string]*comet.Server
	tls  *tls.Config
	next atomic.Int64
}

const (
	hostDomain                 = ".client.test"
	portTCP, portWS, portWSS   = 4201, 4202, 4203
	hintBase, hintJitter       = time.Second, 0.25
	env2BackoffMax, env2Factor = 20, 2
)

func startEnv2(t *testing.T) *env2 {
	t.Helper()
	c := cluster.StartWith(t, 0, cluster.Options{Logic: func(lc *logic.Config) {
		lc.Node.HostDomain = hostDomain
		lc.Node.TCPPort, lc.Node.WSPort, lc.Node.WSSPort = portTCP, portWS, portWSS
		lc.Backoff = logic.BackoffConfig{MaxDelay: env2BackoffMax, BaseDelay: int(hintBase / time.Second), Factor: env2Factor, Jitter: hintJitter}
	}})
	ca := testkit.NewCA(t, "client-test-2")
	e := &env2{c: c, srv: map[string]*comet.Server{}}
	for _, host := range []string{"comet-a", "comet-b"} {
		cert := ca.Server(host, host+hostDomain)
		e.srv[host] = c.StartCometWith(host, func(cfg *comet.Config) {
			cfg.WebSocket.TLSBind = []string{"127.0.0.1:0"}
			cfg.TLS = comet.TLSConfig{CertFile: cert.CertFile, KeyFile: cert.KeyFile}
		})
	}
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	e.tls = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	jobtest.Start(t, c, "job-client-test-2")
	testkit.WaitFor(t, 15*time.Second, func() error {
		n, err := client.FetchNodes(t.Context(), nil, c.API, "web")
		if err != nil {
			return err
		}
		if len(n.TCP) != 2 {
			return fmt.Errorf("nodes %v", n.TCP)
		}
		return nil
	})
	return e
}

// dial maps "<host>.client.test:<port>" to the comet's listener of the
// port's transport.
func (e *env2) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	srv := e.srv[strings.TrimSuffix(host, hostDomain)]
	tr := map[string]string{strconv.Itoa(portTCP): "tcp", strconv.Itoa(portWS): "ws", strconv.Itoa(portWSS): "wss"}[port]
	if srv == nil || tr == "" {
		return nil, fmt.Errorf("test resolver: unknown address %s", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, srv.Addrs(tr)[0].String())
}

func (e *env2) config(tr client.Transport, rec *recorder) client.Config {
	return client.Config{
		API:       e.c.API,
		Transport: tr,
		Auth:      client.Auth{Mid: 8000 + e.next.Add(1), Platform: "web", Accepts: []int32{1000}},
		Dial:      client.DialOptions{TLSConfig: e.tls, HandshakeTimeout: 5 * time.Second, NetDial: rec.dialer(e.dial)},
		OnState:   rec.onState,
	}
}

// host returns the comet name of a nodes address.
func host(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return strings.TrimSuffix(h, hostDomain)
}

// TestClientNodes: with logic's nodes answer, the back-off and token of
// each connect, and a comet drain after which the client reconnects to
// the other comet with its room and ops.
func TestClientNodes(t *testing.T) {
	e := startEnv2(t)
	t.Run("transports", func(t *testing.T) {
		for _, tr := range []client.Transport{client.TCP, client.WS, client.WSS} {
			rec := &recorder{}
			cfg := e.config(tr, rec)
			cfg.Auth.RoomID = "live://nodes-" + string(tr)
			c := connect(t, cfg)
			if h := host(c.Addr()); e.srv[h] == nil {
				t.Fatalf("%s: connected to %q", tr, c.Addr())
			}
			e.c.Push("/goim/push/room?operation=1000&type=live&room=nodes-"+string(tr), "hi "+string(tr))
			receiveUntil(t, c, 1000, "hi "+string(tr))
			_ = c.Close()
		}
	})
	t.Run("backoff hint", func(t *testing.T) { testBackoffHint(t, e) })
	t.Run("drain", func(t *testing.T) { testDrain(t, e) }) // last: a comet stays drained
}

// testBackoffHint: without Config.Backoff the client waits logic's hint
// (base 1s, jitter 0.25: at least 750ms) before reconnecting after a
// drop.
func testBackoffHint(t *testing.T, e *env2) {
	rec := &recorder{}
	cfg := e.config(client.TCP, rec)
	c := connect(t, cfg)
	if err := c.ChangeRoom(t.Context(), "no room id"); !errors.Is(err, client.ErrDisconnected) {
		t.Fatalf("ChangeRoom to a bad room: %v", err)
	}
	drop := rec.wait(t, client.Disconnected, 1)
	rec.wait(t, client.Connected, 2)
	hint := client.Backoff{Base: hintBase, Max: env2BackoffMax * time.Second, Factor: env2Factor, Jitter: hintJitter}
	if gap, least := rec.firstDialAfter(t, drop.at).Sub(drop.at), hint.Delay(0, 0); gap < least {
		t.Fatalf("reconnected %v after the drop, the hint says at least %v", gap, least)
	} else {
		t.Logf("reconnected %v after the drop (hint: at least %v)", gap, least)
	}
}

// testDrain: the client's comet drains; the client is dropped (close
// 1001 on WebSocket), waits its back-off (Base 300ms, no jitter: at least
// 300ms between the drop and the next dial), asks logic again, which no
// longer lists the draining comet, and gets pushes on the other comet in
// the room and with the ops it changed to.
func testDrain(t *testing.T, e *env2) {
	rec := &recorder{}
	cfg := e.config(client.WS, rec)
	cfg.Auth.RoomID = "live://drain-1"
	bo := client.Backoff{Base: 300 * time.Millisecond, Max: time.Second, Factor: 2}
	cfg.Backoff = &bo
	c := connect(t, cfg)
	if err := c.ChangeRoom(t.Context(), "live://drain-2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Sub(t.Context(), 1002); err != nil {
		t.Fatal(err)
	}
	first := c.Addr()
	e.srv[host(first)].Drain(context.Background(), 0)
	drop := rec.wait(t, client.Disconnected, 1)
	var ce *client.CloseError
	if !errors.As(drop.err, &ce) || ce.Code != 1001 {
		t.Fatalf("dropped with %v, want close 1001", drop.err)
	}
	rec.wait(t, client.Connected, 2)
	second := c.Addr()
	if second == "" || host(second) == host(first) {
		t.Fatalf("reconnected to %q, first on %q", second, first)
	}
	if gap, least := rec.firstDialAfter(t, drop.at).Sub(drop.at), bo.Delay(0, 0); gap < least {
		t.Fatalf("redialed %v after the drop, back-off at least %v", gap, least)
	} else {
		t.Logf("on %s, then %s, redialed %v after the drop", host(first), host(second), gap)
	}
	e.c.Push("/goim/push/room?operation=1000&type=live&room=drain-2", "on the other comet")
	receiveUntil(t, c, 1000, "on the other comet")
	e.c.Push("/goim/push/mids?operation=1002&mids="+strconv.FormatInt(cfg.Auth.Mid, 10), "subbed op")
	receiveUntil(t, c, 1002, "subbed op")
}
