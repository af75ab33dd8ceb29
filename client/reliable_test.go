package client_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
	"github.com/goim/goim/internal/testkit"
)

// relConn is the comet side of one connection of a scripted fake comet,
// on TCP or WebSocket.
type relConn struct {
	nc net.Conn
	br *bufio.Reader
	ws bool
}

// rframe is a frame from the client.
type rframe struct {
	Op   int32
	Body []byte
}

// read returns the next frame from the client, skipping heartbeats.
func (c *relConn) read() (rframe, error) {
	for {
		var p protocol.Proto
		if c.ws {
			msg, err := readClient(c.nc)
			if err != nil {
				return rframe{}, err
			}
			if err := p.DecodeWS(msg, 1<<16); err != nil {
				return rframe{}, err
			}
		} else if err := p.ReadTCP(c.br, 1<<16); err != nil {
			return rframe{}, err
		}
		if p.Op != protocol.OpHeartbeat {
			return rframe{Op: p.Op, Body: p.Body}, nil
		}
	}
}

// auth reads the auth frame and parses its body.
func (c *relConn) auth() (protocol.AuthBody, error) {
	p, err := c.read()
	if err != nil {
		return protocol.AuthBody{}, err
	}
	if p.Op != protocol.OpAuth {
		return protocol.AuthBody{}, fmt.Errorf("first frame op %d", p.Op)
	}
	return protocol.ParseAuthBody(p.Body)
}

// send writes frames: each a WebSocket message, or back to back on TCP.
func (c *relConn) send(frames ...[]byte) error {
	for _, f := range frames {
		var err error
		if c.ws {
			err = ws.WriteFrame(c.nc, ws.NewBinaryFrame(f))
		} else {
			_, err = c.nc.Write(f)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sendBatch writes frames as the comet writes a room batch: one op-9
// carrier message on WebSocket, the bare frames on TCP.
func (c *relConn) sendBatch(frames ...[]byte) error {
	if !c.ws {
		return c.send(slices.Concat(frames...))
	}
	return c.send(protocol.AppendFrame(nil, 1, protocol.OpRaw, 0, slices.Concat(frames...)))
}

// acks reads op-19 frames until want ids arrived and returns them in
// order, with the number of ids of each frame.
func (c *relConn) acks(want int) (ids []string, sizes []int, err error) {
	for len(ids) < want {
		p, err := c.read()
		if err != nil {
			return ids, sizes, err
		}
		if p.Op != protocol.OpAck {
			return ids, sizes, fmt.Errorf("op %d while waiting for acks", p.Op)
		}
		got, err := protocol.ParseAck(p.Body)
		if err != nil {
			return ids, sizes, err
		}
		ids, sizes = append(ids, got...), append(sizes, len(got))
	}
	return ids, sizes, nil
}

// fakeReliableComet serves one scripted connection per script, in order,
// on tr (TCP or WS), and returns its address and a channel that gets each
// script's outcome.
func fakeReliableComet(t *testing.T, tr client.Transport, scripts ...func(c *relConn) error) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, len(scripts))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, script := range scripts {
			nc, err := ln.Accept()
			if err != nil {
				res <- err
				return
			}
			// Bounds a broken test, not a timing assertion.
			_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
			c := &relConn{nc: nc, br: bufio.NewReader(nc), ws: tr == client.WS}
			if c.ws {
				if _, err := ws.Upgrade(nc); err != nil {
					nc.Close()
					res <- err
					return
				}
			}
			err = script(c)
			nc.Close()
			if err != nil {
				err = fmt.Errorf("connection %d: %w", i+1, err)
			}
			res <- err
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), res
}

var authReplyFrame = protocol.AppendFrame(nil, 1, protocol.OpAuthReply, 1, nil)

// TestReliableFake: a reliable client against a scripted fake comet on
// TCP and WebSocket. The first auth carries reliable and Config.Since;
// op 20 arrives as a Message with Streams; envelopes (single, in an op-9
// batch) are unwrapped with their id and position; duplicates and
// offsets at or below the position are dropped; every id of a user or
// key push is acked once by op 19 (room pushes and pushes in no stream
// are not); after the comet closes, the reconnect's auth carries the last
// positions; Positions follows op-20 reports; no goroutine is left after
// Close.
func TestReliableFake(t *testing.T) {
	for _, tr := range []client.Transport{client.TCP, client.WS} {
		t.Run(string(tr), func(t *testing.T) { testReliableFake(t, tr) })
	}
}

func testReliableFake(t *testing.T, tr client.Transport) {
	const userEpoch, keyEpoch, roomEpoch, newRoomEpoch = 0x1, 0x2, 0x9, 0xa
	wantAcks := []string{testkit.MsgID(1), testkit.MsgID(2), testkit.MsgID(4), testkit.MsgID(7)} // user and key pushes only
	first := func(c *relConn) error {
		a, err := c.auth()
		if err != nil {
			return err
		}
		if !a.Reliable || a.Mid != 7 {
			return fmt.Errorf("first auth %+v", a)
		}
		if err := testkit.CheckSince(a.Since, `{"user":{"epoch":"0000000000000001","offset":3}}`); err != nil {
			return err
		}
		err = c.send(authReplyFrame,
			testkit.StreamsFrame(protocol.StreamState{Stream: "user", Epoch: protocol.FormatEpoch(userEpoch), Offset: 5, Recovered: true},
				protocol.StreamState{Stream: "key", Epoch: protocol.FormatEpoch(keyEpoch), Offset: 0, Recovered: false},
				protocol.StreamState{Stream: "future", Epoch: "1", Offset: 1, Recovered: true}),
			testkit.EnvelopeFrame(1, protocol.StreamUser, userEpoch, 4, 1000, "u4"),
			testkit.EnvelopeFrame(2, protocol.StreamUser, userEpoch, 5, 1001, "u5"),
			testkit.EnvelopeFrame(2, protocol.StreamUser, userEpoch, 5, 1001, "u5 again"),
			testkit.EnvelopeFrame(3, protocol.StreamUser, userEpoch, 3, 1000, "u3 old"),
			testkit.EnvelopeFrame(4, protocol.StreamKey, keyEpoch, 1, 1000, "k1"),
			testkit.EnvelopeFrame(5, protocol.StreamNone, 0, 0, 1002, "none"),
		)
		if err != nil {
			return err
		}
		err = c.sendBatch(
			testkit.EnvelopeFrame(6, protocol.StreamRoom, roomEpoch, 10, 1000, "r10"),
			testkit.EnvelopeFrame(7, protocol.StreamUser, userEpoch, 6, 1000, "u6"),
			testkit.EnvelopeFrame(7, protocol.StreamUser, userEpoch, 6, 1000, "u6 again"),
		)
		if err != nil {
			return err
		}
		if err := c.send(protocol.AppendFrame(nil, 1, 1000, 0, []byte("plain"))); err != nil {
			return err
		}
		ids, _, err := c.acks(len(wantAcks))
		if err != nil {
			return fmt.Errorf("acks %v: %w", ids, err)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, wantAcks) {
			return fmt.Errorf("acked %v, want %v", ids, wantAcks)
		}
		return nil // closing: the client reconnects
	}
	second := func(c *relConn) error {
		a, err := c.auth()
		if err != nil {
			return err
		}
		if !a.Reliable {
			return fmt.Errorf("second auth %+v", a)
		}
		if err := testkit.CheckSince(a.Since, `{"user":{"epoch":"0000000000000001","offset":6},"key":{"epoch":"0000000000000002","offset":1},"room":{"epoch":"0000000000000009","offset":10}}`); err != nil {
			return err
		}
		err = c.send(authReplyFrame,
			testkit.StreamsFrame(protocol.StreamState{Stream: "user", Epoch: protocol.FormatEpoch(userEpoch), Offset: 7, Recovered: true},
				protocol.StreamState{Stream: "room", Epoch: protocol.FormatEpoch(newRoomEpoch), Offset: 50, Recovered: false}),
			testkit.EnvelopeFrame(8, protocol.StreamUser, userEpoch, 7, 1000, "u7"),
		)
		if err != nil {
			return err
		}
		if _, _, err := c.acks(1); err != nil {
			return err
		}
		_, err = c.read() // until the client closes
		if err == nil {
			return errors.New("a frame instead of the close")
		}
		return nil
	}
	addr, res := fakeReliableComet(t, tr, first, second)
	c := connect(t, client.Config{
		Addrs: []string{addr}, Transport: tr, Heartbeat: time.Hour,
		Backoff:  &client.Backoff{Base: 10 * time.Millisecond, Max: 10 * time.Millisecond, Factor: 1},
		Auth:     client.Auth{Mid: 7, Accepts: []int32{1000}},
		Reliable: true,
		Since:    &protocol.Since{User: &protocol.SincePos{Epoch: "1", Offset: 3}},
	})
	type msg struct {
		Op      int32
		Body    string
		MsgID   string
		Stream  int32
		Epoch   uint64
		Offset  uint64
		Streams []client.StreamState
	}
	want := []msg{
		{Op: protocol.OpStreams, Body: `{"streams":[{"stream":"user","epoch":"0000000000000001","offset":5,"recovered":true},{"stream":"key","epoch":"0000000000000002","offset":0,"recovered":false},{"stream":"future","epoch":"1","offset":1,"recovered":true}]}`,
			Streams: []client.StreamState{{Stream: protocol.StreamUser, Epoch: userEpoch, Offset: 5, Recovered: true}, {Stream: protocol.StreamKey, Epoch: keyEpoch}}},
		{Op: 1000, Body: "u4", MsgID: testkit.MsgID(1), Stream: protocol.StreamUser, Epoch: userEpoch, Offset: 4},
		{Op: 1001, Body: "u5", MsgID: testkit.MsgID(2), Stream: protocol.StreamUser, Epoch: userEpoch, Offset: 5},
		{Op: 1000, Body: "k1", MsgID: testkit.MsgID(4), Stream: protocol.StreamKey, Epoch: keyEpoch, Offset: 1},
		{Op: 1002, Body: "none", MsgID: testkit.MsgID(5)},
		{Op: 1000, Body: "r10", MsgID: testkit.MsgID(6), Stream: protocol.StreamRoom, Epoch: roomEpoch, Offset: 10},
		{Op: 1000, Body: "u6", MsgID: testkit.MsgID(7), Stream: protocol.StreamUser, Epoch: userEpoch, Offset: 6},
		{Op: 1000, Body: "plain"},
		{Op: protocol.OpStreams, Body: `{"streams":[{"stream":"user","epoch":"0000000000000001","offset":7,"recovered":true},{"stream":"room","epoch":"000000000000000a","offset":50,"recovered":false}]}`,
			Streams: []client.StreamState{{Stream: protocol.StreamUser, Epoch: userEpoch, Offset: 7, Recovered: true}, {Stream: protocol.StreamRoom, Epoch: newRoomEpoch, Offset: 50}}},
		{Op: 1000, Body: "u7", MsgID: testkit.MsgID(8), Stream: protocol.StreamUser, Epoch: userEpoch, Offset: 7},
	}
	firstDone := false
	for i, w := range want {
		var m client.Message
		for got := false; !got; {
			select {
			case m = <-c.Messages():
				got = true
			case err := <-res:
				if err != nil || firstDone {
					t.Fatalf("message %d: fake comet: %v", i, err)
				}
				firstDone = true
			}
		}
		got := msg{Op: m.Op, Body: string(m.Body), MsgID: m.MsgID, Stream: m.Stream, Epoch: m.Epoch, Offset: m.Offset, Streams: m.Streams}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("message %d:\n got %+v\nwant %+v", i, got, w)
		}
	}
	if !firstDone {
		if err := <-res; err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Duplicates(); n != 3 {
		t.Fatalf("%d duplicates, want 3", n)
	}
	b, _ := json.Marshal(c.Positions())
	if wantPos := `{"user":{"epoch":"0000000000000001","offset":7},"key":{"epoch":"0000000000000002","offset":1},"room":{"epoch":"000000000000000a","offset":50}}`; string(b) != wantPos {
		t.Fatalf("positions %s, want %s", b, wantPos)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if n, stacks := clientGoroutines(); n != 0 {
		t.Fatalf("%d client goroutines after Close:\n%s", n, stacks)
	}
}

// TestReliableManualAck: with ManualAck nothing is acked by itself; Ack
// sends 65 ids as frames of 64 and 1; a bad id is refused; a malformed
// envelope drops the connection with a *ProtocolError; Ack on a client
// that is not reliable is ErrNotReliable.
func TestReliableManualAck(t *testing.T) {
	many := make([]string, protocol.MaxAckIDs+1)
	for i := range many {
		many[i] = testkit.MsgID(100 + i)
	}
	script := func(c *relConn) error {
		if _, err := c.auth(); err != nil {
			return err
		}
		if err := c.send(authReplyFrame, testkit.EnvelopeFrame(1, protocol.StreamNone, 0, 0, 1000, "x")); err != nil {
			return err
		}
		ids, sizes, err := c.acks(len(many))
		if err != nil {
			return err
		}
		if !slices.Equal(ids, many) || !slices.Equal(sizes, []int{protocol.MaxAckIDs, 1}) {
			return fmt.Errorf("acks %v in frames of %v", ids, sizes)
		}
		if err := c.send(protocol.AppendFrame(nil, 1, protocol.OpMessage, 0, []byte("short"))); err != nil {
			return err
		}
		_, err = c.read() // until the client drops the connection
		if err == nil {
			return errors.New("a frame instead of the drop")
		}
		return nil
	}
	addr, res := fakeReliableComet(t, client.TCP, script)
	rec := &recorder{}
	c := connect(t, client.Config{
		Addrs: []string{addr}, Heartbeat: time.Hour, OnState: rec.onState,
		Backoff:   &client.Backoff{Base: time.Hour, Max: time.Hour, Factor: 1},
		Auth:      client.Auth{Reliable: true},
		ManualAck: true,
	})
	m := <-c.Messages()
	if m.MsgID != testkit.MsgID(1) || string(m.Body) != "x" {
		t.Fatalf("message %+v", m)
	}
	if err := c.Ack(testkit.MsgID(1), "nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("Ack with a bad id: %v", err)
	}
	if err := c.Ack(many...); err != nil {
		t.Fatal(err)
	}
	if ev := rec.wait(t, client.Disconnected, 1); !errors.As(ev.err, new(*client.ProtocolError)) || !errors.Is(ev.err, protocol.ErrEnvelope) {
		t.Fatalf("dropped with %v", ev.err)
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(testkit.MsgID(1)); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Ack after Close: %v", err)
	}
	if c.Positions() != nil {
		t.Fatalf("positions %+v without any stream", c.Positions())
	}

	plain := connect(t, client.Config{Addrs: []string{fakeComet(t, func(nc net.Conn) { _, _ = nc.Write(authReplyFrame) })}, Heartbeat: time.Hour})
	if err := plain.Ack(testkit.MsgID(1)); !errors.Is(err, client.ErrNotReliable) || plain.Positions() != nil {
		t.Fatalf("Ack on a plain client: %v", err)
	}
	_ = plain.Close()
}

// TestReliableConfig: a Since with a bad epoch, or without Reliable, is
// refused.
func TestReliableConfig(t *testing.T) {
	good := &protocol.Since{User: &protocol.SincePos{Epoch: "1"}}
	for _, cfg := range []client.Config{{Since: good}, {Auth: client.Auth{Since: good}}} {
		cfg.Addrs = []string{"127.0.0.1:1"}
		if _, err := client.Connect(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "since without reliable") {
			t.Fatalf("since without reliable: %v", err)
		}
	}
	for _, since := range []*protocol.Since{
		{User: &protocol.SincePos{Epoch: "xyz"}},
		{Key: &protocol.SincePos{Epoch: ""}},
		{Room: &protocol.SincePos{Epoch: "10000000000000000"}},
	} {
		_, err := client.Connect(t.Context(), client.Config{Addrs: []string{"127.0.0.1:1"}, Reliable: true, Since: since})
		if err == nil || !strings.Contains(err.Error(), "since.") {
			t.Fatalf("since %+v: %v", since, err)
		}
		_, err = client.Connect(t.Context(), client.Config{Addrs: []string{"127.0.0.1:1"}, Auth: client.Auth{Reliable: true, Since: since}})
		if err == nil || !strings.Contains(err.Error(), "since.") {
			t.Fatalf("auth since %+v: %v", since, err)
		}
	}
}

// TestReliableOnMessage: with OnMessage and a one-message buffer (the
// reader waits for the callback at each message), every push is handed
// over in order and acked once.
func TestReliableOnMessage(t *testing.T) {
	const n = 150
	script := func(c *relConn) error {
		if _, err := c.auth(); err != nil {
			return err
		}
		frames := [][]byte{authReplyFrame}
		for i := 1; i <= n; i++ {
			frames = append(frames, testkit.EnvelopeFrame(i, protocol.StreamKey, 5, uint64(i), 1000, fmt.Sprint(i)))
		}
		if err := c.send(frames...); err != nil {
			return err
		}
		ids, _, err := c.acks(n)
		if err != nil {
			return err
		}
		slices.Sort(ids)
		for i, id := range ids {
			if id != testkit.MsgID(i+1) {
				return fmt.Errorf("ack %d: %s", i, id)
			}
		}
		return nil
	}
	addr, res := fakeReliableComet(t, client.TCP, script)
	got := make(chan string, n)
	c := connect(t, client.Config{
		Addrs: []string{addr}, Heartbeat: time.Hour, Reliable: true, MessageBuffer: 1,
		Backoff:   &client.Backoff{Base: time.Hour, Max: time.Hour, Factor: 1},
		OnMessage: func(m client.Message) { got <- string(m.Body) },
	})
	for i := 1; i <= n; i++ {
		if b := <-got; b != fmt.Sprint(i) {
			t.Fatalf("message %d: %q", i, b)
		}
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPlainClientOps18to20: a client without Reliable sends goim v2's auth
// body (no reliable, no since) and gets ops 18 to 20 as business ops,
// bodies as sent.
func TestPlainClientOps18to20(t *testing.T) {
	env := testkit.EnvelopeFrame(1, protocol.StreamUser, 1, 1, 1000, "x")
	script := func(c *relConn) error {
		f, err := c.read()
		if err != nil {
			return err
		}
		if want := `{"mid":3,"key":"","room_id":"","platform":"","accepts":[1000]}`; string(f.Body) != want {
			return fmt.Errorf("auth body %s, want %s", f.Body, want)
		}
		if err := c.send(authReplyFrame, env, protocol.AppendFrame(nil, 1, protocol.OpAck, 0, []byte("a")),
			protocol.AppendFrame(nil, 1, protocol.OpStreams, 0, []byte("not json"))); err != nil {
			return err
		}
		_, err = c.read() // until the client closes
		if err == nil {
			return errors.New("a frame instead of the close")
		}
		return nil
	}
	for _, tr := range []client.Transport{client.TCP, client.WS} {
		t.Run(string(tr), func(t *testing.T) {
			addr, res := fakeReliableComet(t, tr, script)
			c := connect(t, client.Config{Addrs: []string{addr}, Transport: tr, Heartbeat: time.Hour, Auth: client.Auth{Mid: 3, Accepts: []int32{1000}}})
			for _, want := range []struct {
				op   int32
				body string
			}{{protocol.OpMessage, string(env[protocol.HeaderSize:])}, {protocol.OpAck, "a"}, {protocol.OpStreams, "not json"}} {
				m := <-c.Messages()
				if m.Op != want.op || string(m.Body) != want.body || m.MsgID != "" || m.Streams != nil {
					t.Fatalf("message %+v, want op %d", m, want.op)
				}
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-res; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestConnReliable: at the low level, Auth.Reliable and Auth.Since go in
// the auth body, op-18 frames arrive raw (protocol.DecodeEnvelope unwraps
// them), Conn.Ack sends op-19 frames of at most 64 ids and refuses a bad
// id without sending anything.
func TestConnReliable(t *testing.T) {
	ids := make([]string, protocol.MaxAckIDs+2)
	for i := range ids {
		ids[i] = testkit.MsgID(i)
	}
	script := func(c *relConn) error {
		a, err := c.auth()
		if err != nil {
			return err
		}
		if !a.Reliable {
			return fmt.Errorf("auth %+v", a)
		}
		if err := testkit.CheckSince(a.Since, `{"key":{"epoch":"00000000000000ff","offset":9}}`); err != nil {
			return err
		}
		if err := c.send(authReplyFrame, testkit.EnvelopeFrame(1, protocol.StreamKey, 0xff, 10, 1000, "k10")); err != nil {
			return err
		}
		got, sizes, err := c.acks(len(ids))
		if err != nil {
			return err
		}
		if !slices.Equal(got, ids) || !slices.Equal(sizes, []int{protocol.MaxAckIDs, 2}) {
			return fmt.Errorf("acks %v in frames of %v", got, sizes)
		}
		_, err = c.read() // until the client closes
		if err == nil {
			return errors.New("a frame instead of the close")
		}
		return nil
	}
	addr, res := fakeReliableComet(t, client.TCP, script)
	c, err := client.Dial(t.Context(), addr, client.Auth{Reliable: true, Since: &protocol.Since{Key: &protocol.SincePos{Epoch: protocol.FormatEpoch(0xff), Offset: 9}}}, client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var env protocol.Envelope
	var decErr error
	if err := c.ReadFrames(func(f client.Frame) {
		if f.Op == protocol.OpMessage {
			env, decErr = protocol.DecodeEnvelope(f.Body)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := decErr; err != nil || env.ID() != testkit.MsgID(1) || env.Stream != protocol.StreamKey || env.Offset != 10 || string(env.Body) != "k10" {
		t.Fatalf("envelope %+v: %v", env, err)
	}
	if err := c.Ack(ids[0], "bad"); err == nil {
		t.Fatal("Ack took a bad id")
	}
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(ids...); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if err := <-res; err != nil {
		t.Fatal(err)
	}
}
