package comet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	cometpb "github.com/goim/goim/api/comet"
	"github.com/goim/goim/api/protocol"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// expectPolicyClose waits for the server to close c for reason: a
// WebSocket client must get a close frame 1008 with the reason first.
func (c *client) expectPolicyClose(reason CloseReason) {
	c.t.Helper()
	err := c.closedWith()
	if !c.isWS() {
		return
	}
	var ce wsutil.ClosedError
	if !errors.As(err, &ce) || ce.Code != ws.StatusPolicyViolation || ce.Reason != reason.String() {
		c.t.Fatalf("%s: closed with %v, want close frame 1008 %q", c.tr, err, reason)
	}
}

// waitCloseCount waits until reason was counted n times.
func waitCloseCount(t *testing.T, e *testEnv, reason CloseReason, n int) {
	t.Helper()
	waitFor(t, 5*time.Second, func() error {
		if got := e.closes(reason); got != n {
			return fmt.Errorf("%d closes for %s, want %d", got, reason, n)
		}
		return nil
	})
}

// roomMembers returns the number of members of room id on the comet.
func roomMembers(e *testEnv, id string) int32 {
	return e.srv.rooms.counts()[id]
}

// TestChangeRoomAuthorised: op 12 is checked against the rooms logic
// granted the connection (a token "rooms=..." of the test logic): a room
// outside them closes the connection (room_denied) without op 13 and
// without joining, an invalid room id closes it (bad_room); allowed rooms,
// patterns and leaving (empty body) are answered by op 13.
func TestChangeRoomAuthorised(t *testing.T) {
	e := startComet(t, nil)
	for _, tr := range []string{"tcp", "ws"} {
		t.Run(tr, func(t *testing.T) {
			key := "cr-" + tr
			c := dial(t, e, tr)
			c.auth(`{"key":"` + key + `","room_id":"live://1","token":"rooms=live://1,chat://*"}`)
			for _, room := range []string{"chat://a", "chat://b/c", "", "live://1"} {
				seq := c.send(protocol.OpChangeRoom, []byte(room))
				if p := c.expect(protocol.OpChangeRoomReply, seq); string(p.Body) != room {
					t.Fatalf("op 13 body %q, want %q", p.Body, room)
				}
			}
			before := e.closes(ReasonRoomDenied)
			c.send(protocol.OpChangeRoom, []byte("live://vip"))
			c.expectPolicyClose(ReasonRoomDenied)
			waitCloseCount(t, e, ReasonRoomDenied, before+1)
			if n := roomMembers(e, "live://vip"); n != 0 {
				t.Fatalf("live://vip has %d members after a denied join", n)
			}
			waitFor(t, 5*time.Second, func() error {
				if ch := e.srv.bucket(key).get(key); ch != nil {
					return errors.New("the denied connection is still published")
				}
				return nil
			})
		})
	}
	t.Run("bad room ids", func(t *testing.T) {
		for i, room := range []string{strings.Repeat("a", protocol.MaxRoomIDLen+1), "live://a b", "live://\x00", "live://é"} {
			for _, tr := range []string{"tcp", "ws"} {
				c := dial(t, e, tr)
				c.auth(fmt.Sprintf(`{"key":"bad-%d-%s"}`, i, tr)) // insecure-style: no rooms limit
				before := e.closes(ReasonBadRoom)
				c.send(protocol.OpChangeRoom, []byte(room))
				c.expectPolicyClose(ReasonBadRoom)
				waitCloseCount(t, e, ReasonBadRoom, before+1)
			}
		}
		// The longest valid id is fine.
		c := dial(t, e, "tcp")
		c.auth(`{"key":"long"}`)
		room := "live://" + strings.Repeat("x", protocol.MaxRoomIDLen-7)
		seq := c.send(protocol.OpChangeRoom, []byte(room))
		c.expect(protocol.OpChangeRoomReply, seq)
	})
	t.Run("no rooms granted", func(t *testing.T) {
		c := dial(t, e, "tcp")
		c.auth(`{"key":"none","token":"rooms="}`)
		seq := c.send(protocol.OpChangeRoom, nil) // leaving is always allowed
		c.expect(protocol.OpChangeRoomReply, seq)
		c.send(protocol.OpChangeRoom, []byte("live://1"))
		c.expectPolicyClose(ReasonRoomDenied)
	})
}

// TestAuthReplyRoomChecked: a room in logic's auth answer that the answer
// itself does not grant, or that is not a valid room id, is refused: no op
// 8, the connection closed with the reason, logic told to drop the session
// (a Disconnect with the connection's conn id).
func TestAuthReplyRoomChecked(t *testing.T) {
	e := startComet(t, nil)
	cases := []struct {
		name, body string
		reason     CloseReason
	}{
		{name: "outside the grant", body: `{"key":"ar1","room_id":"live://2","token":"rooms=live://1"}`, reason: ReasonRoomDenied},
		{name: "invalid id", body: `{"key":"ar2","room_id":"live://a b"}`, reason: ReasonBadRoom},
	}
	for _, tc := range cases {
		for _, tr := range []string{"tcp", "ws"} {
			t.Run(tc.name+"/"+tr, func(t *testing.T) {
				before := e.closes(tc.reason)
				c := dial(t, e, tr)
				c.send(protocol.OpAuth, []byte(tc.body))
				if p, err := c.read(); err == nil {
					t.Fatalf("got op %d, want the connection closed", p.Op)
				}
				waitCloseCount(t, e, tc.reason, before+1)
			})
		}
	}
	waitFor(t, 5*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			for _, key := range []string{"ar1", "ar2"} {
				// Each connection's own conn id, in any order: the
				// disconnect workers are several, so two connections'
				// disconnects may reach logic in either order.
				got, want := slices.Sorted(slices.Values(l.dconnIDs[key])), slices.Sorted(slices.Values(l.connIDs[key]))
				if len(got) != 2 || fmt.Sprint(got) != fmt.Sprint(want) {
					return fmt.Errorf("key %s: disconnect conn ids %v, connect conn ids %v", key, got, want)
				}
			}
			return nil
		})
	})
	if n := roomMembers(e, "live://2") + roomMembers(e, "live://a b"); n != 0 {
		t.Fatalf("%d members in refused rooms", n)
	}
}

// TestMaxRooms: a join that would create a room past limits.max_rooms is
// closed (too_many_rooms), by op 12 or by the auth answer's room; joining
// an existing room is fine, and an emptied room frees its place.
func TestMaxRooms(t *testing.T) {
	e := startComet(t, func(c *Config) { c.Limits.MaxRooms = 2 })
	a := dial(t, e, "tcp")
	a.auth(`{"key":"mr-a","room_id":"live://1"}`)
	b := dial(t, e, "ws")
	b.auth(`{"key":"mr-b"}`)
	seq := b.send(protocol.OpChangeRoom, []byte("live://2"))
	b.expect(protocol.OpChangeRoomReply, seq)

	c := dial(t, e, "ws")
	c.auth(`{"key":"mr-c","room_id":"live://1"}`) // an existing room
	c.send(protocol.OpChangeRoom, []byte("live://3"))
	c.expectPolicyClose(ReasonTooManyRooms)
	waitCloseCount(t, e, ReasonTooManyRooms, 1)

	d := dial(t, e, "tcp")
	d.send(protocol.OpAuth, []byte(`{"key":"mr-d","room_id":"live://3"}`))
	d.expectClosed()
	waitCloseCount(t, e, ReasonTooManyRooms, 2)

	seq = a.send(protocol.OpChangeRoom, nil) // live://1 empties
	a.expect(protocol.OpChangeRoomReply, seq)
	waitFor(t, 5*time.Second, func() error {
		if n := e.srv.rooms.len(); n != 1 {
			return fmt.Errorf("%d rooms, want 1", n)
		}
		return nil
	})
	f := dial(t, e, "tcp")
	f.auth(`{"key":"mr-f","room_id":"live://3"}`)
	if n := e.srv.rooms.len(); n != 2 {
		t.Fatalf("%d rooms, want 2", n)
	}
}

// TestFrameRate: a client sending more than limits.frames_per_second
// frames in a second is closed (frame_rate); one under it is not.
func TestFrameRate(t *testing.T) {
	const limit = 5
	e := startComet(t, func(c *Config) { c.Limits.FramesPerSecond = limit })
	for i, tr := range []string{"tcp", "ws"} {
		t.Run(tr, func(t *testing.T) {
			ok := dial(t, e, tr)
			ok.auth(fmt.Sprintf(`{"key":"fr-ok-%s"}`, tr))
			for range limit - 1 {
				seq := ok.send(protocol.OpHeartbeat, nil)
				ok.expect(protocol.OpHeartbeatReply, seq)
			}

			c := dial(t, e, tr)
			c.auth(fmt.Sprintf(`{"key":"fr-%s"}`, tr))
			// 3 × limit + 1 frames in one write: more than the limit in
			// one window wherever the window boundaries fall.
			var burst []byte
			for range 3*limit + 1 {
				p := protocol.Proto{Ver: 1, Op: protocol.OpHeartbeat}
				if tr == "ws" {
					var buf bytes.Buffer
					_ = wsutil.WriteClientBinary(&buf, p.AppendTCP(nil))
					burst = append(burst, buf.Bytes()...)
				} else {
					burst = p.AppendTCP(burst)
				}
			}
			if _, err := c.conn.Write(burst); err != nil {
				t.Fatal(err)
			}
			c.expectPolicyClose(ReasonFrameRate)
			waitCloseCount(t, e, ReasonFrameRate, i+1)

			// The client under the limit is still served.
			seq := ok.send(protocol.OpHeartbeat, nil)
			ok.expect(protocol.OpHeartbeatReply, seq)
		})
	}
	t.Run("websocket pings count", func(t *testing.T) {
		c := dial(t, e, "ws")
		c.auth(`{"key":"fr-ping"}`)
		var burst bytes.Buffer
		for range 3*limit + 1 {
			_ = ws.WriteFrame(&burst, ws.MaskFrame(ws.NewPingFrame([]byte("p"))))
		}
		if _, err := c.conn.Write(burst.Bytes()); err != nil {
			t.Fatal(err)
		}
		for {
			_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			h, err := ws.ReadHeader(c.conn)
			if err != nil {
				t.Fatalf("no close frame: %v", err)
			}
			payload := make([]byte, h.Length)
			if _, err := io.ReadFull(c.conn, payload); err != nil {
				t.Fatal(err)
			}
			if h.OpCode == ws.OpClose {
				code, reason := ws.ParseCloseFrameData(payload)
				if code != ws.StatusPolicyViolation || reason != ReasonFrameRate.String() {
					t.Fatalf("close frame %d %q", code, reason)
				}
				break
			}
		}
		waitCloseCount(t, e, ReasonFrameRate, 3)
	})
}

// TestAuthLoopLimited: connecting, authenticating and closing in a loop
// from one IP spends the IP's handshake budget as keeping the connections
// would: the per-IP state outlives the IP's last connection.
func TestAuthLoopLimited(t *testing.T) {
	// One handshake per 5 s (burst 1): a loop of a few handshakes in a
	// row is refused unless the bucket was reset in between.
	e := startComet(t, func(c *Config) { c.Limits.AuthRatePerIP = 0.2 })
	authed := 0
	for i := range 5 {
		c := dial(t, e, "tcp")
		seq := c.send(protocol.OpAuth, []byte(fmt.Sprintf(`{"key":"loop-%d"}`, i)))
		if p, err := c.read(); err == nil && p.Op == protocol.OpAuthReply && p.Seq == seq {
			authed++
		}
		_ = c.conn.Close()
		// The IP has no connection left before the next round.
		waitFor(t, 5*time.Second, func() error {
			if n := e.srv.limits.conns.Load(); n != 0 {
				return fmt.Errorf("%d connections open", n)
			}
			return nil
		})
	}
	if authed != 1 {
		t.Fatalf("%d of 5 looped handshakes accepted, want 1 (the burst)", authed)
	}
	waitCloseCount(t, e, ReasonAuthRate, 4)
	if n := e.srv.limits.ips.entries(); n != 1 {
		t.Fatalf("%d per-IP entries, want 1 (kept without connections)", n)
	}
	if n := e.srv.limits.ips.distinct(); n != 0 {
		t.Fatalf("%d IPs with connections, want 0", n)
	}
}

// TestIPCounterExpiry: an entry without connections goes once its token
// bucket is full again (at the last close, or at a sweep), not before;
// with no auth rate it goes with the last connection.
func TestIPCounterExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	ip := netip.MustParseAddr("192.0.2.1")
	c := newIPCounter(4)
	const rate = 2.0 // burst 2: full again 1 s after being emptied

	if !c.add(ip, 0) || !c.startAuth(ip, rate, 0, now) {
		t.Fatal("first connection refused")
	}
	c.endAuth(ip)
	c.remove(ip, rate, now)
	if c.entries() != 1 {
		t.Fatal("entry dropped with tokens spent")
	}
	// A new connection finds the spent bucket: 1 token left, then none.
	c.add(ip, 0)
	if !c.startAuth(ip, rate, 0, now) {
		t.Fatal("second token refused")
	}
	c.endAuth(ip)
	if c.startAuth(ip, rate, 0, now) {
		t.Fatal("third handshake in the same instant allowed with a burst of 2")
	}
	c.remove(ip, rate, now)
	c.sweep(rate, now.Add(500*time.Millisecond))
	if c.entries() != 1 {
		t.Fatal("entry swept before its bucket was full")
	}
	c.sweep(rate, now.Add(time.Second))
	if c.entries() != 0 {
		t.Fatal("entry kept after its bucket was full")
	}

	// Pending handshakes keep an entry too, and are bounded.
	c.add(ip, 0)
	if !c.startAuth(ip, 0, 1, now) {
		t.Fatal("first pending handshake refused")
	}
	if c.startAuth(ip, 0, 1, now) {
		t.Fatal("second pending handshake allowed with pending_auth_per_ip 1")
	}
	c.remove(ip, 0, now)
	c.sweep(0, now)
	if c.entries() != 1 {
		t.Fatal("entry with a pending handshake dropped")
	}
	c.endAuth(ip)
	c.sweep(0, now)
	if c.entries() != 0 {
		t.Fatal("entry kept without connections, handshakes or a bucket")
	}

	// No auth rate: the entry goes with the last connection.
	c.add(ip, 0)
	c.remove(ip, 0, now)
	if c.entries() != 0 || c.distinct() != 0 {
		t.Fatalf("%d entries, %d active after the last close with no rate", c.entries(), c.distinct())
	}
}

func TestIPKey(t *testing.T) {
	cases := []struct{ in, want string }{
		{in: "192.0.2.1", want: "192.0.2.1"},
		{in: "::ffff:192.0.2.1", want: "192.0.2.1"},
		{in: "2001:db8:1:2::1", want: "2001:db8:1:2::"},
		{in: "2001:db8:1:2:ffff:ffff:ffff:ffff", want: "2001:db8:1:2::"},
		{in: "2001:db8:1:3::1", want: "2001:db8:1:3::"},
		{in: "fe80::1%eth0", want: "fe80::"},
		{in: "::1", want: "::"},
	}
	for _, tc := range cases {
		if got := ipKey(netip.MustParseAddr(tc.in)); got.String() != tc.want {
			t.Errorf("ipKey(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestMaxConnsPerIPv6Prefix: two addresses of one /64 share the per-IP
// connection limit, over real IPv6 loopback sockets when the host has
// them (the /64 of ::1 is ::/64).
func TestMaxConnsPerIPv6Prefix(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	_ = ln.Close()
	e := startComet(t, func(c *Config) {
		c.TCP.Bind = []string{"[::1]:0"}
		c.Limits.MaxConnsPerIP = 1
	})
	first := dial(t, e, "tcp")
	first.auth(`{"key":"v6-1"}`)
	second := dial(t, e, "tcp")
	second.expectClosed()
	waitCloseCount(t, e, ReasonTooManyConn, 1)
	if k := ipKey(netip.MustParseAddr("::1")); k != ipKey(netip.MustParseAddr("::2")) {
		t.Fatalf("::1 and ::2 counted apart (%s)", k)
	}
}

// dialFrom dials the comet's TCP listener from source address src (any
// 127.0.0.0/8 address works on Linux loopback).
func dialFrom(t *testing.T, e *testEnv, src string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", e.addr("tcp"))
	if err != nil {
		t.Skipf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &client{t: t, e: e, tr: "tcp", conn: conn, r: bufio.NewReader(conn)}
}

// TestPendingAuthPerIP: while logic is slow, one IP's handshakes beyond
// limits.pending_auth_per_ip are refused (auth_rate) at once, and another
// IP's handshake still gets its place in the queue and its answer.
func TestPendingAuthPerIP(t *testing.T) {
	e := startComet(t, func(c *Config) {
		c.Limits.AuthRatePerIP = 0
		c.Limits.PendingAuthPerIP = 2
	})
	gate := make(chan struct{})
	_ = e.logic.check(func(l *testLogic) error { l.gate = gate; return nil })
	var flood []*client
	for i := range 5 {
		c := dialFrom(t, e, "127.0.0.1")
		c.send(protocol.OpAuth, []byte(fmt.Sprintf(`{"key":"flood-%d"}`, i)))
		flood = append(flood, c)
	}
	waitCloseCount(t, e, ReasonAuthRate, 3)
	good := dialFrom(t, e, "127.0.0.2")
	seq := good.send(protocol.OpAuth, []byte(`{"key":"good"}`))
	waitFor(t, 5*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			at := l.connects
			for _, b := range l.batches {
				at += b
			}
			if q := e.srv.logic.connects.Queued(); q+at != 3 {
				return fmt.Errorf("%d handshakes queued and %d at logic, want 3 (2 flood, 1 good)", q, at)
			}
			return nil
		})
	})
	close(gate)
	good.expect(protocol.OpAuthReply, seq)
	answered := 0
	for _, c := range flood {
		if p, err := c.read(); err == nil && p.Op == protocol.OpAuthReply {
			answered++
		}
	}
	if answered != 2 {
		t.Fatalf("%d flood handshakes answered, want 2", answered)
	}
	if e.closes(ReasonAuthRate) != 3 {
		t.Fatalf("%d auth_rate closes, want 3", e.closes(ReasonAuthRate))
	}
}

// TestPacedBroadcastIsolated: a paced broadcast (speed 1 to many
// channels, 20 s of pacing) delays neither a later unpaced broadcast nor
// a room push: both arrive while it still runs. A paced broadcast past
// bucket.paced_broadcasts is refused at once (ResourceExhausted).
func TestPacedBroadcastIsolated(t *testing.T) {
	e := startComet(t, func(c *Config) {
		unlimited(c) // 20 clients from one IP
		c.Bucket.PacedBroadcasts = 1
	})
	const n = 20
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, e, transports[i%len(transports)])
		clients[i].auth(fmt.Sprintf(`{"key":"iso-%d","room_id":"live://iso","accepts":[1000]}`, i))
	}
	ctx := context.Background()
	if _, err := e.push.Broadcast(ctx, &cometpb.BroadcastReq{ProtoOp: 1000, Speed: 1,
		Proto: &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("slow")}}); err != nil {
		t.Fatal(err)
	}
	_, err := e.push.Broadcast(ctx, &cometpb.BroadcastReq{ProtoOp: 1000, Speed: 1,
		Proto: &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("slow 2")}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second paced broadcast: %v, want ResourceExhausted", err)
	}
	if _, err := e.push.Broadcast(ctx, &cometpb.BroadcastReq{ProtoOp: 1000,
		Proto: &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("fast")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.push.BroadcastRoom(ctx, &cometpb.BroadcastRoomReq{RoomID: "live://iso",
		Proto: &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("room")}}); err != nil {
		t.Fatal(err)
	}
	// Every client gets "fast" and "room" (each read waits up to 5 s;
	// the paced broadcast reaches the last client only after ~19 s).
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			want := map[string]bool{"fast": true, "room": true}
			for len(want) > 0 {
				p, err := c.read()
				if err != nil {
					t.Errorf("%s: still waiting for %v: %v", c.tr, want, err)
					return
				}
				delete(want, string(p.Body))
			}
		})
	}
	wg.Wait()
	if n := len(e.srv.broadcasts.paced); n != 1 {
		t.Fatalf("%d paced broadcasts running, want the slow one", n)
	}
}

// TestBroadcastRoomBadID: BroadcastRoom refuses an invalid room id.
func TestBroadcastRoomBadID(t *testing.T) {
	e := startComet(t, nil)
	for _, room := range []string{"live://a b", strings.Repeat("r", protocol.MaxRoomIDLen+1), "live://\n"} {
		_, err := e.push.BroadcastRoom(context.Background(), &cometpb.BroadcastRoomReq{RoomID: room,
			Proto: &protocol.Proto{Ver: 1, Op: 1000}})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("room %q: %v, want InvalidArgument", room, err)
		}
	}
}

// TestConnIDs: every connection has its own non-zero conn id, sent in its
// Connect, Heartbeat and Disconnect; a connection evicted by a newer one
// with the same key disconnects with its own id, not the newer one's.
func TestConnIDs(t *testing.T) {
	e := startComet(t, func(c *Config) { c.Protocol.SessionRenew = 1 }) // renew on every heartbeat
	a := dial(t, e, "tcp")
	a.auth(`{"key":"same"}`)
	seq := a.send(protocol.OpHeartbeat, nil)
	a.expect(protocol.OpHeartbeatReply, seq)
	b := dial(t, e, "ws")
	b.auth(`{"key":"same"}`) // evicts a
	a.expectClosed()
	seq = b.send(protocol.OpHeartbeat, nil)
	b.expect(protocol.OpHeartbeatReply, seq)
	_ = b.conn.Close()
	waitFor(t, 5*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			ids := l.connIDs["same"]
			if len(ids) != 2 || ids[0] == 0 || ids[1] == 0 || ids[0] == ids[1] {
				return fmt.Errorf("connect conn ids %v, want two different non-zero ids", ids)
			}
			// Each connection's heartbeat and disconnect carry its own
			// conn id. They may reach logic in either order: a heartbeat
			// is answered before its renewal goes to logic, so a's
			// renewal can still be on its way while b connects and
			// beats, and the disconnect workers are several.
			want := slices.Sorted(slices.Values(ids))
			if hb := slices.Sorted(slices.Values(l.hbConnIDs["same"])); !slices.Equal(hb, want) {
				return fmt.Errorf("heartbeat conn ids %v, want %v", hb, want)
			}
			d := slices.Sorted(slices.Values(l.dconnIDs["same"]))
			if !slices.Equal(d, want) {
				return fmt.Errorf("disconnect conn ids %v, want %v", d, want)
			}
			return nil
		})
	})
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestRepeatedWarningsLimited: a logic failing every Receive logs a few
// warnings, not one per frame.
func TestRepeatedWarningsLimited(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	e := startCometLog(t, nil, log)
	_ = e.logic.check(func(l *testLogic) error { l.receiveErr = status.Error(codes.Unavailable, "down"); return nil })
	c := dial(t, e, "tcp")
	c.auth(`{"key":"warn"}`)
	const frames = 20
	for range frames {
		seq := c.send(1000, []byte("x"))
		c.expect(1000, seq)
	}
	if n := strings.Count(buf.String(), msgReceiveFailed); n != warnBurst {
		t.Fatalf("%d warnings for %d failed Receive calls, want %d:\n%s", n, frames, warnBurst, buf.String())
	}
}

// FuzzRoomGrant: a grant allows exactly the room ids protocol.RoomAllowed
// allows for its valid patterns (invalid ones are dropped), whatever logic
// sends. Patterns are given joined by "|".
func FuzzRoomGrant(f *testing.F) {
	f.Add("live://1|chat://*", "chat://x", true)
	f.Add("*", "live://1", true)
	f.Add("", "live://1", true)
	f.Add("live://a\nlive://b|bad room", "live://b", true)
	f.Add("live://1", "live://1", false)
	f.Fuzz(func(t *testing.T, joined, id string, limited bool) {
		var patterns []string
		if joined != "" {
			patterns = strings.Split(joined, "|")
		}
		g := newRoomGrant(limited, patterns)
		if protocol.CheckRoomID(id) != nil {
			return // the comet checks the id first
		}
		var valid []string
		for _, p := range patterns {
			if protocol.CheckRoomPattern(p) == nil {
				valid = append(valid, p)
			}
		}
		want := !limited || protocol.RoomAllowed(valid, id)
		if got := g.allows(id); got != want {
			t.Fatalf("patterns %q limited %v: allows(%q) = %v, want %v", patterns, limited, id, got, want)
		}
	})
}
