package job

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	cometpb "github.com/goim/goim/api/comet"
	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// recComet is a comet's gRPC service that records every request it gets
// and accepts it.
type recComet struct {
	cometpb.UnimplementedCometServer
	mu    sync.Mutex
	push  []*cometpb.PushMsgReq
	room  []*cometpb.BroadcastRoomReq
	bcast []*cometpb.BroadcastReq
}

func (c *recComet) PushMsg(_ context.Context, r *cometpb.PushMsgReq) (*cometpb.PushMsgReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.push = append(c.push, r)
	return &cometpb.PushMsgReply{Delivered: int32(len(r.GetKeys()))}, nil
}

func (c *recComet) BroadcastRoom(_ context.Context, r *cometpb.BroadcastRoomReq) (*cometpb.BroadcastRoomReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.room = append(c.room, r)
	return &cometpb.BroadcastRoomReply{}, nil
}

func (c *recComet) Broadcast(_ context.Context, r *cometpb.BroadcastReq) (*cometpb.BroadcastReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bcast = append(c.bcast, r)
	return &cometpb.BroadcastReply{}, nil
}

// pushes returns the PushMsg requests received so far.
func (c *recComet) pushes() []*cometpb.PushMsgReq {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.push)
}

// rooms returns the BroadcastRoom requests received so far.
func (c *recComet) rooms() []*cometpb.BroadcastRoomReq {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.room)
}

// broadcasts returns the Broadcast requests received so far.
func (c *recComet) broadcasts() []*cometpb.BroadcastReq {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.bcast)
}

// startRecComet serves a recComet on loopback until the test ends.
func startRecComet(t *testing.T) (*recComet, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &recComet{}
	gs := grpc.NewServer()
	cometpb.RegisterCometServer(gs, rc)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return rc, ln.Addr().String()
}

// rig is kfake and a job delivering its topic to comets given by address
// (no logic, no real comet): the tests publish PushMsgs themselves.
type rig struct {
	t     *testing.T
	kafka *kgo.Client
	reg   *prometheus.Registry
}

// startRig starts kfake and a job whose comets are comets (server id ->
// address), edit changing its config, and waits until it consumes.
func startRig(t *testing.T, comets map[string]string, edit func(*Config)) *rig {
	t.Helper()
	kc, topic := testkit.Kafka(t, 4)
	cfg := Default()
	cfg.Host = "job-test"
	cfg.Kafka.Brokers = kc.ListenAddrs()
	cfg.Kafka.Topic = topic
	cfg.Kafka.Group = "job-test-" + testkit.RandomHex(4)
	cfg.Kafka.SessionTimeout = conf.Duration(6 * time.Second) // kfake's minimum
	cfg.Kafka.CommitInterval = conf.Duration(100 * time.Millisecond)
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Comets = comets
	cfg.RPC.Secrets = []string{"job-test-rpc-secret-" + testkit.RandomHex(16)}
	cfg.Logic.Enabled = false // no logic here, unless a test serves one
	if edit != nil {
		edit(&cfg)
	}
	reg := prometheus.NewRegistry()
	j, err := New(cfg, Deps{Logger: testkit.Logger(t), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Start(); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	t.Cleanup(func() { shutdownJob(t, j) })
	testkit.WaitFor(t, 20*time.Second, j.Ready)
	return &rig{t: t, kafka: cl, reg: reg}
}

func shutdownJob(t *testing.T, j *Job) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := j.Shutdown(ctx); err != nil {
		t.Errorf("job shutdown: %v", err)
	}
}

// produce publishes pms in one batch, keyed as logic keys them (the server
// of a PUSH, the room of a ROOM), so each key's messages keep their order.
func (r *rig) produce(pms ...*logicpb.PushMsg) {
	r.t.Helper()
	recs := make([]*kgo.Record, 0, len(pms))
	for _, pm := range pms {
		v, err := proto.Marshal(pm)
		if err != nil {
			r.t.Fatal(err)
		}
		key := pm.GetServer()
		if pm.GetType() == logicpb.PushMsg_ROOM {
			key = pm.GetRoom()
		}
		recs = append(recs, &kgo.Record{Key: []byte(key), Value: v})
	}
	if err := r.kafka.ProduceSync(r.t.Context(), recs...).FirstErr(); err != nil {
		r.t.Fatal(err)
	}
}

// metric is sumMetric of the rig's job.
func (r *rig) metric(name string) float64 {
	r.t.Helper()
	return sumMetric(r.t, r.reg, name)
}

// waitFinished waits until the job finished n messages.
func (r *rig) waitFinished(n int) {
	r.t.Helper()
	testkit.WaitFor(r.t, 20*time.Second, func() error {
		if got := r.metric("goim_job_finished_total"); got != float64(n) {
			return fmt.Errorf("finished_total = %v, want %d", got, n)
		}
		return nil
	})
}

// innerBodies returns the bodies of the frames in an op-9 carrier.
func innerBodies(t *testing.T, p *protocol.Proto) []string {
	t.Helper()
	if p.GetOp() != protocol.OpRaw {
		t.Fatalf("proto op %d, want %d (a carrier)", p.GetOp(), protocol.OpRaw)
	}
	var out []string
	for b := p.GetBody(); len(b) > 0; {
		var f protocol.Proto
		n, err := f.Decode(b, protocol.MaxPackLen)
		if err != nil {
			t.Fatalf("carrier: %v", err)
		}
		out = append(out, string(f.GetBody()))
		b = b[n:]
	}
	return out
}

// msgID is a push id made of n.
func msgID(n int) string { return fmt.Sprintf("%032x", n) }

func pos(stream int32, epoch, offset uint64) *protocol.Position {
	return &protocol.Position{Stream: stream, Epoch: epoch, Offset: offset}
}

// samePos compares positions by value.
func samePos(a, b *protocol.Position) bool { return proto.Equal(a, b) }

// TestPushIDsAndPositions: a PUSH's msg id reaches the comet in every call
// of the push, and each key's position stays with its key when the keys
// are split among the comet's workers; a PUSH without positions goes
// without any.
func TestPushIDsAndPositions(t *testing.T) {
	rc, addr := startRecComet(t)
	r := startRig(t, map[string]string{"comet-r": addr}, func(c *Config) { c.Comet.Shards = 8 })
	const n = 40
	keys := make([]string, n)
	want := make(map[string]*protocol.Position, n)
	var ps []*protocol.Position
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
		p := pos(protocol.StreamKey, 0xfeed, uint64(100+i))
		switch i % 3 {
		case 1:
			p = pos(protocol.StreamUser, 0xbeef, uint64(7+i))
		case 2:
			p = pos(protocol.StreamNone, 0, 0) // a target that keeps no stream
		}
		want[keys[i]] = p
		ps = append(ps, p)
	}
	r.produce(
		&logicpb.PushMsg{Type: logicpb.PushMsg_PUSH, Operation: 1000, Server: "comet-r", Keys: keys, Msg: []byte("with"), MsgId: msgID(1), Positions: ps},
		&logicpb.PushMsg{Type: logicpb.PushMsg_PUSH, Operation: 1000, Server: "comet-r", Keys: keys, Msg: []byte("without"), MsgId: msgID(2)},
	)
	r.waitFinished(2)
	got := map[string]int{} // keys per body
	calls := map[string]int{}
	for _, req := range rc.pushes() {
		body := innerBodies(t, req.GetProto())
		if len(body) != 1 {
			t.Fatalf("push carrier holds %q, want one frame", body)
		}
		got[body[0]] += len(req.GetKeys())
		calls[body[0]]++
		switch body[0] {
		case "with":
			if req.GetMsgId() != msgID(1) {
				t.Errorf("msg_id %q, want %q", req.GetMsgId(), msgID(1))
			}
			if len(req.GetPositions()) != len(req.GetKeys()) {
				t.Fatalf("%d positions for %d keys", len(req.GetPositions()), len(req.GetKeys()))
			}
			for i, k := range req.GetKeys() {
				if !samePos(req.GetPositions()[i], want[k]) {
					t.Errorf("key %s has position %v, want %v", k, req.GetPositions()[i], want[k])
				}
			}
		case "without":
			if req.GetMsgId() != msgID(2) {
				t.Errorf("msg_id %q, want %q", req.GetMsgId(), msgID(2))
			}
			if len(req.GetPositions()) != 0 {
				t.Errorf("a push without positions reached the comet with %d", len(req.GetPositions()))
			}
		default:
			t.Errorf("unexpected push %q", body[0])
		}
	}
	if got["with"] != n || got["without"] != n {
		t.Fatalf("keys delivered per push: %v, want %d each", got, n)
	}
	if calls["with"] < 2 {
		t.Fatalf("%d keys went in %d call(s) over 8 workers: the split was not tested", n, calls["with"])
	}
	t.Logf("%d keys split into %d calls", n, calls["with"])
	if v := r.metric("goim_job_invalid_total"); v != 0 {
		t.Errorf("invalid_total = %v", v)
	}
}

// TestBadIDsAndPositions: positions that do not fit the message's keys or
// type are dropped (the message goes without them) and counted invalid
// (bad_positions); so is an id that is not 32 hex digits (bad_msg_id).
func TestBadIDsAndPositions(t *testing.T) {
	ok := pos(protocol.StreamKey, 9, 1)
	tests := []struct {
		name   string
		pm     *logicpb.PushMsg
		reason string // the invalid_total reason counted, "" for none
	}{
		{name: "fewer positions than keys", reason: "bad_positions",
			pm: &logicpb.PushMsg{Keys: []string{"a", "b", "c"}, Positions: []*protocol.Position{ok, ok}}},
		{name: "more positions than keys", reason: "bad_positions",
			pm: &logicpb.PushMsg{Keys: []string{"a"}, Positions: []*protocol.Position{ok, ok}}},
		{name: "room stream in a push", reason: "bad_positions",
			pm: &logicpb.PushMsg{Keys: []string{"a", "b"}, Positions: []*protocol.Position{ok, pos(protocol.StreamRoom, 9, 1)}}},
		{name: "unknown stream", reason: "bad_positions",
			pm: &logicpb.PushMsg{Keys: []string{"a"}, Positions: []*protocol.Position{pos(4, 9, 1)}}},
		{name: "stream beyond the shift range", reason: "bad_positions",
			pm: &logicpb.PushMsg{Keys: []string{"a"}, Positions: []*protocol.Position{pos(1<<20+1, 9, 1)}}},
		{name: "negative stream", reason: "bad_positions",
			pm: &logicpb.PushMsg{Keys: []string{"a"}, Positions: []*protocol.Position{pos(-1, 9, 1)}}},
		{name: "epoch 0", reason: "bad_positions",
			pm: &logicpb.PushMsg{Keys: []string{"a"}, Positions: []*protocol.Position{pos(protocol.StreamUser, 0, 1)}}},
		{name: "offset 0", reason: "bad_positions",
			pm: &logicpb.PushMsg{Keys: []string{"a"}, Positions: []*protocol.Position{pos(protocol.StreamUser, 9, 0)}}},
		{name: "no stream with an offset", reason: "bad_positions",
			pm: &logicpb.PushMsg{Keys: []string{"a"}, Positions: []*protocol.Position{pos(protocol.StreamNone, 0, 3)}}},
		{name: "short id", reason: "bad_msg_id",
			pm: &logicpb.PushMsg{Keys: []string{"a"}, MsgId: "abc"}},
		{name: "id not hex", reason: "bad_msg_id",
			pm: &logicpb.PushMsg{Keys: []string{"a"}, MsgId: "zz" + msgID(0)[2:]}},
		{name: "id too long", reason: "bad_msg_id",
			pm: &logicpb.PushMsg{Keys: []string{"a"}, MsgId: msgID(0) + "0"}},
		{name: "good", reason: "",
			pm: &logicpb.PushMsg{Keys: []string{"a"}, MsgId: msgID(5), Positions: []*protocol.Position{pos(protocol.StreamKey, 9, 2)}}},
	}
	rc, addr := startRecComet(t)
	r := startRig(t, map[string]string{"comet-r": addr}, func(c *Config) { c.Comet.Shards = 1 })
	for i, tc := range tests {
		tc.pm.Type, tc.pm.Operation, tc.pm.Server, tc.pm.Msg = logicpb.PushMsg_PUSH, 1000, "comet-r", []byte(strconv.Itoa(i))
		r.produce(tc.pm) // one at a time: the counter tells which case counted
		r.waitFinished(i + 1)
		var req *cometpb.PushMsgReq
		for _, q := range rc.pushes() {
			if b := innerBodies(t, q.GetProto()); b[0] == strconv.Itoa(i) {
				req = q
			}
		}
		t.Run(tc.name, func(t *testing.T) {
			if req == nil {
				t.Fatal("not delivered")
			}
			if !slices.Equal(req.GetKeys(), tc.pm.GetKeys()) {
				t.Errorf("keys %q, want %q", req.GetKeys(), tc.pm.GetKeys())
			}
			switch tc.reason {
			case "bad_positions":
				if len(req.GetPositions()) != 0 {
					t.Errorf("sent %d positions, want none", len(req.GetPositions()))
				}
			case "bad_msg_id":
				if req.GetMsgId() != "" {
					t.Errorf("sent msg_id %q, want none", req.GetMsgId())
				}
			default:
				if req.GetMsgId() != tc.pm.GetMsgId() || len(req.GetPositions()) != 1 || !samePos(req.GetPositions()[0], tc.pm.GetPositions()[0]) {
					t.Errorf("sent msg_id %q positions %v, want %q %v", req.GetMsgId(), req.GetPositions(), tc.pm.GetMsgId(), tc.pm.GetPositions())
				}
			}
		})
	}
	if got, want := invalidByReason(t, r.reg), map[string]float64{"bad_positions": 9, "bad_msg_id": 3}; !maps.Equal(got, want) {
		t.Errorf("invalid_total by reason = %v, want %v", got, want)
	}
}

// invalidByReason returns goim_job_invalid_total's series by reason.
func invalidByReason(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	return byLabel(t, reg, "goim_job_invalid_total", "reason")
}

// byLabel returns the counter name's series in reg by the value of label.
func byLabel(t *testing.T, reg *prometheus.Registry, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestBroadcastID: a broadcast carries its msg id to every comet; a
// broadcast with positions (it is in no stream) goes without them,
// counted invalid.
func TestBroadcastID(t *testing.T) {
	rc1, addr1 := startRecComet(t)
	rc2, addr2 := startRecComet(t)
	r := startRig(t, map[string]string{"comet-1": addr1, "comet-2": addr2}, nil)
	r.produce(
		&logicpb.PushMsg{Type: logicpb.PushMsg_BROADCAST, Operation: 1000, Msg: []byte("b1"), MsgId: msgID(11)},
		&logicpb.PushMsg{Type: logicpb.PushMsg_BROADCAST, Operation: 1000, Msg: []byte("b2"), MsgId: msgID(12),
			Positions: []*protocol.Position{pos(protocol.StreamUser, 1, 1)}},
	)
	r.waitFinished(2)
	for i, rc := range []*recComet{rc1, rc2} {
		got := map[string]string{}
		for _, req := range rc.broadcasts() {
			got[innerBodies(t, req.GetProto())[0]] = req.GetMsgId()
		}
		if want := map[string]string{"b1": msgID(11), "b2": msgID(12)}; len(got) != 2 || got["b1"] != want["b1"] || got["b2"] != want["b2"] {
			t.Errorf("comet-%d got ids %v, want %v", i+1, got, want)
		}
	}
	if got := invalidByReason(t, r.reg); got["bad_positions"] != 1 {
		t.Errorf("invalid_total by reason = %v, want bad_positions 1", got)
	}
}

// roomMsg is what a test expects a room frame to arrive with.
type roomMsg struct {
	body string
	id   string
	pos  *protocol.Position // nil: none
}

// roomFrames returns the frames of the room's batches in the order they
// arrived, each with the id and position its batch gave it, checking that
// the batch's msg_ids and positions are empty or aligned with its frames.
func roomFrames(t *testing.T, rc *recComet, room string) (out []roomMsg, batches int) {
	t.Helper()
	for _, req := range rc.rooms() {
		if req.GetRoomID() != room {
			continue
		}
		batches++
		bodies := innerBodies(t, req.GetProto())
		ids, ps := req.GetMsgIds(), req.GetPositions()
		if len(ids) != 0 && len(ids) != len(bodies) || len(ps) != 0 && len(ps) != len(bodies) {
			t.Fatalf("room batch of %d frames with %d msg_ids and %d positions", len(bodies), len(ids), len(ps))
		}
		for i, b := range bodies {
			m := roomMsg{body: b}
			if len(ids) > 0 {
				m.id = ids[i]
			}
			if len(ps) > 0 {
				m.pos = ps[i]
			}
			out = append(out, m)
		}
	}
	return out, batches
}

// TestRoomIDsAndPositions: the msg ids and positions of a room's messages
// arrive aligned with the frames of their batches, in order, over several
// batches.
func TestRoomIDsAndPositions(t *testing.T) {
	rc, addr := startRecComet(t)
	r := startRig(t, map[string]string{"comet-r": addr}, func(c *Config) {
		c.Room.MaxFrames = 4
		c.Room.Linger = 0
	})
	const n = 30
	var pms []*logicpb.PushMsg
	var want []roomMsg
	for i := range n {
		m := roomMsg{body: strconv.Itoa(i), id: msgID(1000 + i), pos: pos(protocol.StreamRoom, 0xabc, uint64(i+1))}
		want = append(want, m)
		pms = append(pms, &logicpb.PushMsg{Type: logicpb.PushMsg_ROOM, Operation: 1000, Room: "live://rel", Msg: []byte(m.body),
			MsgId: m.id, Positions: []*protocol.Position{m.pos}})
	}
	r.produce(pms...)
	r.waitFinished(n)
	got, batches := roomFrames(t, rc, "live://rel")
	if len(got) != n {
		t.Fatalf("%d frames arrived, want %d", len(got), n)
	}
	for i := range got {
		if got[i].body != want[i].body || got[i].id != want[i].id || !samePos(got[i].pos, want[i].pos) {
			t.Fatalf("frame %d is %v, want %v", i, got[i], want[i])
		}
	}
	if batches < n/4 {
		t.Fatalf("%d messages in %d batches with max_frames 4", n, batches)
	}
}

// TestRoomMixedBatch: in a batch where some messages have an id or a
// position, the others get "" and a zero position, aligned; a batch
// where none has either sends neither.
func TestRoomMixedBatch(t *testing.T) {
	rc, addr := startRecComet(t)
	// With a linger of 1s, the first push goes alone and the ones produced
	// right after it wait for the linger together (see TestRoomLinger).
	r := startRig(t, map[string]string{"comet-r": addr}, func(c *Config) { c.Room.Linger = conf.Duration(time.Second) })
	room := func(body, id string, ps ...*protocol.Position) *logicpb.PushMsg {
		return &logicpb.PushMsg{Type: logicpb.PushMsg_ROOM, Operation: 1000, Room: "live://mix", Msg: []byte(body), MsgId: id, Positions: ps}
	}
	r.produce(room("0", ""))
	r.waitFinished(1)
	p2, p4 := pos(protocol.StreamRoom, 5, 2), pos(protocol.StreamRoom, 5, 4)
	zero := &protocol.Position{}
	r.produce(room("1", ""), room("2", msgID(2)), room("3", msgID(3), p2), room("4", ""), room("5", "", p4),
		room("bad", msgID(6), pos(protocol.StreamUser, 5, 5)), // a user stream in a room: dropped, counted
		room("two", msgID(7), p2, p4))                         // a room message has one position at most: dropped, counted
	r.waitFinished(8)
	got, batches := roomFrames(t, rc, "live://mix")
	want := []roomMsg{{body: "0"}, {body: "1", pos: zero}, {body: "2", id: msgID(2), pos: zero}, {body: "3", id: msgID(3), pos: p2},
		{body: "4", pos: zero}, {body: "5", pos: p4}, {body: "bad", id: msgID(6), pos: zero}, {body: "two", id: msgID(7), pos: zero}}
	if batches != 2 || len(got) != len(want) {
		t.Fatalf("got %d frames in %d batches, want %d in 2: %v", len(got), batches, len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.body != w.body || g.id != w.id || (g.pos == nil) != (w.pos == nil) || w.pos != nil && !samePos(g.pos, w.pos) {
			t.Errorf("frame %d is %v, want %v", i, g, w)
		}
	}
	if first := rc.rooms()[0]; first.MsgIds != nil || first.Positions != nil {
		t.Errorf("a batch without ids or positions sent %q and %v", first.MsgIds, first.Positions)
	}
	if got := invalidByReason(t, r.reg); got["bad_positions"] != 2 {
		t.Errorf("invalid_total by reason = %v, want bad_positions 2", got)
	}
}

// TestDeferred: pushes to a comet that cannot be reached end after the
// retries; a call whose every target has the push in a stream counts as
// deferred, any other as lost.
func TestDeferred(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close() // nothing listens there: every attempt is refused
	r := startRig(t, map[string]string{"comet-gone": gone}, func(c *Config) {
		c.Comet.Shards = 1 // one call per push
		c.Comet.CallTimeout = conf.Duration(200 * time.Millisecond)
		c.Comet.RetryBase = conf.Duration(10 * time.Millisecond)
		c.Comet.RetryMax = conf.Duration(50 * time.Millisecond)
		c.Comet.RetryFor = conf.Duration(300 * time.Millisecond)
	})
	push := func(ps ...*protocol.Position) *logicpb.PushMsg {
		return &logicpb.PushMsg{Type: logicpb.PushMsg_PUSH, Operation: 1000, Server: "comet-gone", Keys: []string{"a", "b"},
			Msg: []byte("p"), MsgId: msgID(1), Positions: ps}
	}
	room := func(id string, ps ...*protocol.Position) *logicpb.PushMsg {
		return &logicpb.PushMsg{Type: logicpb.PushMsg_ROOM, Operation: 1000, Room: id, Msg: []byte("r"), MsgId: msgID(2), Positions: ps}
	}
	r.produce(
		push(pos(protocol.StreamUser, 1, 1), pos(protocol.StreamKey, 2, 1)),  // deferred
		push(pos(protocol.StreamUser, 1, 2), pos(protocol.StreamNone, 0, 0)), // lost: b keeps no stream
		push(), // lost
		room("live://rec", pos(protocol.StreamRoom, 3, 1)),   // deferred
		room("live://plain", pos(protocol.StreamNone, 0, 0)), // lost
		room("live://bare"), // lost
		&logicpb.PushMsg{Type: logicpb.PushMsg_BROADCAST, Operation: 1000, Msg: []byte("b"), MsgId: msgID(3)}, // lost
	)
	r.waitFinished(7)
	if got, want := byLabel(t, r.reg, "goim_job_deferred_total", "reason"), map[string]float64{"retries_exhausted": 2}; !maps.Equal(got, want) {
		t.Errorf("deferred_total = %v, want %v", got, want)
	}
	if got, want := byLabel(t, r.reg, "goim_job_lost_total", "reason"), map[string]float64{"retries_exhausted": 5}; !maps.Equal(got, want) {
		t.Errorf("lost_total = %v, want %v", got, want)
	}
}
