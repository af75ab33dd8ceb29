package webclient_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/browser"
	"github.com/goim/goim/internal/webclient"
)

// relComet is a WebSocket comet that runs one script per connection, in
// order, and reports each script's outcome on res.
type relComet struct {
	mu      sync.Mutex
	scripts []func(c *relConn) error
	res     chan error
}

// startRelComet serves goim.js, the test page and a relComet running
// scripts at /rsub, opens the page in the browser and returns the comet,
// the page and the comet's WebSocket URL.
func startRelComet(t *testing.T, scripts ...func(*relConn) error) (*relComet, *browser.Page, string) {
	t.Helper()
	f := &relComet{scripts: scripts, res: make(chan error, len(scripts)+1)}
	mux := http.NewServeMux()
	mux.Handle("GET /goim.js", webclient.Handler())
	mux.Handle("GET /page", pageHandler())
	mux.Handle("GET /rsub", f)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p := openHarness(t, srv.URL+"/page")
	return f, p, "ws" + strings.TrimPrefix(srv.URL, "http") + "/rsub"
}

// relConn is the comet side of one connection.
type relConn struct{ nc net.Conn }

func (f *relComet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	nc, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	defer nc.Close()
	f.mu.Lock()
	if len(f.scripts) == 0 {
		f.mu.Unlock()
		f.res <- errors.New("a connection beyond the scripts")
		return
	}
	script := f.scripts[0]
	f.scripts = f.scripts[1:]
	f.mu.Unlock()
	// Bounds a broken test, not a timing assertion.
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	f.res <- script(&relConn{nc: nc})
}

// read returns the next frame's op and body, skipping heartbeats.
func (c *relConn) read() (int32, []byte, error) {
	for {
		msg, err := wsutil.ReadClientBinary(c.nc)
		if err != nil {
			return 0, nil, err
		}
		if len(msg) < protocol.HeaderSize {
			return 0, nil, fmt.Errorf("message of %d bytes", len(msg))
		}
		if op := int32(binary.BigEndian.Uint32(msg[8:])); op != protocol.OpHeartbeat {
			return op, msg[protocol.HeaderSize:], nil
		}
	}
}

func (c *relConn) auth() (protocol.AuthBody, error) {
	op, body, err := c.read()
	if err != nil {
		return protocol.AuthBody{}, err
	}
	if op != protocol.OpAuth {
		return protocol.AuthBody{}, fmt.Errorf("first frame op %d", op)
	}
	return protocol.ParseAuthBody(body)
}

func (c *relConn) send(frames ...[]byte) error {
	for _, f := range frames {
		if err := wsutil.WriteServerBinary(c.nc, f); err != nil {
			return err
		}
	}
	return nil
}

// acks reads op-19 frames until n ids arrived.
func (c *relConn) acks(n int) ([]string, error) {
	var ids []string
	for len(ids) < n {
		op, body, err := c.read()
		if err != nil {
			return ids, err
		}
		if op != protocol.OpAck {
			return ids, fmt.Errorf("op %d while waiting for acks", op)
		}
		got, err := protocol.ParseAck(body)
		if err != nil {
			return ids, err
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

// relEvent is what the page recorded: a message or an op-20 report.
type relEvent struct {
	Op      int32       `json:"op,omitempty"`
	Text    string      `json:"text,omitempty"`
	MsgID   string      `json:"msgId,omitempty"`
	Stream  string      `json:"stream,omitempty"`
	Epoch   string      `json:"epoch,omitempty"`
	Offset  uint64      `json:"offset,omitempty"`
	Streams []relStream `json:"streams,omitempty"`
}

type relStream struct {
	Stream    string `json:"stream"`
	Epoch     string `json:"epoch"`
	Offset    uint64 `json:"offset"`
	Recovered bool   `json:"recovered"`
}

// TestClientReliable: goim.js with reliable: true against a scripted
// WebSocket comet. The first auth carries reliable and the since option;
// op 20 reaches onStreams; envelopes, alone and in an op-9 carrier, reach
// onMessage unwrapped with their id and position; duplicates and offsets
// at or below the position are dropped; each id of a user or key push
// is acked once (op 19; room pushes and pushes in no stream are not);
// after the comet closes, the reconnect's auth carries the last
// positions; positions() follows the op-20 reports; close() sends the
// acks still waiting. Bad options and ack ids are TypeErrors.
func TestClientReliable(t *testing.T) {
	const userEpoch, keyEpoch, roomEpoch, newRoomEpoch = 0x1, 0x2, 0x9, 0xa
	wantAcks := []string{testkit.MsgID(1), testkit.MsgID(2), testkit.MsgID(4), testkit.MsgID(7)} // user and key pushes only
	first := func(c *relConn) error {
		a, err := c.auth()
		if err != nil {
			return err
		}
		if !a.Reliable || a.Mid != 7 || a.RoomID != "live://r" {
			return fmt.Errorf("first auth %+v", a)
		}
		if err := testkit.CheckSince(a.Since, `{"user":{"epoch":"0000000000000001","offset":3}}`); err != nil {
			return err
		}
		carrier := slices.Concat(
			testkit.EnvelopeFrame(6, protocol.StreamRoom, roomEpoch, 10, 1000, "r10"),
			testkit.EnvelopeFrame(7, protocol.StreamUser, userEpoch, 6, 1000, "u6"),
			testkit.EnvelopeFrame(7, protocol.StreamUser, userEpoch, 6, 1000, "u6 again"))
		err = c.send(frame(protocol.OpAuthReply, 1, nil),
			testkit.StreamsFrame(
				protocol.StreamState{Stream: "user", Epoch: protocol.FormatEpoch(userEpoch), Offset: 5, Recovered: true},
				protocol.StreamState{Stream: "key", Epoch: protocol.FormatEpoch(keyEpoch), Offset: 0, Recovered: false},
				protocol.StreamState{Stream: "future", Epoch: "1", Offset: 1, Recovered: true}),
			testkit.EnvelopeFrame(1, protocol.StreamUser, userEpoch, 4, 1000, "u4"),
			testkit.EnvelopeFrame(2, protocol.StreamUser, userEpoch, 5, 1001, "u5"),
			testkit.EnvelopeFrame(2, protocol.StreamUser, userEpoch, 5, 1001, "u5 again"),
			testkit.EnvelopeFrame(3, protocol.StreamUser, userEpoch, 3, 1000, "u3 old"),
			testkit.EnvelopeFrame(4, protocol.StreamKey, keyEpoch, 1, 1000, "k1"),
			testkit.EnvelopeFrame(5, protocol.StreamNone, 0, 0, 1002, "none"),
			frame(protocol.OpRaw, 0, carrier),
			frame(1000, 0, []byte("plain")),
		)
		if err != nil {
			return err
		}
		ids, err := c.acks(len(wantAcks))
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
		err = c.send(frame(protocol.OpAuthReply, 1, nil),
			testkit.StreamsFrame(
				protocol.StreamState{Stream: "user", Epoch: protocol.FormatEpoch(userEpoch), Offset: 7, Recovered: true},
				protocol.StreamState{Stream: "room", Epoch: protocol.FormatEpoch(newRoomEpoch), Offset: 50, Recovered: false}),
			testkit.EnvelopeFrame(8, protocol.StreamUser, userEpoch, 7, 1000, "u7"),
		)
		if err != nil {
			return err
		}
		if ids, err := c.acks(1); err != nil || ids[0] != testkit.MsgID(8) {
			return fmt.Errorf("acks %v: %v", ids, err)
		}
		return nil
	}
	f, p, u := startRelComet(t, first, second)

	if err := p.Eval(`(() => { h.rel = []; h.c = new h.g.Client({url: `+js(u)+`, heartbeat: 600000,
		backoff: {base: 20, max: 20, factor: 1, jitter: 0}, reliable: true,
		since: {user: {epoch: '1', offset: 3}},
		auth: {mid: 7, room_id: 'live://r', accepts: [1000]},
		onMessage: (m) => h.rel.push({op: m.op, text: m.text(), msgId: m.msgId, stream: m.stream, epoch: m.epoch, offset: m.offset}),
		onStreams: (s) => h.rel.push({streams: s}),
		onState: (s, e) => h.states.push(e ? s + ': ' + e.name + ': ' + e.message : s)});
		return h.c.connect().then(() => true); })()`, nil); err != nil {
		t.Fatal(err)
	}
	const relState = `({rel: h.rel, states: h.states})`
	if err := p.Wait("ten events", `h.rel.length >= 10`, relState); err != nil {
		t.Fatal(err)
	}
	var got []relEvent
	if err := p.Eval(`h.rel`, &got); err != nil {
		t.Fatal(err)
	}
	ep := protocol.FormatEpoch
	want := []relEvent{
		{Streams: []relStream{{Stream: "user", Epoch: ep(userEpoch), Offset: 5, Recovered: true}, {Stream: "key", Epoch: ep(keyEpoch)}}},
		{Op: 1000, Text: "u4", MsgID: testkit.MsgID(1), Stream: "user", Epoch: ep(userEpoch), Offset: 4},
		{Op: 1001, Text: "u5", MsgID: testkit.MsgID(2), Stream: "user", Epoch: ep(userEpoch), Offset: 5},
		{Op: 1000, Text: "k1", MsgID: testkit.MsgID(4), Stream: "key", Epoch: ep(keyEpoch), Offset: 1},
		{Op: 1002, Text: "none", MsgID: testkit.MsgID(5), Epoch: ep(0)},
		{Op: 1000, Text: "r10", MsgID: testkit.MsgID(6), Stream: "room", Epoch: ep(roomEpoch), Offset: 10},
		{Op: 1000, Text: "u6", MsgID: testkit.MsgID(7), Stream: "user", Epoch: ep(userEpoch), Offset: 6},
		{Op: 1000, Text: "plain"},
		{Streams: []relStream{{Stream: "user", Epoch: ep(userEpoch), Offset: 7, Recovered: true}, {Stream: "room", Epoch: ep(newRoomEpoch), Offset: 50}}},
		{Op: 1000, Text: "u7", MsgID: testkit.MsgID(8), Stream: "user", Epoch: ep(userEpoch), Offset: 7},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events\n got %+v\nwant %+v", got, want)
	}
	if err := <-f.res; err != nil {
		t.Fatalf("connection 1: %v", err)
	}
	var res struct {
		Positions map[string]relStream `json:"positions"`
		Dups      int                  `json:"dups"`
	}
	if err := p.Eval(`({positions: h.c.positions(), dups: h.c.duplicates})`, &res); err != nil {
		t.Fatal(err)
	}
	wantPos := map[string]relStream{"user": {Epoch: ep(userEpoch), Offset: 7}, "key": {Epoch: ep(keyEpoch), Offset: 1}, "room": {Epoch: ep(newRoomEpoch), Offset: 50}}
	if !reflect.DeepEqual(res.Positions, wantPos) || res.Dups != 3 {
		t.Fatalf("positions %+v, %d duplicates", res, res.Dups)
	}
	if err := p.Eval(`h.c.close()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-f.res; err != nil {
		t.Fatalf("connection 2: %v", err)
	}

	var errs []string
	if err := p.Eval(`[
		() => new h.g.Client({url: 'ws://127.0.0.1:1/sub', reliable: true, since: {user: {epoch: 'xyz', offset: 1}}}),
		() => new h.g.Client({url: 'ws://127.0.0.1:1/sub', reliable: true, since: {key: {epoch: '1', offset: -1}}}),
		() => new h.g.Client({url: 'ws://127.0.0.1:1/sub', reliable: true, since: {room: {epoch: '10000000000000000', offset: 1}}}),
		() => new h.g.Client({url: 'ws://127.0.0.1:1/sub', reliable: true}).ack('nope'),
		() => new h.g.Client({url: 'ws://127.0.0.1:1/sub'}).ack(`+js(testkit.MsgID(1))+`),
		() => h.g.encodeAck([]),
		() => h.g.encodeAck(Array(65).fill(`+js(testkit.MsgID(1))+`)),
	].map((f) => { try { f(); return 'accepted'; } catch (e) { return e.name; } })`, &errs); err != nil {
		t.Fatal(err)
	}
	for i, e := range errs {
		if e != "TypeError" {
			t.Errorf("case %d: %s, want a TypeError", i, e)
		}
	}
}

// TestDecodeEnvelope: decodeEnvelope reads what protocol.AppendEnvelope
// writes and throws a ProtocolError for every malformed body.
func TestDecodeEnvelope(t *testing.T) {
	_, srv := startFake(t)
	p := openHarness(t, srv.URL+"/page")
	good := protocol.AppendEnvelope(nil, "0123456789abcdef0123456789abcdef", &protocol.Position{Stream: protocol.StreamUser, Epoch: 0x1122334455667788, Offset: 1<<53 - 1}, 1000, []byte("hi"))
	var got map[string]any
	expr := `(() => { const e = h.g.decodeEnvelope(new Uint8Array(` + js(bytesToInts(good)) + `)); return Object.assign({}, e, {body: new TextDecoder().decode(e.body)}); })()`
	if err := p.Eval(expr, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"msgId": "0123456789abcdef0123456789abcdef", "stream": "user", "epoch": "1122334455667788",
		"offset": float64(1<<53 - 1), "op": float64(1000), "seq": float64(0), "body": "hi"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %v, want %v", got, want)
	}
	bad := map[string][]byte{
		"empty":              nil,
		"one byte short":     good[:protocol.EnvelopeHeaderSize+protocol.HeaderSize-1],
		"stream 4":           append([]byte{4}, good[1:]...),
		"inner truncated":    good[:len(good)-1],
		"byte after":         append(slices.Clone(good), 0),
		"inner headerLen 17": func() []byte { b := slices.Clone(good); b[protocol.EnvelopeHeaderSize+5] = 17; return b }(),
	}
	for name, b := range bad {
		var res string
		expr := `(() => { try { h.g.decodeEnvelope(new Uint8Array(` + js(bytesToInts(b)) + `)); return 'decoded'; } catch (e) { return e.name; } })()`
		if err := p.Eval(expr, &res); err != nil {
			t.Fatal(err)
		}
		if res != "ProtocolError" {
			t.Errorf("%s: %s, want a ProtocolError", name, res)
		}
	}
	var ack []int
	if err := p.Eval(`Array.from(h.g.encodeAck(['0123456789abcdef0123456789ABCDEF', 'ffffffffffffffffffffffffffffffff']))`, &ack); err != nil {
		t.Fatal(err)
	}
	ids, err := protocol.ParseAck(intsToBytes(ack))
	if err != nil || !slices.Equal(ids, []string{"0123456789abcdef0123456789abcdef", "ffffffffffffffffffffffffffffffff"}) {
		t.Fatalf("encodeAck: %v, %v", ids, err)
	}
}

func intsToBytes(v []int) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

// TestClientPlainOps18to20: a client without reliable sends no reliable
// or since in its auth body and gets ops 18 to 20 as business ops, bodies
// as sent.
func TestClientPlainOps18to20(t *testing.T) {
	env := testkit.EnvelopeFrame(1, protocol.StreamUser, 1, 1, 1000, "x")
	script := func(c *relConn) error {
		op, body, err := c.read()
		if err != nil {
			return err
		}
		var auth map[string]any
		if err := json.Unmarshal(body, &auth); err != nil || op != protocol.OpAuth {
			return fmt.Errorf("auth op %d %s: %v", op, body, err)
		}
		if _, ok := auth["reliable"]; ok {
			return fmt.Errorf("auth body %s", body)
		}
		if _, ok := auth["since"]; ok {
			return fmt.Errorf("auth body %s", body)
		}
		if err := c.send(frame(protocol.OpAuthReply, 1, nil), frame(protocol.OpStreams, 0, []byte("not json")), env); err != nil {
			return err
		}
		_, _, err = c.read() // until the client closes
		if err == nil {
			return errors.New("a frame instead of the close")
		}
		return nil
	}
	f, p, u := startRelComet(t, script)
	if err := p.Eval(`(() => { h.c = new h.g.Client({url: `+js(u)+`, heartbeat: 600000, auth: {mid: 3, accepts: [1000]},
		onMessage: (m) => { h.msgs.push({op: m.op, text: m.text()}); if (m.op === 18) h.rawBody = Array.from(m.body); }});
		return h.c.connect().then(() => true); })()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait("two messages", `h.msgs.length >= 2`, stateJS); err != nil {
		t.Fatal(err)
	}
	var got []struct {
		Op   int32  `json:"op"`
		Text string `json:"text"`
	}
	if err := p.Eval(`h.msgs`, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Op != protocol.OpStreams || got[0].Text != "not json" || got[1].Op != protocol.OpMessage {
		t.Fatalf("messages %+v", got)
	}
	var raw []int // the op-18 message's body, byte for byte
	if err := p.Eval(`h.rawBody`, &raw); err != nil {
		t.Fatal(err)
	}
	if string(intsToBytes(raw)) != string(env[protocol.HeaderSize:]) {
		t.Fatalf("op-18 body %v", raw)
	}
	if err := p.Eval(`h.c.close()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-f.res; err != nil {
		t.Fatal(err)
	}
}
