package comet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	cometpb "github.com/goim/goim/api/comet"
	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/testkit"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// reliableLogic is the test logic's reliable delivery: in-memory streams
// the tests append to and trim, ReadStream over them (as logic's
// contract says), and the Ack calls recorded.
type reliableLogic struct {
	streams map[string]*memStream // by streamName
	// gate, when set, holds every ReadStream until it is closed.
	gate  chan struct{}
	reads []*logicpb.ReadStreamReq
	acks  []*logicpb.AckReq
	// all answers every Connect reliable, whatever the auth body says.
	all bool
	// readErr, when set, is every ReadStream's answer.
	readErr error
	// ackGate, when set, holds every Ack call until it is closed;
	// ackHeld counts the acks of the calls that reached it.
	ackGate chan struct{}
	ackHeld int
}

// memStream is one stream: its epoch and the entries it holds, offsets
// first, first+1, ... top.
type memStream struct {
	epoch   uint64
	first   uint64
	top     uint64
	entries []*logicpb.StreamEntry
}

func streamName(k int32, mid int64, key, room string) string {
	switch k {
	case protocol.StreamUser:
		return fmt.Sprintf("user:%d", mid)
	case protocol.StreamKey:
		return "key:" + key
	case protocol.StreamRoom:
		return "room:" + room
	}
	return ""
}

// openStream returns stream name, creating it empty with a new epoch
// (l.mu held).
func (l *testLogic) openStream(name string) *memStream {
	if l.rs.streams == nil {
		l.rs.streams = map[string]*memStream{}
	}
	s := l.rs.streams[name]
	if s == nil {
		s = &memStream{epoch: rand.Uint64() | 1, first: 1}
		l.rs.streams[name] = s
	}
	return s
}

// reliableReply fills a Connect reply for an auth body that opts in
// (l.mu held): the user and key streams are opened, a room's stream is
// listed when a test made the room recoverable.
func (l *testLogic) reliableReply(a protocol.AuthBody, reply *logicpb.ConnectReply) {
	if !a.Reliable && !l.rs.all {
		return
	}
	reply.Reliable = true
	if reply.Mid > 0 {
		s := l.openStream(streamName(protocol.StreamUser, reply.Mid, "", ""))
		reply.Streams = append(reply.Streams, &protocol.Position{Stream: protocol.StreamUser, Epoch: s.epoch, Offset: s.top})
	}
	s := l.openStream(streamName(protocol.StreamKey, 0, reply.Key, ""))
	reply.Streams = append(reply.Streams, &protocol.Position{Stream: protocol.StreamKey, Epoch: s.epoch, Offset: s.top})
	if s := l.rs.streams[streamName(protocol.StreamRoom, 0, "", reply.RoomID)]; s != nil && reply.RoomID != "" {
		reply.Streams = append(reply.Streams, &protocol.Position{Stream: protocol.StreamRoom, Epoch: s.epoch, Offset: s.top})
	}
	reply.Since = a.Since.Positions()
}

func (l *testLogic) ReadStream(ctx context.Context, req *logicpb.ReadStreamReq) (*logicpb.ReadStreamReply, error) {
	l.mu.Lock()
	l.rs.reads = append(l.rs.reads, req)
	gate := l.rs.gate
	l.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rs.readErr != nil {
		return nil, l.rs.readErr
	}
	s := l.rs.streams[streamName(req.GetStream(), req.GetMid(), req.GetKey(), req.GetRoom())]
	if s == nil {
		return &logicpb.ReadStreamReply{}, nil
	}
	out := &logicpb.ReadStreamReply{Epoch: s.epoch, Top: s.top}
	after := req.GetAfter()
	if req.GetEpoch() != s.epoch {
		after = 0
	}
	for _, e := range s.entries {
		if req.GetLimit() == 0 || len(out.Entries) >= int(req.GetLimit()) {
			break
		}
		if e.GetOffset() > after {
			out.Entries = append(out.Entries, e)
		}
	}
	out.Recovered = req.GetEpoch() == s.epoch && (after >= s.top || s.first <= after+1)
	return out, nil
}

func (l *testLogic) Ack(_ context.Context, req *logicpb.AckReq) (*logicpb.AckReply, error) {
	l.mu.Lock()
	gate := l.rs.ackGate
	if gate != nil {
		l.rs.ackHeld += len(req.GetAcks())
	}
	l.mu.Unlock()
	if gate != nil {
		<-gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rs.acks = append(l.rs.acks, req)
	return &logicpb.AckReply{}, nil
}

// appendMsg appends a message to stream name (created if absent) and
// returns its id and position.
func (l *testLogic) appendMsg(name, body string) (string, *protocol.Position) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.openStream(name)
	s.top++
	id := testkit.RandomHex(16)
	s.entries = append(s.entries, &logicpb.StreamEntry{Offset: s.top, MsgId: id, Op: 1000, Body: []byte(body)})
	k := protocol.StreamByName(name[:strings.IndexByte(name, ':')])
	return id, &protocol.Position{Stream: k, Epoch: s.epoch, Offset: s.top}
}

// trim drops the entries of stream name before offset first.
func (l *testLogic) trim(name string, first uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.rs.streams[name]
	for len(s.entries) > 0 && s.entries[0].GetOffset() < first {
		s.entries = s.entries[1:]
	}
	s.first = first
}

// stream returns a copy of stream name's state.
func (l *testLogic) stream(name string) memStream {
	l.mu.Lock()
	defer l.mu.Unlock()
	return *l.rs.streams[name]
}

func (l *testLogic) readCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.rs.reads)
}

// pushRoomAt pushes the messages at offsets of room's stream (appended
// up to the highest first, bodies "m<offset>") in one BroadcastRoom call,
// in the order given.
func (e *testEnv) pushRoomAt(t testing.TB, room string, offsets ...uint64) {
	t.Helper()
	if _, err := e.push.BroadcastRoom(context.Background(), e.roomPush(room, offsets...)); err != nil {
		t.Fatal(err)
	}
}

// roomPush is pushRoomAt's call.
func (e *testEnv) roomPush(room string, offsets ...uint64) *cometpb.BroadcastRoomReq {
	name := streamName(protocol.StreamRoom, 0, "", room)
	var bodies, ids []string
	var pos []*protocol.Position
	for _, o := range offsets {
		for e.logic.stream(name).top < o {
			e.logic.appendMsg(name, fmt.Sprintf("m%d", e.logic.stream(name).top+1))
		}
		st := e.logic.stream(name)
		bodies, ids = append(bodies, fmt.Sprintf("m%d", o)), append(ids, st.entries[o-st.first].GetMsgId())
		pos = append(pos, &protocol.Position{Stream: protocol.StreamRoom, Epoch: st.epoch, Offset: o})
	}
	return &cometpb.BroadcastRoomReq{RoomID: room, Proto: carrier(bodies...), MsgIds: ids, Positions: pos}
}

// carrier is a push's proto as job sends it: an op-9 carrier of frames
// of op 1000 with bodies.
func carrier(bodies ...string) *protocol.Proto {
	var b []byte
	for _, body := range bodies {
		b = protocol.AppendFrame(b, protocol.Version, 1000, 0, []byte(body))
	}
	return &protocol.Proto{Ver: protocol.Version, Op: protocol.OpRaw, Body: b}
}

// pushKey pushes one message to key with its id and position.
func (e *testEnv) pushKey(t testing.TB, key, id string, pos *protocol.Position, body string) {
	t.Helper()
	req := &cometpb.PushMsgReq{Keys: []string{key}, ProtoOp: 1000, Proto: carrier(body), MsgId: id}
	if pos != nil {
		req.Positions = []*protocol.Position{pos}
	}
	if _, err := e.push.PushMsg(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

// expectEnvelope reads an op-18 frame and decodes it.
func (c *client) expectEnvelope() protocol.Envelope {
	c.t.Helper()
	p := c.expect(protocol.OpMessage, 0)
	env, err := protocol.DecodeEnvelope(p.Body)
	if err != nil {
		c.t.Fatalf("%s: envelope: %v", c.tr, err)
	}
	return env
}

// expectStreams reads an op-20 frame and decodes it.
func (c *client) expectStreams() protocol.StreamsBody {
	c.t.Helper()
	p := c.expect(protocol.OpStreams, 0)
	var sb protocol.StreamsBody
	if err := json.Unmarshal(p.Body, &sb); err != nil {
		c.t.Fatalf("%s: op 20 body %q: %v", c.tr, p.Body, err)
	}
	return sb
}

// expectOffsets reads op-18 frames of stream k at offsets, in order, with
// bodies "m<offset>".
func (c *client) expectOffsets(k int32, offsets ...uint64) {
	c.t.Helper()
	for _, o := range offsets {
		env := c.expectEnvelope()
		if env.Stream != k || env.Offset != o || string(env.Body) != fmt.Sprintf("m%d", o) || env.Op != 1000 {
			c.t.Fatalf("%s: got stream %d offset %d op %d body %q, want stream %d offset %d", c.tr, env.Stream, env.Offset, env.Op, env.Body, k, o)
		}
	}
}

// reliableAuth authenticates a reliable client and reads its op 20.
func (c *client) reliableAuth(body string) protocol.StreamsBody {
	c.t.Helper()
	c.auth(body)
	return c.expectStreams()
}

// TestChannelSizeClass: the reliable state costs a plain connection no
// memory: Channel stays within its allocation size class (416 bytes).
func TestChannelSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(Channel{}); n > 416 {
		t.Fatalf("sizeof(Channel) = %d, over the 416-byte size class", n)
	}
}

// TestReliableBesidePlain: in one room, goim v2 connections get exactly
// the bytes they got before reliable delivery for key, room and broadcast
// pushes, while reliable ones get op-18 envelopes with the ids.
func TestReliableBesidePlain(t *testing.T) {
	e := startComet(t, nil)
	const room = "live://mixed"
	plain := map[string]*client{}
	rel := map[string]*client{}
	for _, tr := range []string{"tcp", "ws", "tls", "wss"} {
		c := dial(t, e, tr)
		c.auth(fmt.Sprintf(`{"mid":1,"key":"plain-%s","room_id":%q,"accepts":[1000]}`, tr, room))
		plain[tr] = c
		r := dial(t, e, tr)
		sb := r.reliableAuth(fmt.Sprintf(`{"mid":2,"key":"rel-%s","room_id":%q,"accepts":[1000],"reliable":true}`, tr, room))
		if len(sb.Streams) != 2 || sb.Streams[0].Stream != "user" || sb.Streams[1].Stream != "key" || sb.Streams[0].Recovered {
			t.Fatalf("%s: op 20 %+v", tr, sb)
		}
		rel[tr] = r
	}
	ctx := context.Background()
	// What a plain connection of each transport must read, byte for byte.
	want := func(tr string, p *protocol.Proto) []byte {
		f := newFrame(p)
		if tr == "ws" || tr == "wss" {
			return f.ws
		}
		return f.tcp
	}
	readRaw := func(c *client, n int) []byte {
		t.Helper()
		_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if c.isWS() {
			h, err := ws.ReadHeader(c.conn)
			if err != nil {
				t.Fatal(err)
			}
			payload := make([]byte, h.Length)
			if _, err := io.ReadFull(c.conn, payload); err != nil {
				t.Fatal(err)
			}
			return append(appendWSHeader(nil, h), payload...)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(c.r, b); err != nil {
			t.Fatal(err)
		}
		return b
	}

	// A key push.
	id := testkit.RandomHex(16)
	p := carrier("k1")
	for tr := range plain {
		if _, err := e.push.PushMsg(ctx, &cometpb.PushMsgReq{Keys: []string{"plain-" + tr, "rel-" + tr}, ProtoOp: 1000, Proto: p, MsgId: id,
			Positions: []*protocol.Position{{}, {}}}); err != nil {
			t.Fatal(err)
		}
		w := want(tr, p)
		if got := readRaw(plain[tr], len(w)); !bytes.Equal(got, w) {
			t.Fatalf("%s: plain key push bytes %x, want %x", tr, got, w)
		}
		env := rel[tr].expectEnvelope()
		if env.ID() != id || env.Stream != protocol.StreamNone || env.Op != 1000 || string(env.Body) != "k1" {
			t.Fatalf("%s: key push envelope %+v", tr, env)
		}
	}
	// A room push of two messages.
	ids := []string{testkit.RandomHex(16), testkit.RandomHex(16)}
	p = carrier("r1", "r2")
	if _, err := e.push.BroadcastRoom(ctx, &cometpb.BroadcastRoomReq{RoomID: room, Proto: p, MsgIds: ids}); err != nil {
		t.Fatal(err)
	}
	for tr := range plain {
		w := want(tr, p)
		if got := readRaw(plain[tr], len(w)); !bytes.Equal(got, w) {
			t.Fatalf("%s: plain room push bytes %x, want %x", tr, got, w)
		}
		for i, body := range []string{"r1", "r2"} {
			env := rel[tr].expectEnvelope()
			if env.ID() != ids[i] || env.Stream != protocol.StreamNone || string(env.Body) != body {
				t.Fatalf("%s: room push envelope %d %+v", tr, i, env)
			}
		}
	}
	// A broadcast.
	id = testkit.RandomHex(16)
	p = &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("b1")}
	if _, err := e.push.Broadcast(ctx, &cometpb.BroadcastReq{ProtoOp: 1000, Proto: p, MsgId: id}); err != nil {
		t.Fatal(err)
	}
	for tr := range plain {
		w := want(tr, p)
		if got := readRaw(plain[tr], len(w)); !bytes.Equal(got, w) {
			t.Fatalf("%s: plain broadcast bytes %x, want %x", tr, got, w)
		}
		env := rel[tr].expectEnvelope()
		if env.ID() != id || env.Stream != protocol.StreamNone || string(env.Body) != "b1" {
			t.Fatalf("%s: broadcast envelope %+v", tr, env)
		}
	}
	waitFor(t, 5*time.Second, func() error {
		if n := testutil.ToFloat64(e.srv.metrics.reliable); n != 4 {
			return fmt.Errorf("goim_comet_reliable_connections %v, want 4", n)
		}
		return nil
	})
}

// TestReliableDuplicatesDropped: offsets a connection already has are
// dropped and counted.
func TestReliableDuplicatesDropped(t *testing.T) {
	e := startComet(t, nil)
	c := dial(t, e, "tcp")
	c.reliableAuth(`{"key":"dup","accepts":[1000],"reliable":true}`)
	name := streamName(protocol.StreamKey, 0, "dup", "")
	var ids []string
	var pos []*protocol.Position
	for i := 1; i <= 3; i++ {
		id, p := e.logic.appendMsg(name, fmt.Sprintf("m%d", i))
		ids, pos = append(ids, id), append(pos, p)
	}
	for _, i := range []int{0, 1, 1, 0, 2} {
		e.pushKey(t, "dup", ids[i], pos[i], fmt.Sprintf("m%d", i+1))
	}
	c.expectOffsets(protocol.StreamKey, 1, 2, 3)
	if n := testutil.ToFloat64(e.srv.metrics.streamDups); n != 2 {
		t.Fatalf("duplicates counted %v, want 2", n)
	}
	// Nothing else came: the next frame is the next push.
	id, p := e.logic.appendMsg(name, "m4")
	e.pushKey(t, "dup", id, p, "m4")
	c.expectOffsets(protocol.StreamKey, 4)
}

// TestReliableGapFilled: offsets 1, 2, 5 arrive live; 3 and 4 are read
// from the stream, and the client gets 1 to 5 in order.
func TestReliableGapFilled(t *testing.T) {
	for _, tr := range []string{"tcp", "ws"} {
		t.Run(tr, func(t *testing.T) {
			e := startComet(t, nil)
			c := dial(t, e, tr)
			c.reliableAuth(`{"mid":7,"key":"gap","accepts":[1000],"reliable":true}`)
			name := streamName(protocol.StreamUser, 7, "", "")
			var ids []string
			var pos []*protocol.Position
			for i := 1; i <= 5; i++ {
				id, p := e.logic.appendMsg(name, fmt.Sprintf("m%d", i))
				ids, pos = append(ids, id), append(pos, p)
			}
			for _, i := range []int{0, 1, 4} {
				e.pushKey(t, "gap", ids[i], pos[i], fmt.Sprintf("m%d", i+1))
			}
			c.expectOffsets(protocol.StreamUser, 1, 2, 3, 4, 5)
			id, p := e.logic.appendMsg(name, "m6")
			e.pushKey(t, "gap", id, p, "m6")
			c.expectOffsets(protocol.StreamUser, 6)
		})
	}
}

// TestReliableGapUnrecovered: a gap whose start the stream no longer
// holds: op 20 recovered=false with the stream's position, then what the
// stream holds.
func TestReliableGapUnrecovered(t *testing.T) {
	e := startComet(t, nil)
	c := dial(t, e, "tcp")
	c.reliableAuth(`{"key":"trim","accepts":[1000],"reliable":true}`)
	name := streamName(protocol.StreamKey, 0, "trim", "")
	var last *protocol.Position
	var lastID string
	for i := 1; i <= 8; i++ {
		lastID, last = e.logic.appendMsg(name, fmt.Sprintf("m%d", i))
	}
	e.logic.trim(name, 6)
	e.pushKey(t, "trim", lastID, last, "m8")
	sb := c.expectStreams()
	st := e.logic.stream(name)
	if len(sb.Streams) != 1 || sb.Streams[0] != streamReport(protocol.StreamKey, st.epoch, 8, false) {
		t.Fatalf("op 20 %+v", sb)
	}
	c.expectOffsets(protocol.StreamKey, 6, 7, 8)
}

// TestReliableReconnectSince: a client reconnecting with since gets op 20
// recovered=true, exactly the messages it missed, then live ones.
func TestReliableReconnectSince(t *testing.T) {
	e := startComet(t, nil)
	name := streamName(protocol.StreamKey, 0, "since", "")
	c := dial(t, e, "ws")
	c.reliableAuth(`{"key":"since","accepts":[1000],"reliable":true}`)
	for i := 1; i <= 3; i++ {
		id, p := e.logic.appendMsg(name, fmt.Sprintf("m%d", i))
		e.pushKey(t, "since", id, p, fmt.Sprintf("m%d", i))
	}
	c.expectOffsets(protocol.StreamKey, 1, 2, 3)
	_ = c.conn.Close()
	waitFor(t, 5*time.Second, func() error {
		if e.srv.bucket("since").get("since") != nil {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	for i := 4; i <= 5; i++ {
		e.logic.appendMsg(name, fmt.Sprintf("m%d", i)) // no connection: not pushed
	}
	epoch := protocol.FormatEpoch(e.logic.stream(name).epoch)
	c = dial(t, e, "ws")
	sb := c.reliableAuth(fmt.Sprintf(`{"key":"since","accepts":[1000],"reliable":true,"since":{"key":{"epoch":%q,"offset":3}}}`, epoch))
	if len(sb.Streams) != 1 || sb.Streams[0] != (protocol.StreamState{Stream: "key", Epoch: epoch, Offset: 5, Recovered: true}) {
		t.Fatalf("op 20 %+v", sb)
	}
	c.expectOffsets(protocol.StreamKey, 4, 5)
	id, p := e.logic.appendMsg(name, "m6")
	e.pushKey(t, "since", id, p, "m6")
	c.expectOffsets(protocol.StreamKey, 6)

	// A since of another epoch: recovered false, nothing replayed.
	_ = c.conn.Close()
	waitFor(t, 5*time.Second, func() error {
		if e.srv.bucket("since").get("since") != nil {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	c = dial(t, e, "tcp")
	sb = c.reliableAuth(`{"key":"since","accepts":[1000],"reliable":true,"since":{"key":{"epoch":"1","offset":3}}}`)
	if len(sb.Streams) != 1 || sb.Streams[0] != (protocol.StreamState{Stream: "key", Epoch: epoch, Offset: 6, Recovered: false}) {
		t.Fatalf("op 20 %+v", sb)
	}
	id, p = e.logic.appendMsg(name, "m7")
	e.pushKey(t, "since", id, p, "m7")
	c.expectOffsets(protocol.StreamKey, 7)
}

// TestReliableLiveDuringRecovery: pushes arriving while the auth's
// recovery read is held are neither lost nor duplicated.
func TestReliableLiveDuringRecovery(t *testing.T) {
	e := startComet(t, nil)
	name := streamName(protocol.StreamKey, 0, "during", "")
	for i := 1; i <= 5; i++ {
		e.logic.appendMsg(name, fmt.Sprintf("m%d", i))
	}
	epoch := protocol.FormatEpoch(e.logic.stream(name).epoch)
	gate := make(chan struct{})
	e.logic.mu.Lock()
	e.logic.rs.gate = gate
	e.logic.mu.Unlock()
	c := dial(t, e, "tcp")
	c.auth(fmt.Sprintf(`{"key":"during","accepts":[1000],"reliable":true,"since":{"key":{"epoch":%q,"offset":2}}}`, epoch))
	waitFor(t, 5*time.Second, func() error {
		if e.logic.readCount() == 0 {
			return fmt.Errorf("no read yet")
		}
		return nil
	})
	// Live pushes meanwhile: 6 and 7 appended after the read started
	// (a real logic appends before routing), 5 pushed again, and a
	// broadcast of no stream.
	for i := 6; i <= 7; i++ {
		id, p := e.logic.appendMsg(name, fmt.Sprintf("m%d", i))
		e.pushKey(t, "during", id, p, fmt.Sprintf("m%d", i))
	}
	if err := e.srv.broadcastMsg(context.Background(), 1000, 0, &protocol.Proto{Ver: 1, Op: 1000, Body: []byte("bc")}, testkit.RandomHex(16)); err != nil {
		t.Fatal(err)
	}
	e.logic.mu.Lock()
	e.logic.rs.gate = nil
	e.logic.mu.Unlock()
	close(gate)
	sb := c.expectStreams()
	if len(sb.Streams) != 1 || !sb.Streams[0].Recovered {
		t.Fatalf("op 20 %+v", sb)
	}
	// The first read saw 3..7 (the stream when it was released): all of
	// them once, in order; the broadcast after.
	c.expectOffsets(protocol.StreamKey, 3, 4, 5, 6, 7)
	if env := c.expectEnvelope(); env.Stream != protocol.StreamNone || string(env.Body) != "bc" {
		t.Fatalf("broadcast %+v", env)
	}
	id, p := e.logic.appendMsg(name, "m8")
	e.pushKey(t, "during", id, p, "m8")
	c.expectOffsets(protocol.StreamKey, 8)
}

// TestReliableAcks: op 19 reaches logic's Ack with the connection's mid
// and key; a bad op-19 body closes the connection (bad_frame).
func TestReliableAcks(t *testing.T) {
	e := startComet(t, nil)
	c := dial(t, e, "tcp")
	c.reliableAuth(`{"mid":42,"key":"acker","reliable":true}`)
	ids := []string{testkit.RandomHex(16), testkit.RandomHex(16), testkit.RandomHex(16)}
	body, _ := protocol.AppendAck(nil, ids...)
	c.send(protocol.OpAck, body)
	var got []*logicpb.Ack
	waitFor(t, 5*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			got = got[:0]
			for _, r := range l.rs.acks {
				if r.GetServer() != "comet-test" {
					return fmt.Errorf("server %q", r.GetServer())
				}
				got = append(got, r.GetAcks()...)
			}
			if len(got) != len(ids) {
				return fmt.Errorf("%d acks", len(got))
			}
			return nil
		})
	})
	// The workers may send them in more than one call, in any order.
	for i, a := range got {
		if !slices.Contains(ids, a.GetMsgId()) || a.GetMid() != 42 || a.GetKey() != "acker" {
			t.Fatalf("ack %d: %+v, want one of %v", i, a, ids)
		}
	}
	waitFor(t, 5*time.Second, func() error {
		if n := testutil.ToFloat64(e.srv.metrics.ackSent); n != 3 {
			return fmt.Errorf("acks sent %v", n)
		}
		return nil
	})
	// Too many ids, then a body that is not ids.
	for _, bad := range [][]byte{make([]byte, 16*(protocol.MaxAckIDs+1)), make([]byte, 17)} {
		c := dial(t, e, "ws")
		c.reliableAuth(`{"key":"bad-acker","reliable":true}`)
		before := e.closes(ReasonBadFrame)
		c.send(protocol.OpAck, bad)
		c.expectClosed()
		waitFor(t, 5*time.Second, func() error {
			if n := e.closes(ReasonBadFrame); n != before+1 {
				return fmt.Errorf("%d bad_frame closes", n-before)
			}
			return nil
		})
	}
}

// TestAckBatches: acks queued while the workers' calls are in flight go
// to logic together, at most ackMaxBatch per call.
func TestAckBatches(t *testing.T) {
	e := startComet(t, nil)
	gate := make(chan struct{})
	e.logic.mu.Lock()
	e.logic.rs.ackGate = gate
	e.logic.mu.Unlock()
	c := dial(t, e, "tcp")
	c.reliableAuth(`{"mid":5,"key":"batcher","reliable":true}`)
	const frames = 10 // of protocol.MaxAckIDs ids each
	var want []string
	for range frames {
		var ids []string
		for range protocol.MaxAckIDs {
			ids = append(ids, testkit.RandomHex(16))
		}
		body, _ := protocol.AppendAck(nil, ids...)
		c.send(protocol.OpAck, body)
		want = append(want, ids...)
	}
	// The workers' calls wait at the gate; the rest queues behind them.
	waitFor(t, 5*time.Second, func() error {
		held := 0
		_ = e.logic.check(func(l *testLogic) error { held = l.rs.ackHeld; return nil })
		if n := e.srv.logic.acks.Queued() + held; n != len(want) {
			return fmt.Errorf("%d of %d acks queued or at logic", n, len(want))
		}
		return nil
	})
	close(gate)
	var calls int
	waitFor(t, 5*time.Second, func() error {
		return e.logic.check(func(l *testLogic) error {
			got := map[string]bool{}
			calls = len(l.rs.acks)
			for _, r := range l.rs.acks {
				if len(r.GetAcks()) > ackMaxBatch {
					return fmt.Errorf("a call of %d acks", len(r.GetAcks()))
				}
				for _, a := range r.GetAcks() {
					if a.GetMid() != 5 || a.GetKey() != "batcher" {
						return fmt.Errorf("ack %+v", a)
					}
					got[a.GetMsgId()] = true
				}
			}
			if len(got) != len(want) {
				return fmt.Errorf("%d of %d acks", len(got), len(want))
			}
			return nil
		})
	})
	// Two calls held at the gate, then what queued meanwhile in calls
	// of up to ackMaxBatch: far fewer calls than acks.
	if most := 2 + (len(want)+ackMaxBatch-1)/ackMaxBatch + 1; calls > most {
		t.Fatalf("%d Ack calls for %d acks, want at most %d", calls, len(want), most)
	}
}

// TestReliableOpsFromPlainGoToReceive: ops 18 to 20 from a connection that
// did not opt in are business ops, sent to logic's Receive as in goim v2.
func TestReliableOpsFromPlainGoToReceive(t *testing.T) {
	e := startComet(t, nil)
	c := dial(t, e, "tcp")
	c.auth(`{"key":"v2-ops"}`)
	for _, op := range []int32{protocol.OpMessage, protocol.OpAck, protocol.OpStreams} {
		seq := c.send(op, []byte("x"))
		if p := c.expect(op, seq); len(p.Body) != 0 {
			t.Fatalf("op %d reply body %q", op, p.Body)
		}
	}
	if err := e.logic.check(func(l *testLogic) error {
		if len(l.received) != 3 {
			return fmt.Errorf("%d received", len(l.received))
		}
		for i, op := range []int32{18, 19, 20} {
			if l.received[i].GetOp() != op || string(l.received[i].GetBody()) != "x" {
				return fmt.Errorf("received %d: %+v", i, l.received[i])
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestReliableRoomChange: op 12 into a recoverable room gives op 13, then
// op 20 with the room stream's position, then the room's pushes after it;
// in-sequence members share the room view; leaving forgets the stream.
func TestReliableRoomChange(t *testing.T) {
	e := startComet(t, nil)
	const room = "live://recoverable"
	name := streamName(protocol.StreamRoom, 0, "", room)
	for i := 1; i <= 4; i++ {
		e.logic.appendMsg(name, fmt.Sprintf("m%d", i))
	}
	epoch := e.logic.stream(name).epoch
	var clients []*client
	for i, tr := range []string{"tcp", "ws"} {
		c := dial(t, e, tr)
		c.reliableAuth(fmt.Sprintf(`{"key":"rc-%d","reliable":true}`, i))
		seq := c.send(protocol.OpChangeRoom, []byte(room))
		c.expect(protocol.OpChangeRoomReply, seq)
		sb := c.expectStreams()
		if len(sb.Streams) != 1 || sb.Streams[0] != streamReport(protocol.StreamRoom, epoch, 4, false) {
			t.Fatalf("%s: op 20 %+v", tr, sb)
		}
		clients = append(clients, c)
	}
	pushRoom := func(offsets ...uint64) { e.pushRoomAt(t, room, offsets...) }
	pushRoom(5, 6)
	for _, c := range clients {
		c.expectOffsets(protocol.StreamRoom, 5, 6)
	}
	pushRoom(9) // 7 and 8 are fetched
	for _, c := range clients {
		c.expectOffsets(protocol.StreamRoom, 7, 8, 9)
	}
	pushRoom(8, 9, 10) // 8 and 9 are duplicates
	for _, c := range clients {
		c.expectOffsets(protocol.StreamRoom, 10)
	}
	// Leaving clears the room stream.
	c := clients[0]
	seq := c.send(protocol.OpChangeRoom, nil)
	c.expect(protocol.OpChangeRoomReply, seq)
	ch := e.srv.bucket("rc-0").get("rc-0")
	ch.rel.mu.Lock()
	st := ch.rel.st[protocol.StreamRoom]
	ch.rel.mu.Unlock()
	if st != (streamState{}) {
		t.Fatalf("room stream after leaving: %+v", st)
	}
	// A room logic keeps no stream of: op 13 alone.
	seq = c.send(protocol.OpChangeRoom, []byte("live://plain"))
	c.expect(protocol.OpChangeRoomReply, seq)
	id := testkit.RandomHex(16)
	if _, err := e.push.BroadcastRoom(context.Background(), &cometpb.BroadcastRoomReq{RoomID: "live://plain", Proto: carrier("p1"), MsgIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	if env := c.expectEnvelope(); env.ID() != id || string(env.Body) != "p1" {
		t.Fatalf("plain room push %+v", env)
	}
}

// TestReliableClosedStopsFetch: a connection that closes while its fetch
// waits on logic is not read for again, and leaves no goroutine behind
// (startComet's cleanup checks).
func TestReliableClosedStopsFetch(t *testing.T) {
	e := startComet(t, nil)
	c := dial(t, e, "tcp")
	c.reliableAuth(`{"key":"closing","accepts":[1000],"reliable":true}`)
	name := streamName(protocol.StreamKey, 0, "closing", "")
	var ids []string
	var pos []*protocol.Position
	for i := 1; i <= 3; i++ {
		id, p := e.logic.appendMsg(name, fmt.Sprintf("m%d", i))
		ids, pos = append(ids, id), append(pos, p)
	}
	gate := make(chan struct{})
	e.logic.mu.Lock()
	e.logic.rs.gate = gate
	reads := len(e.logic.rs.reads)
	e.logic.mu.Unlock()
	e.pushKey(t, "closing", ids[2], pos[2], "m3") // a gap: a fetch starts and blocks
	waitFor(t, 5*time.Second, func() error {
		if e.logic.readCount() == reads {
			return fmt.Errorf("no fetch yet")
		}
		return nil
	})
	_ = c.conn.Close()
	waitFor(t, 5*time.Second, func() error {
		if e.srv.bucket("closing").get("closing") != nil {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	// A live push that would need another read arrives meanwhile; it is
	// not delivered to a closed channel.
	e.logic.mu.Lock()
	e.logic.rs.gate = nil
	e.logic.mu.Unlock()
	close(gate)
	// The worker finishes its read, finds the channel closed and stops.
	waitFor(t, 5*time.Second, func() error {
		if n := e.logic.readCount(); n != reads+1 {
			return fmt.Errorf("%d reads since the gap, want 1", n-reads)
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // a further read would show here
	if n := e.logic.readCount(); n != reads+1 {
		t.Fatalf("%d reads after the close, want 1", n-reads)
	}
	if n := testutil.ToFloat64(e.srv.metrics.reliable); n != 0 {
		t.Fatalf("goim_comet_reliable_connections %v after the close", n)
	}
}

// TestRelViewMerged: a room fan-out that merged pushes keeps each
// message's id and position for reliable members, and builds one view of
// them: op-18 frames back to back for TCP, one op-9 carrier of them for
// WebSocket.
func TestRelViewMerged(t *testing.T) {
	pos := &protocol.Position{Stream: protocol.StreamRoom, Epoch: 9, Offset: 3}
	f1 := newFrame(carrier("a", "b"))
	f1.ids = []string{strings.Repeat("1", 32), strings.Repeat("2", 32)}
	f1.pos = []*protocol.Position{nil, pos}
	f2 := newFrame(&protocol.Proto{Ver: 1, Op: 1001, Body: []byte("c")})
	f2.id = strings.Repeat("3", 32)
	merged := &frame{tcp: append(append([]byte(nil), f1.tcp...), f2.tcp...), parts: []*frame{f1, f2}}
	v := merged.reliableView()
	if len(v.msgs) != 3 {
		t.Fatalf("%d messages", len(v.msgs))
	}
	br := bytes.NewReader(v.ws)
	h, err := ws.ReadHeader(br)
	if err != nil || int(h.Length) != br.Len() {
		t.Fatalf("ws view: header %+v, %v", h, err)
	}
	var p protocol.Proto
	if err := p.DecodeWS(v.ws[len(v.ws)-br.Len():], 1<<20); err != nil || p.Op != protocol.OpRaw {
		t.Fatalf("ws view: op %d, %v", p.Op, err)
	}
	if !bytes.Equal(p.Body, v.tcp) {
		t.Fatal("the WebSocket carrier does not hold the TCP frames")
	}
	want := []struct {
		id     string
		op     int32
		body   string
		offset uint64
	}{{f1.ids[0], 1000, "a", 0}, {f1.ids[1], 1000, "b", 3}, {f2.id, 1001, "c", 0}}
	rest := v.tcp
	for i, w := range want {
		var q protocol.Proto
		n, err := q.Decode(rest, 1<<20)
		if err != nil || q.Op != protocol.OpMessage {
			t.Fatalf("frame %d: op %d, %v", i, q.Op, err)
		}
		env, err := protocol.DecodeEnvelope(q.Body)
		if err != nil || env.ID() != w.id || env.Op != w.op || string(env.Body) != w.body || env.Offset != w.offset {
			t.Fatalf("frame %d: %+v, %v", i, env, err)
		}
		rest = rest[n:]
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes after the frames", len(rest))
	}
	if merged.reliableView() != v {
		t.Fatal("the view is built again")
	}
}

// TestReliableSSEIgnored: an SSE stream logic answers reliable for gets
// its pushes as plain events, with no op 20 or envelopes.
func TestReliableSSEIgnored(t *testing.T) {
	e := startComet(t, sseOn)
	e.logic.mu.Lock()
	e.logic.rs.all = true
	e.logic.mu.Unlock()
	s := openSSE(t, e, "ws", "key=sse-rel&accepts=1000")
	e.pushKey(t, "sse-rel", testkit.RandomHex(16), nil, "plain")
	if ev := s.nextEvent(); ev.name != "1000" || ev.data != "plain" {
		t.Fatalf("event %+v", ev)
	}
	if ch := e.srv.bucket("sse-rel").get("sse-rel"); ch == nil || ch.rel != nil {
		t.Fatal("an SSE channel with a reliable state")
	}
}

// TestReliableReadFails: a connection whose stream cannot be read is
// closed (logic_error), to recover when it reconnects.
func TestReliableReadFails(t *testing.T) {
	e := startComet(t, nil)
	e.logic.mu.Lock()
	e.logic.rs.readErr = status.Error(codes.Unavailable, "redis down")
	e.logic.mu.Unlock()
	c := dial(t, e, "tcp")
	c.auth(`{"key":"read-fails","reliable":true}`)
	c.expectClosed()
	waitFor(t, 5*time.Second, func() error {
		if n := e.closes(ReasonLogicError); n != 1 {
			return fmt.Errorf("%d logic_error closes", n)
		}
		if n := testutil.ToFloat64(e.srv.metrics.fetchError); n != 1 {
			return fmt.Errorf("%v failed fetches", n)
		}
		return nil
	})
}
