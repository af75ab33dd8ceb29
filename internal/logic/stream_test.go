package logic

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/testkit"
)

// reliableBody is an auth body opting in to reliable delivery, with since
// (a JSON object, or "" for none).
func reliableBody(tok, room, since string) []byte {
	b := `{"token":"` + tok + `","room_id":"` + room + `","accepts":[1000],"reliable":true`
	if since != "" {
		b += `,"since":` + since
	}
	return []byte(b + "}")
}

// connectReliable connects a reliable connection of mid on server, in
// room unless "".
func (e *env) connectReliable(server string, mid int64, room, since string) *logicpb.ConnectReply {
	e.t.Helper()
	var rooms []string
	if room != "" {
		rooms = []string{room}
	}
	r, err := e.rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: server, Token: reliableBody(token(e.t, mid, rooms...), room, since)})
	if err != nil {
		e.t.Fatalf("Connect(%s, mid %d, reliable): %v", server, mid, err)
	}
	return r
}

// streamKeys lists the stream keys (metas and streams) under e's prefix.
func (e *env) streamKeys() []string {
	e.t.Helper()
	var out []string
	cursor := "0"
	for range 1000 {
		v, err := redis.Values(e.redis.Do("SCAN", cursor, "MATCH", e.prefix+"*", "COUNT", 1000))
		if err != nil {
			e.t.Fatal(err)
		}
		cursor, _ = redis.String(v[0], nil)
		keys, _ := redis.Strings(v[1], nil)
		for _, k := range keys {
			name := strings.TrimPrefix(k, e.prefix)
			for _, p := range []string{"umeta_", "ustream_", "kmeta_", "kstream_", "rmeta_", "rstream_"} {
				if strings.HasPrefix(name, p) {
					out = append(out, name)
				}
			}
		}
		if cursor == "0" {
			break
		}
	}
	slices.Sort(out)
	return out
}

// pushedWith is the records of push id among the first n.
func (e *env) pushedWith(n int, id string) []*logicpb.PushMsg {
	e.t.Helper()
	var out []*logicpb.PushMsg
	for _, p := range e.pushed(n) {
		if p.msg.MsgId == id {
			out = append(out, p.msg)
		}
	}
	return out
}

func pos(stream int32, epoch, offset uint64) *protocol.Position {
	return &protocol.Position{Stream: stream, Epoch: epoch, Offset: offset}
}

func samePositions(a, b []*protocol.Position) bool {
	return slices.EqualFunc(a, b, func(x, y *protocol.Position) bool { return proto.Equal(x, y) })
}

// fakeReceipts records Record calls and fails them when err is set.
type fakeReceipts struct {
	mu       sync.Mutex
	err      error
	pending  map[string][]string // msg id -> targets with a connection
	deferred map[string][]string // msg id -> targets without one
}

func (f *fakeReceipts) Record(_ context.Context, msgID string, live, deferred []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending == nil {
		f.pending = map[string][]string{}
		f.deferred = map[string][]string{}
	}
	f.pending[msgID] = append(f.pending[msgID], live...)
	f.deferred[msgID] = append(f.deferred[msgID], deferred...)
	return f.err
}

func (f *fakeReceipts) Acked(context.Context, []*logicpb.Ack) error { return nil }

func (f *fakeReceipts) Deferred(context.Context, []*logicpb.Ack) error { return nil }

func (f *fakeReceipts) targets(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(slices.Values(f.pending[id]))
}

// TestConnectReliable: a reliable connect opens its user, key and (a
// recoverable room's) room streams after the session write and answers
// their states in that order, with the body's since; a second connect of
// the same user keeps the user stream's epoch.
func TestConnectReliable(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Stream.Rooms = []string{"live://*"} })
	r := e.connectReliable("comet-a", 31, "live://5", `{"user":{"epoch":"00000000000000ab","offset":3},"room":{"epoch":"c","offset":0}}`)
	if !r.Reliable || len(r.Streams) != 3 {
		t.Fatalf("reply %+v, want reliable with 3 streams", r)
	}
	for i, want := range []int32{protocol.StreamUser, protocol.StreamKey, protocol.StreamRoom} {
		if p := r.Streams[i]; p.Stream != want || p.Epoch == 0 || p.Offset != 0 {
			t.Errorf("streams[%d] = %v, want stream %d, a new epoch, top 0", i, p, want)
		}
	}
	if want := []*protocol.Position{pos(1, 0xab, 3), pos(3, 0xc, 0)}; !samePositions(r.Since, want) {
		t.Errorf("since = %v, want %v", r.Since, want)
	}
	if e.rget("key_"+r.Key) != "comet-a" {
		t.Error("no session routing")
	}
	want := []string{"kmeta_" + r.Key, "rmeta_live://5", "umeta_31"}
	if got := e.streamKeys(); !slices.Equal(got, want) {
		t.Errorf("stream keys %v, want %v", got, want)
	}

	// The same user again, in a room that is not recoverable.
	r2 := e.connectReliable("comet-b", 31, "chat://6", "")
	if len(r2.Streams) != 2 || !proto.Equal(r2.Streams[0], r.Streams[0]) || r2.Streams[1].Stream != protocol.StreamKey || len(r2.Since) != 0 {
		t.Fatalf("second reply streams %v since %v, want the same user stream %v and a key stream", r2.Streams, r2.Since, r.Streams[0])
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.streamOpens.WithLabelValues("user")); got != 2 {
		t.Errorf("user stream opens = %v, want 2", got)
	}
}

// TestConnectNotReliable: a connection that does not opt in gets no
// reliable fields and touches no stream (a since without reliable is
// ignored).
func TestConnectNotReliable(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Stream.Rooms = []string{"*"} })
	r := e.connect("comet-a", 32, "live://1")
	body := []byte(`{"token":"` + token(t, 33) + `","since":{"user":{"epoch":"1","offset":1}}}`)
	r2, err := e.rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: "comet-a", Token: body})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*logicpb.ConnectReply{r, r2} {
		if r.Reliable || r.Streams != nil || r.Since != nil {
			t.Errorf("reply %+v has reliable fields", r)
		}
	}
	if got := e.streamKeys(); len(got) != 0 {
		t.Errorf("stream keys %v after plain connects", got)
	}
	for _, s := range []string{"user", "key", "room"} {
		if got := testutil.ToFloat64(e.srv.svc.metrics.streamOpens.WithLabelValues(s)); got != 0 {
			t.Errorf("%s stream opens = %v, want 0", s, got)
		}
	}
}

// TestConnectBatchReliable: the reliable connections of a batch get their
// streams, the others none.
func TestConnectBatchReliable(t *testing.T) {
	e := startLogic(t, nil)
	reqs := []*logicpb.ConnectReq{
		{Server: "comet-a", Token: reliableBody(token(t, 34), "", `{"key":{"epoch":"1","offset":9}}`)},
		{Server: "comet-a", Token: authBody(token(t, 35), "", 1000)},
		{Server: "comet-a", Token: reliableBody(forge(token(t, 36)), "", "")},
		{Server: "comet-b", Token: reliableBody(token(t, 37), "", "")},
	}
	r, err := e.rpc.ConnectBatch(context.Background(), &logicpb.ConnectBatchReq{Reqs: reqs})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{2, 0, -1, 2} {
		res := r.Results[i]
		if want < 0 {
			if codes.Code(res.Code) != codes.Unauthenticated {
				t.Errorf("result %d: %v", i, res)
			}
			continue
		}
		if res.Reply == nil || res.Reply.Reliable != (want > 0) || len(res.Reply.Streams) != want {
			t.Errorf("result %d: %+v, want %d streams", i, res, want)
		}
	}
	if got := r.Results[0].Reply.Since; !samePositions(got, []*protocol.Position{pos(2, 1, 9)}) {
		t.Errorf("since = %v", got)
	}
	if got := len(e.streamKeys()); got != 4 {
		t.Errorf("%d stream keys, want 4 (two users' and two keys' metas)", got)
	}
}

// TestPushMidsStreams: a mids push to two users, one opted in: each of the
// opted-in user's keys carries its position in the user stream, the
// other's stream 0; receipts are pending for the opted-in user only, and
// deferred for an opted-in user with no connection.
func TestPushMidsStreams(t *testing.T) {
	e := startLogic(t, nil)
	rc := &fakeReceipts{}
	e.srv.svc.receipts = rc
	a := e.connectReliable("comet-a", 41, "", "")
	b := e.connect("comet-b", 41, "")
	c := e.connect("comet-a", 42, "")
	epoch := a.Streams[0].Epoch
	ctx := context.Background()
	for n := uint64(1); n <= 2; n++ {
		id, err := e.srv.svc.PushMids(ctx, 1000, []int64{41, 42}, []byte(fmt.Sprint("m", n)))
		if err != nil {
			t.Fatal(err)
		}
		got := e.pushedWith(int(2*n), id)
		if len(got) != 2 || got[0].Server == got[1].Server {
			t.Fatalf("records %v, want one per comet", got)
		}
		want := map[string]*protocol.Position{a.Key: pos(1, epoch, n), b.Key: pos(1, epoch, n), c.Key: {}}
		wantMid := map[string]int64{a.Key: 41, b.Key: 41, c.Key: 42}
		for _, m := range got {
			if len(m.Positions) != len(m.Keys) || len(m.Mids) != len(m.Keys) {
				t.Fatalf("record %+v, want a position and a mid per key", m)
			}
			for i, k := range m.Keys {
				if !proto.Equal(m.Positions[i], want[k]) {
					t.Errorf("push %d: key %s at %v, want %v", n, k, m.Positions[i], want[k])
				}
				if m.Mids[i] != wantMid[k] {
					t.Errorf("push %d: key %s of mid %d, want %d", n, k, m.Mids[i], wantMid[k])
				}
			}
		}
		if tg := rc.targets(id); !slices.Equal(tg, []string{"user:41"}) {
			t.Errorf("pending targets %v, want [user:41]", tg)
		}
	}
	// Only the user who never opted in: no positions, no receipts.
	id, err := e.srv.svc.PushMids(ctx, 1000, []int64{42}, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.pushedWith(5, id); len(got) != 1 || got[0].Positions != nil || got[0].Mids != nil {
		t.Fatalf("records %+v, want one without positions or mids", got)
	}
	if tg := rc.targets(id); tg != nil {
		t.Errorf("pending targets %v for a push in no stream", tg)
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.streamAppends.WithLabelValues("user")); got != 2 {
		t.Errorf("user appends = %v, want 2", got)
	}
	if got := e.streamKeys(); slices.Contains(got, "umeta_42") {
		t.Errorf("a push opened user 42's stream: %v", got)
	}

	// A user whose reliable connection left (its stream open, no session):
	// the push is appended, published nowhere, and its receipt deferred.
	d := e.connectReliable("comet-a", 43, "", "")
	if _, err := e.rpc.Disconnect(ctx, &logicpb.DisconnectReq{Mid: 43, Key: d.Key, Server: "comet-a"}); err != nil {
		t.Fatal(err)
	}
	id, err = e.srv.svc.PushMids(ctx, 1000, []int64{41, 43}, []byte("y"))
	if err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	pending, deferred := rc.pending[id], rc.deferred[id]
	rc.mu.Unlock()
	if !slices.Equal(pending, []string{"user:41"}) || !slices.Equal(deferred, []string{"user:43"}) {
		t.Errorf("receipts pending %v deferred %v, want [user:41] and [user:43]", pending, deferred)
	}
}

// TestPushKeysStreams: a keys push: the opted-in key carries its position
// in its key stream, the other stream 0; a push to plain keys only
// carries no positions.
func TestPushKeysStreams(t *testing.T) {
	e := startLogic(t, nil)
	rc := &fakeReceipts{}
	e.srv.svc.receipts = rc
	a := e.connectReliable("comet-a", 51, "", "")
	b := e.connect("comet-a", 52, "")
	ctx := context.Background()
	id, err := e.srv.svc.PushKeys(ctx, 1001, []string{a.Key, b.Key}, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	p := e.pushed(1)[0].msg
	if !slices.Equal(p.Keys, []string{a.Key, b.Key}) || !samePositions(p.Positions, []*protocol.Position{pos(2, a.Streams[1].Epoch, 1), {}}) {
		t.Fatalf("record keys %v positions %v", p.Keys, p.Positions)
	}
	if p.Mids != nil {
		t.Errorf("keys push carries mids %v", p.Mids)
	}
	if tg := rc.targets(id); !slices.Equal(tg, []string{"key:" + a.Key}) {
		t.Errorf("pending targets %v", tg)
	}
	id, err = e.srv.svc.PushKeys(ctx, 1001, []string{b.Key}, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.pushedWith(2, id); len(got) != 1 || got[0].Positions != nil {
		t.Fatalf("records %+v, want one without positions", got)
	}
}

// TestPushPendingFails: a failing Receipts.Pending is counted and the
// push succeeds.
func TestPushPendingFails(t *testing.T) {
	e := startLogic(t, nil)
	e.srv.svc.receipts = &fakeReceipts{err: errors.New("receipts down")}
	a := e.connectReliable("comet-a", 53, "", "")
	if _, err := e.srv.svc.PushKeys(context.Background(), 1, []string{a.Key}, []byte("k")); err != nil {
		t.Fatalf("push with failing receipts: %v", err)
	}
	if p := e.pushed(1)[0].msg; len(p.Positions) != 1 || p.Positions[0].Offset != 1 {
		t.Fatalf("record %+v", p)
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.pendingErrors); got != 1 {
		t.Errorf("pending errors = %v, want 1", got)
	}
}

// TestPushRoomStreams: a recoverable room's pushes carry their place in
// the room stream (created by the first); a plain room's carry none.
func TestPushRoomStreams(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Stream.Rooms = []string{"live://*"} })
	ctx := context.Background()
	var epoch uint64
	for n := uint64(1); n <= 2; n++ {
		id, err := e.srv.svc.PushRoom(ctx, 5, "live://1", []byte("r"))
		if err != nil {
			t.Fatal(err)
		}
		got := e.pushedWith(int(n), id)
		if len(got) != 1 {
			t.Fatalf("records %v", got)
		}
		p := got[0]
		if len(p.Positions) != 1 || p.Positions[0].Stream != protocol.StreamRoom || p.Positions[0].Offset != n || p.Positions[0].Epoch == 0 {
			t.Fatalf("room push %d positions %v", n, p.Positions)
		}
		if n == 1 {
			epoch = p.Positions[0].Epoch
		} else if p.Positions[0].Epoch != epoch {
			t.Fatalf("epoch changed: %x then %x", epoch, p.Positions[0].Epoch)
		}
	}
	if _, err := e.srv.svc.PushRoom(ctx, 5, "chat://1", []byte("r")); err != nil {
		t.Fatal(err)
	}
	for _, p := range e.pushed(3) {
		if p.msg.Room == "chat://1" && p.msg.Positions != nil {
			t.Fatalf("plain room push %+v has positions", p.msg)
		}
	}
	if got := e.streamKeys(); !slices.Equal(got, []string{"rmeta_live://1", "rstream_live://1"}) {
		t.Errorf("stream keys %v", got)
	}
}

// TestStreamsDisabled: with [stream] enabled = false nothing is opened or
// appended; reliable connections still get reliable and since.
func TestStreamsDisabled(t *testing.T) {
	e := startLogic(t, func(c *Config) {
		c.Stream.Enabled = false
		c.Stream.Rooms = []string{"*"}
	})
	e.srv.svc.receipts = &fakeReceipts{}
	a := e.connectReliable("comet-a", 61, "live://1", `{"user":{"epoch":"5","offset":1}}`)
	if !a.Reliable || a.Streams != nil || !samePositions(a.Since, []*protocol.Position{pos(1, 5, 1)}) {
		t.Fatalf("reply %+v", a)
	}
	ctx := context.Background()
	if _, err := e.srv.svc.PushMids(ctx, 1, []int64{61}, []byte("m")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.svc.PushKeys(ctx, 1, []string{a.Key}, []byte("k")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.svc.PushRoom(ctx, 1, "live://1", []byte("r")); err != nil {
		t.Fatal(err)
	}
	for _, p := range e.pushed(3) {
		if p.msg.Positions != nil {
			t.Errorf("record %+v has positions", p.msg)
		}
	}
	if got := e.streamKeys(); len(got) != 0 {
		t.Errorf("stream keys %v with streams off", got)
	}
	r, err := e.rpc.ReadStream(ctx, &logicpb.ReadStreamReq{Stream: 1, Mid: 61, Limit: 10})
	if err != nil || r.Epoch != 0 || len(r.Entries) != 0 {
		t.Errorf("ReadStream with streams off = %v, %v; want no stream", r, err)
	}
}

// TestReadStream: what a comet reads back after pushes: entries after its
// offset with their ids, ops and bodies; limit capped by max_read; a
// trimmed or foreign epoch reads from the oldest, not recovered; a
// missing stream reads as epoch 0.
func TestReadStream(t *testing.T) {
	e := startLogic(t, func(c *Config) {
		c.Stream.MaxRead = 2
		c.Stream.MaxLen = 3
	})
	a := e.connectReliable("comet-a", 71, "", "")
	epoch := a.Streams[0].Epoch
	ctx := context.Background()
	var ids []string
	for i := range 4 {
		id, err := e.srv.svc.PushMids(ctx, int32(1000+i), []int64{71}, []byte{byte('a' + i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	read := func(req *logicpb.ReadStreamReq) *logicpb.ReadStreamReply {
		t.Helper()
		r, err := e.rpc.ReadStream(ctx, req)
		if err != nil {
			t.Fatalf("ReadStream(%v): %v", req, err)
		}
		return r
	}
	r := read(&logicpb.ReadStreamReq{Stream: 1, Mid: 71, Epoch: epoch, After: 2, Limit: 100})
	want := []*logicpb.StreamEntry{{Offset: 3, MsgId: ids[2], Op: 1002, Body: []byte("c")}, {Offset: 4, MsgId: ids[3], Op: 1003, Body: []byte("d")}}
	if r.Epoch != epoch || r.Top != 4 || !r.Recovered || !slices.EqualFunc(r.Entries, want, func(x, y *logicpb.StreamEntry) bool { return proto.Equal(x, y) }) {
		t.Fatalf("read after 2 = %v", r)
	}
	r = read(&logicpb.ReadStreamReq{Stream: 1, Mid: 71, Epoch: epoch, After: 0, Limit: 100})
	if r.Recovered || len(r.Entries) != 2 || r.Entries[0].Offset != 2 {
		t.Fatalf("read after 0 of a trimmed stream = %v, want not recovered, 2 entries from offset 2", r)
	}
	r = read(&logicpb.ReadStreamReq{Stream: 1, Mid: 71, Epoch: epoch + 1, After: 3, Limit: 1})
	if r.Recovered || len(r.Entries) != 1 || r.Entries[0].Offset != 2 || r.Epoch != epoch {
		t.Fatalf("read of another epoch = %v", r)
	}
	r = read(&logicpb.ReadStreamReq{Stream: 1, Mid: 71, Epoch: epoch, After: 4})
	if !r.Recovered || r.Top != 4 || len(r.Entries) != 0 {
		t.Fatalf("state read = %v", r)
	}
	r = read(&logicpb.ReadStreamReq{Stream: 2, Key: a.Key, Epoch: a.Streams[1].Epoch, Limit: 10})
	if !r.Recovered || r.Top != 0 || len(r.Entries) != 0 {
		t.Fatalf("read of an empty key stream = %v", r)
	}
	for _, req := range []*logicpb.ReadStreamReq{
		{Stream: 1, Mid: 72, Limit: 1},
		{Stream: 2, Key: "never", Limit: 1},
		{Stream: 3, Room: "live://none", Limit: 1},
	} {
		if r := read(req); r.Epoch != 0 || r.Top != 0 || r.Recovered || len(r.Entries) != 0 {
			t.Errorf("read of missing %v = %v, want epoch 0", req, r)
		}
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.streamReads.WithLabelValues("missing")); got != 3 {
		t.Errorf("missing reads = %v, want 3", got)
	}
}

// TestReadStreamInvalid: every refused request wraps ErrInvalidArgument
// (gRPC InvalidArgument) and touches no stream.
func TestReadStreamInvalid(t *testing.T) {
	e := startLogic(t, nil)
	cases := []struct {
		name string
		req  *logicpb.ReadStreamReq
	}{
		{name: "stream 0", req: &logicpb.ReadStreamReq{Stream: 0, Mid: 1}},
		{name: "stream 4", req: &logicpb.ReadStreamReq{Stream: 4, Mid: 1}},
		{name: "negative stream", req: &logicpb.ReadStreamReq{Stream: -1, Mid: 1}},
		{name: "user without mid", req: &logicpb.ReadStreamReq{Stream: 1}},
		{name: "user with negative mid", req: &logicpb.ReadStreamReq{Stream: 1, Mid: -5}},
		{name: "empty key", req: &logicpb.ReadStreamReq{Stream: 2}},
		{name: "bad key", req: &logicpb.ReadStreamReq{Stream: 2, Key: "a b"}},
		{name: "long key", req: &logicpb.ReadStreamReq{Stream: 2, Key: strings.Repeat("k", protocol.MaxKeyLen+1)}},
		{name: "empty room", req: &logicpb.ReadStreamReq{Stream: 3}},
		{name: "bad room", req: &logicpb.ReadStreamReq{Stream: 3, Room: "live://a\nb"}},
		{name: "long room", req: &logicpb.ReadStreamReq{Stream: 3, Room: strings.Repeat("r", protocol.MaxRoomIDLen+1)}},
		{name: "negative limit", req: &logicpb.ReadStreamReq{Stream: 1, Mid: 1, Limit: -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.srv.svc.ReadStream(context.Background(), tc.req); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("ReadStream = %v, want ErrInvalidArgument", err)
			}
			if _, err := e.rpc.ReadStream(context.Background(), tc.req); status.Code(err) != codes.InvalidArgument {
				t.Fatalf("ReadStream over gRPC = %v, want InvalidArgument", err)
			}
		})
	}
	// The bounds themselves are accepted.
	for _, req := range []*logicpb.ReadStreamReq{
		{Stream: 2, Key: strings.Repeat("k", protocol.MaxKeyLen)},
		{Stream: 3, Room: strings.Repeat("r", protocol.MaxRoomIDLen)},
		{Stream: 1, Mid: 1, Limit: 1 << 30},
	} {
		if _, err := e.srv.svc.ReadStream(context.Background(), req); err != nil {
			t.Errorf("ReadStream(%v) = %v", req, err)
		}
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.streamReads.WithLabelValues("invalid")); got != float64(2*len(cases)) {
		t.Errorf("invalid reads = %v, want %d", got, 2*len(cases))
	}
}

// redisCommands runs fn and returns the names of the commands Redis ran
// on e's session and stream keys meanwhile (by MONITOR; the online
// refresh's keys are left out), in order.
func (e *env) redisCommands(fn func()) []string {
	e.t.Helper()
	c, err := redis.Dial("tcp", testkit.RedisAddr(), redis.DialReadTimeout(5*time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	if ok, err := redis.String(c.Do("MONITOR")); err != nil || ok != "OK" {
		e.t.Fatalf("MONITOR: %q, %v", ok, err)
	}
	fn()
	sentinel := e.prefix + "monitor-end-" + testkit.RandomHex(4)
	if _, err := e.redis.Do("GET", sentinel); err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for range 100000 {
		line, err := redis.String(c.Receive())
		if err != nil {
			e.t.Fatalf("MONITOR: %v", err)
		}
		if strings.Contains(line, sentinel) {
			return names
		}
		if !strings.Contains(line, e.prefix) || strings.Contains(line, "online_servers") ||
			strings.Contains(line, e.prefix+"ol_") || strings.Contains(line, e.prefix+"epoch") {
			continue
		}
		_, cmd, ok := strings.Cut(line, `] "`)
		name, _, _ := strings.Cut(cmd, `"`)
		if !ok || name == "" {
			e.t.Fatalf("MONITOR line %q", line)
		}
		names = append(names, strings.ToUpper(name))
	}
	e.t.Fatal("MONITOR: no end")
	return nil
}

// TestRedisCallsWithoutOptIn: a connection that does not opt in costs the
// session write and nothing more, even in a recoverable room; with streams
// on, a push to targets without a stream costs their lookups and one
// EXISTS each; with streams off, goim v2's lookups only (one HGETALL per
// member, one MGET for keys, nothing for a room).
func TestRedisCallsWithoutOptIn(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Stream.Rooms = []string{"*"} })
	got := e.redisCommands(func() { e.connect("comet-a", 81, "live://1") })
	slices.Sort(got)
	if want := []string{"DEL", "HSET", "PEXPIRE", "SET"}; !slices.Equal(got, want) {
		t.Fatalf("a plain connect ran %v, want %v (the session write)", got, want)
	}
	got = e.redisCommands(func() { e.connectReliable("comet-a", 82, "live://1", "") })
	if !slices.Contains(got, "EVALSHA") && !slices.Contains(got, "EVAL") {
		t.Fatalf("a reliable connect ran %v, want the stream opens too", got)
	}

	// Streams on: a target that keeps no stream costs its lookup and an
	// EXISTS, the body is not sent; only an opted-in one runs the script.
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		push func() error
		want []string
	}{
		{name: "mids", want: []string{"HGETALL", "EXISTS", "HGETALL", "EXISTS"}, push: func() error {
			_, err := e.srv.svc.PushMids(ctx, 1, []int64{81, 84}, []byte("m"))
			return err
		}},
		{name: "keys", want: []string{"GET", "EXISTS"}, push: func() error {
			_, err := e.srv.svc.PushKeys(ctx, 1, []string{"no-such-key"}, []byte("k"))
			return err
		}},
		{name: "mids, one opted in", want: []string{"HGETALL", "EXISTS", "HGETALL", "EXISTS", "EVALSHA"}, push: func() error {
			_, err := e.srv.svc.PushMids(ctx, 1, []int64{81, 82}, []byte("m"))
			return err
		}},
	} {
		var err error
		got := e.redisCommands(func() { err = tc.push() })
		if err != nil {
			t.Fatalf("%s push: %v", tc.name, err)
		}
		if n := len(tc.want); tc.want[n-1] == "EVALSHA" && len(got) >= n && (got[n-1] == "EVAL" || got[n-1] == "EVALSHA") {
			// The script (sent by source when Redis lacks it) and what it
			// runs, which MONITOR lists too, then the receipts follow.
			got = got[:n]
			got[n-1] = "EVALSHA"
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s push with streams on ran %v, want %v", tc.name, got, tc.want)
		}
	}

	off := startLogic(t, func(c *Config) {
		c.Stream.Enabled = false
		c.Stream.Rooms = []string{"*"}
	})
	a := off.connectReliable("comet-a", 83, "live://1", "")
	for _, tc := range []struct {
		name string
		push func() error
		want []string
	}{
		{name: "mids", want: []string{"HGETALL", "HGETALL"}, push: func() error {
			_, err := off.srv.svc.PushMids(ctx, 1, []int64{83, 84}, []byte("m"))
			return err
		}},
		{name: "keys", want: []string{"MGET"}, push: func() error {
			_, err := off.srv.svc.PushKeys(ctx, 1, []string{a.Key, "other"}, []byte("k"))
			return err
		}},
		{name: "room", want: nil, push: func() error {
			_, err := off.srv.svc.PushRoom(ctx, 1, "live://1", []byte("r"))
			return err
		}},
	} {
		var err error
		got := off.redisCommands(func() { err = tc.push() })
		if err != nil {
			t.Fatalf("%s push: %v", tc.name, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s push with streams off ran %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestStreamRedisErrors: a stream that cannot be opened fails a reliable
// connect (alone in a batch); a recoverable room's push whose append fails
// is not published.
func TestStreamRedisErrors(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Stream.Rooms = []string{"live://*"} })
	if _, err := e.redis.Do("SET", e.prefix+"umeta_91", "not a hash"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.rpc.Connect(ctx, &logicpb.ConnectReq{Server: "comet-a", Token: reliableBody(token(t, 91), "", "")}); status.Code(err) != codes.Unavailable && status.Code(err) != codes.Internal {
		t.Fatalf("reliable Connect with a broken stream = %v, want a server error", err)
	}
	r, err := e.rpc.ConnectBatch(ctx, &logicpb.ConnectBatchReq{Reqs: []*logicpb.ConnectReq{
		{Server: "comet-a", Token: reliableBody(token(t, 91), "", "")},
		{Server: "comet-a", Token: authBody(token(t, 91), "", 1000)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Results[0].Reply != nil || codes.Code(r.Results[0].Code) == codes.OK || r.Results[1].Reply == nil {
		t.Fatalf("batch results %v, want the reliable one failed and the plain one accepted", r.Results)
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.redisErrors.WithLabelValues("open_streams")); got != 2 {
		t.Errorf("open_streams errors = %v, want 2", got)
	}

	if _, err := e.redis.Do("SET", e.prefix+"rmeta_live://9", "not a hash"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.svc.PushRoom(ctx, 1, "live://9", []byte("r")); err == nil {
		t.Fatal("PushRoom with a broken room stream succeeded")
	}
	if n := e.published(logicpb.PushMsg_ROOM); n != 0 {
		t.Fatalf("%d room pushes published after a failed append", n)
	}
}
