package comet

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var transports = []string{"tcp", "tls", "ws", "wss"}

// TestOps exercises every client op on every transport.
func TestOps(t *testing.T) {
	e := startComet(t, nil)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c := dial(t, e, tr)
			key := "ops-" + tr
			c.auth(fmt.Sprintf(`{"mid":7,"key":%q,"room_id":"live://%s","platform":"web","accepts":[1000]}`, key, tr))

			// Heartbeat: op 3 with the room's online count (this client).
			seq := c.send(protocol.OpHeartbeat, nil)
			p := c.expect(protocol.OpHeartbeatReply, seq)
			if len(p.Body) != 4 || binary.BigEndian.Uint32(p.Body) != 1 {
				t.Fatalf("heartbeat reply body % x, want online count 1", p.Body)
			}

			// Change room: the body is echoed and the room follows.
			seq = c.send(protocol.OpChangeRoom, []byte("live://other-"+tr))
			if p := c.expect(protocol.OpChangeRoomReply, seq); string(p.Body) != "live://other-"+tr {
				t.Fatalf("change room echo %q", p.Body)
			}
			waitFor(t, time.Second, func() error {
				counts := e.srv.rooms.counts()
				if counts["live://other-"+tr] != 1 || counts["live://"+tr] != 0 {
					return fmt.Errorf("room counts %v", counts)
				}
				return nil
			})

			// Sub and unsub change what key pushes reach.
			seq = c.send(protocol.OpSub, []byte("1001, 1002"))
			if p := c.expect(protocol.OpSubReply, seq); string(p.Body) != "1001, 1002" {
				t.Fatalf("sub echo %q", p.Body)
			}
			seq = c.send(protocol.OpUnsub, []byte("1000"))
			c.expect(protocol.OpUnsubReply, seq)
			seq = c.send(protocol.OpSub, []byte("12,x")) // malformed: nothing changes, still echoed
			if p := c.expect(protocol.OpSubReply, seq); string(p.Body) != "12,x" {
				t.Fatalf("sub echo %q", p.Body)
			}
			res := e.srv.PushKeys([]string{key}, 1000, &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("no")})
			if res.Filtered != 1 {
				t.Fatalf("push of unwatched op: %+v", res)
			}
			res = e.srv.PushKeys([]string{key}, 1002, &protocol.Proto{Ver: 1, Op: 1002, Body: []byte("yes")})
			if res.Delivered != 1 {
				t.Fatalf("push of watched op: %+v", res)
			}
			if p := c.expect(1002, 0); string(p.Body) != "yes" {
				t.Fatalf("push body %q", p.Body)
			}

			// Any other op goes to logic; the reply is the same op, empty.
			seq = c.send(5000, []byte(`{"up":1}`))
			if p := c.expect(5000, seq); len(p.Body) != 0 {
				t.Fatalf("reply to op 5000 has body %q", p.Body)
			}
			waitFor(t, time.Second, func() error {
				return e.logic.check(func(l *testLogic) error {
					for _, p := range l.received {
						if p.Op == 5000 && string(p.Body) == `{"up":1}` {
							return nil
						}
					}
					return fmt.Errorf("logic received %d frames, none is op 5000", len(l.received))
				})
			})
		})
	}
}

func TestPushOverGRPC(t *testing.T) {
	e := startComet(t, nil)
	ctx := context.Background()
	clients := map[string]*client{}
	for _, tr := range transports {
		c := dial(t, e, tr)
		c.auth(fmt.Sprintf(`{"mid":1,"key":"push-%s","room_id":"live://1000","accepts":[1000,1001]}`, tr))
		clients[tr] = c
	}
	other := dial(t, e, "tcp")
	other.auth(`{"mid":2,"key":"other","room_id":"live://2000","accepts":[2000]}`)

	t.Run("PushMsg counts every key", func(t *testing.T) {
		reply, err := e.push.PushMsg(ctx, &cometpb.PushMsgReq{
			Keys:    []string{"push-tcp", "push-ws", "other", "nobody"},
			ProtoOp: 1000,
			Proto:   &protocol.Proto{Ver: 1, Op: 1000, Body: []byte(`{"k":1}`)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if reply.Delivered != 2 || reply.Filtered != 1 || reply.Absent != 1 || reply.Dropped != 0 {
			t.Fatalf("reply %+v", reply)
		}
		for _, tr := range []string{"tcp", "ws"} {
			if p := clients[tr].expect(1000, 0); string(p.Body) != `{"k":1}` || p.Ver != 1 {
				t.Fatalf("%s got %q", tr, p.Body)
			}
		}
	})

	t.Run("BroadcastRoom delivers an op-9 batch in order", func(t *testing.T) {
		for i := range 3 {
			var b protocol.Batch
			_ = b.Append(1000, []byte(fmt.Sprintf(`{"n":%d}`, 2*i)))
			_ = b.Append(1000, []byte(fmt.Sprintf(`{"n":%d}`, 2*i+1)))
			if _, err := e.push.BroadcastRoom(ctx, &cometpb.BroadcastRoomReq{
				RoomID: "live://1000", Proto: &protocol.Proto{Ver: 1, Op: protocol.OpRaw, Body: b.Frames()},
			}); err != nil {
				t.Fatal(err)
			}
		}
		for tr, c := range clients {
			for n := range 6 {
				if p := c.expect(1000, 0); string(p.Body) != fmt.Sprintf(`{"n":%d}`, n) {
					t.Fatalf("%s: message %d is %q", tr, n, p.Body)
				}
			}
		}
	})

	t.Run("Broadcast reaches only watchers", func(t *testing.T) {
		if _, err := e.push.Broadcast(ctx, &cometpb.BroadcastReq{ProtoOp: 2000, Proto: &protocol.Proto{Ver: 1, Op: 2000, Body: []byte("all")}}); err != nil {
			t.Fatal(err)
		}
		if p := other.expect(2000, 0); string(p.Body) != "all" {
			t.Fatalf("broadcast body %q", p.Body)
		}
		// The others do not watch 2000: the next thing they see is a later push.
		if _, err := e.push.Broadcast(ctx, &cometpb.BroadcastReq{ProtoOp: 1001, Proto: &protocol.Proto{Ver: 1, Op: 1001, Body: []byte("mine")}}); err != nil {
			t.Fatal(err)
		}
		for tr, c := range clients {
			if p := c.expect(1001, 0); string(p.Body) != "mine" {
				t.Fatalf("%s got %q", tr, p.Body)
			}
		}
	})

	t.Run("Rooms", func(t *testing.T) {
		reply, err := e.push.Rooms(ctx, &cometpb.RoomsReq{})
		if err != nil {
			t.Fatal(err)
		}
		if len(reply.Rooms) != 2 || !reply.Rooms["live://1000"] || !reply.Rooms["live://2000"] {
			t.Fatalf("rooms %v", reply.Rooms)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		if _, err := e.push.PushMsg(ctx, &cometpb.PushMsgReq{ProtoOp: 1}); err == nil || !strings.Contains(err.Error(), "needs keys") {
			t.Fatalf("PushMsg without keys: %v", err)
		}
		if _, err := e.push.BroadcastRoom(ctx, &cometpb.BroadcastRoomReq{Proto: &protocol.Proto{}}); err == nil {
			t.Fatal("BroadcastRoom without room accepted")
		}
		if _, err := e.push.Broadcast(ctx, &cometpb.BroadcastReq{}); err == nil {
			t.Fatal("Broadcast without proto accepted")
		}
	})
}

func TestOnlineReport(t *testing.T) {
	e := startComet(t, nil)
	e.logic.mu.Lock()
	e.logic.allRooms = map[string]int32{"live://big": 5000}
	e.logic.mu.Unlock()
	c := dial(t, e, "tcp")
	c.auth(`{"mid":3,"key":"online","room_id":"live://big","accepts":[]}`)
	waitFor(t, 2*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			for _, r := range l.reports {
				if r.Server == "comet-test" && r.RoomCount["live://big"] == 1 && r.ConnCount == 1 && r.IpCount == 1 {
					return nil
				}
			}
			return fmt.Errorf("no report with the room yet (%d reports)", len(l.reports))
		})
	})
	// The heartbeat reply carries the cluster-wide count once logic sent one.
	waitFor(t, 2*time.Second, func() error {
		seq := c.send(protocol.OpHeartbeat, nil)
		p := c.expect(protocol.OpHeartbeatReply, seq)
		if n := binary.BigEndian.Uint32(p.Body); n != 5000 {
			return fmt.Errorf("online %d", n)
		}
		return nil
	})
}

func TestDuplicateKeyEvictsOld(t *testing.T) {
	e := startComet(t, nil)
	old := dial(t, e, "tcp")
	old.auth(`{"mid":1,"key":"dup","accepts":[1000]}`)
	newer := dial(t, e, "ws")
	newer.auth(`{"mid":1,"key":"dup","accepts":[1000]}`)
	old.expectClosed()
	res := e.srv.PushKeys([]string{"dup"}, 1000, &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("to the new one")})
	if res.Delivered != 1 {
		t.Fatalf("push %+v", res)
	}
	newer.expect(1000, 0)
	waitFor(t, time.Second, func() error {
		if n := e.closes(ReasonReplaced); n != 1 {
			return fmt.Errorf("%d closes for %s", n, ReasonReplaced)
		}
		return nil
	})
}

func TestFramesSplitAcrossSegments(t *testing.T) {
	e := startComet(t, nil)
	c := dial(t, e, "tcp")
	auth := (&protocol.Proto{Ver: 1, Op: protocol.OpAuth, Seq: 1, Body: []byte(`{"key":"split","accepts":[1]}`)}).AppendTCP(nil)
	hb := (&protocol.Proto{Ver: 1, Op: protocol.OpHeartbeat, Seq: 2}).AppendTCP(nil)
	for _, b := range append(auth, hb...) {
		c.sendRaw([]byte{b})
	}
	c.expect(protocol.OpAuthReply, 1)
	c.expect(protocol.OpHeartbeatReply, 2)
	// Several frames in one segment are all answered, in order.
	var many []byte
	for i := int32(3); i < 8; i++ {
		many = (&protocol.Proto{Ver: 1, Op: protocol.OpHeartbeat, Seq: i}).AppendTCP(many)
	}
	c.sendRaw(many)
	for i := int32(3); i < 8; i++ {
		c.expect(protocol.OpHeartbeatReply, i)
	}
}

func TestFramesBeforeAuthAreIgnored(t *testing.T) {
	e := startComet(t, nil)
	c := dial(t, e, "tcp")
	c.send(protocol.OpHeartbeat, nil)
	c.send(1000, []byte("early"))
	c.auth(`{"key":"patient","accepts":[]}`)
}

func TestSessionRenewal(t *testing.T) {
	e := startComet(t, func(c *Config) { c.Protocol.SessionRenew = 1 }) // renew on every heartbeat
	c := dial(t, e, "tcp")
	c.auth(`{"mid":9,"key":"renew","accepts":[]}`)
	seq := c.send(protocol.OpHeartbeat, nil)
	c.expect(protocol.OpHeartbeatReply, seq)
	waitFor(t, time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			if len(l.heartbeats) == 0 || l.heartbeats[0] != "renew" {
				return fmt.Errorf("logic heartbeats %v", l.heartbeats)
			}
			return nil
		})
	})
}

// TestSessionResync: with the default 10 min session renewal, a heartbeat
// re-registers the session only after logic's Redis epoch changed (Redis
// lost its data), once per change.
func TestSessionResync(t *testing.T) {
	e := startComet(t, nil)
	e.logic.mu.Lock()
	e.logic.epoch = "a"
	e.logic.mu.Unlock()
	c := dial(t, e, "tcp")
	c.auth(`{"mid":9,"key":"resync","accepts":[]}`)
	heartbeats := func() int {
		n := 0
		_ = e.logic.check(func(l *testLogic) error { n = len(l.heartbeats); return nil })
		return n
	}
	// The reader renews after it queued the reply, and reads the next
	// frame only then: a second heartbeat's reply means the first one's
	// renewal is done.
	beat := func() {
		seq := c.send(protocol.OpHeartbeat, nil)
		c.expect(protocol.OpHeartbeatReply, seq)
	}
	// Let a report carry epoch "a": the first one seen is not a change.
	waitFor(t, 5*time.Second, func() error {
		e.srv.logic.epochMu.Lock()
		defer e.srv.logic.epochMu.Unlock()
		if e.srv.logic.epoch != "a" {
			return fmt.Errorf("comet's epoch %q", e.srv.logic.epoch)
		}
		return nil
	})
	beat()
	beat()
	if n := heartbeats(); n != 0 {
		t.Fatalf("%d session renewals before any epoch change", n)
	}
	e.logic.mu.Lock()
	e.logic.epoch = "b"
	e.logic.mu.Unlock()
	waitFor(t, 5*time.Second, func() error {
		if e.srv.logic.sessionGen.Load() != 1 {
			return fmt.Errorf("epoch change not noticed")
		}
		return nil
	})
	beat()
	beat()
	beat()
	if n := heartbeats(); n != 1 {
		t.Fatalf("%d session renewals after the epoch changed and three heartbeats, want 1", n)
	}
	if got := testutil.ToFloat64(e.srv.metrics.resyncs); got != 1 {
		t.Errorf("session_resyncs_total = %v, want 1", got)
	}
}

func TestDisconnectTellsLogic(t *testing.T) {
	e := startComet(t, nil)
	c := dial(t, e, "ws")
	c.auth(`{"mid":4,"key":"bye","room_id":"live://x","accepts":[]}`)
	_ = c.conn.Close()
	waitFor(t, 2*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			if len(l.disconnects) != 1 || l.disconnects[0] != "bye" {
				return fmt.Errorf("disconnects %v", l.disconnects)
			}
			return nil
		})
	})
	if n := len(e.srv.rooms.counts()); n != 0 {
		t.Fatalf("%d rooms left after the only member left", n)
	}
	if got := e.srv.bucket("bye").get("bye"); got != nil {
		t.Fatal("channel still in its bucket")
	}
}

func TestSlowConsumerIsClosed(t *testing.T) {
	e := startComet(t, func(c *Config) {
		c.Protocol.QueueBytes = 64 << 10
		c.Protocol.WriteTimeout = 1 << 62 // only the queue bound can end it
	})
	c := dial(t, e, "tcp")
	c.auth(`{"key":"slow","accepts":[1000]}`)
	big := &protocol.Proto{Ver: 1, Op: 1000, Body: bytes.Repeat([]byte("x"), 32<<10)}
	// The client never reads: socket buffers fill, then the queue, then the
	// comet closes it.
	waitFor(t, 10*time.Second, func() error {
		if res := e.srv.PushKeys([]string{"slow"}, 1000, big); res.Absent == 1 {
			return nil
		}
		return fmt.Errorf("still connected")
	})
	if n := e.closes(ReasonSlow); n != 1 {
		t.Fatalf("%d slow-consumer closes", n)
	}
}

// TestPushAfterWriteTimeout: a write deadline left on the socket by the auth
// reply or an earlier queued write must not fail later pushes (the inline
// write honours the socket's deadline).
func TestPushAfterWriteTimeout(t *testing.T) {
	e := startComet(t, func(c *Config) { c.Protocol.WriteTimeout = conf.Duration(20 * time.Millisecond) })
	for _, tr := range transports {
		c := dial(t, e, tr)
		key := "late-" + tr
		c.auth(fmt.Sprintf(`{"key":%q,"accepts":[1000]}`, key))
		for i := range 3 {
			time.Sleep(50 * time.Millisecond) // let any deadline set so far pass
			res := e.srv.PushKeys([]string{key}, 1000, &protocol.Proto{Ver: 1, Op: 1000, Body: []byte(fmt.Sprint(i))})
			if res.Delivered != 1 {
				t.Fatalf("%s push %d: %+v", tr, i, res)
			}
			if p := c.expect(1000, 0); string(p.Body) != fmt.Sprint(i) {
				t.Fatalf("%s push %d: got %q", tr, i, p.Body)
			}
		}
	}
}
