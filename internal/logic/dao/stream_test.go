package dao_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mna/redisc"

	"github.com/goim/goim/internal/logic/dao"
)

// testRetention is a stream retention for tests.
var testRetention = dao.Retention{MaxLen: 1000, TTL: time.Hour}

func userRef(mid int64) dao.StreamRef   { return dao.StreamRef{Stream: dao.StreamUser, Mid: mid} }
func keyRef(key string) dao.StreamRef   { return dao.StreamRef{Stream: dao.StreamKey, Key: key} }
func roomRef(room string) dao.StreamRef { return dao.StreamRef{Stream: dao.StreamRoom, Room: room} }

// open opens refs with testRetention and returns their states.
func open(t *testing.T, r *dao.Redis, refs ...dao.StreamRef) []dao.StreamPos {
	t.Helper()
	got, err := r.OpenStreams(context.Background(), refs, testRetention, testRetention)
	if err != nil {
		t.Fatalf("OpenStreams: %v", err)
	}
	return got
}

func msg(i int) dao.StreamMsg {
	return dao.StreamMsg{ID: "0123456789abcdef0123456789abcd" + strconv.Itoa(10+i%90), Op: 1000 + int32(i), Body: []byte("body " + strconv.Itoa(i))}
}

// appendMid appends msg(i) to mid's stream through KeysByMidsAppend and
// returns its position (Epoch 0: not appended).
func appendMid(t *testing.T, r *dao.Redis, mid int64, i int, ret dao.Retention) dao.StreamPos {
	t.Helper()
	_, appended, _, err := r.KeysByMidsAppend(context.Background(), []int64{mid}, msg(i), ret)
	if err != nil {
		t.Fatalf("KeysByMidsAppend: %v", err)
	}
	if len(appended) == 0 {
		return dao.StreamPos{}
	}
	got, err := r.ReadStream(context.Background(), userRef(mid), 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return dao.StreamPos{Epoch: got.Epoch, Offset: got.Top}
}

func read(t *testing.T, r *dao.Redis, s dao.StreamRef, epoch, after uint64, limit int) dao.StreamRead {
	t.Helper()
	got, err := r.ReadStream(context.Background(), s, epoch, after, limit)
	if err != nil {
		t.Fatalf("ReadStream: %v", err)
	}
	return got
}

func offsets(entries []dao.StreamEntry) []uint64 {
	out := []uint64{}
	for _, e := range entries {
		out = append(out, e.Offset)
	}
	return out
}

// TestOpenStream: an open creates the meta with a random epoch and top 0,
// and the stream's TTL; another open keeps the epoch and refreshes the
// TTL.
func TestOpenStream(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	got := open(t, r, userRef(7), keyRef("k7"), roomRef("live://7"))
	for i, p := range got {
		if p.Epoch == 0 || p.Offset != 0 {
			t.Fatalf("open %d = %+v, want a new epoch and top 0", i, p)
		}
	}
	if got[0].Epoch == got[1].Epoch {
		t.Errorf("two streams got the same epoch %x", got[0].Epoch)
	}
	if m := raw.hgetall("umeta_7"); m["epoch"] != strconv.FormatUint(got[0].Epoch, 10) || m["top"] != "0" {
		t.Errorf("umeta_7 = %v", m)
	}
	raw.checkTTL("umeta_7", time.Hour)
	raw.checkTTL("kmeta_k7", time.Hour)
	raw.checkTTL("rmeta_live://7", time.Hour)

	raw.must("PEXPIRE", raw.key("umeta_7"), 5000)
	again := open(t, r, userRef(7))
	if again[0] != got[0] {
		t.Fatalf("second open = %+v, want %+v (same epoch)", again[0], got[0])
	}
	if ttl := raw.pttl("umeta_7"); ttl <= 5*time.Second {
		t.Errorf("PTTL umeta_7 after a second open = %v, want it refreshed to about 1h", ttl)
	}
	// An open after appends keeps them.
	appendMid(t, r, 7, 1, testRetention)
	if p := open(t, r, userRef(7))[0]; p.Epoch != got[0].Epoch || p.Offset != 1 {
		t.Fatalf("open after one append = %+v, want epoch %x top 1", p, got[0].Epoch)
	}
	raw.checkTTL("ustream_7", time.Hour)
}

// TestStreamAppendWhenOpen: pushes by mid or key append only to opened
// streams; the routing answer is that of KeysByMids / ServersByKeys, each
// key with its target's position.
func TestStreamAppendWhenOpen(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	ctx := context.Background()
	addSessions(t, r, []session{
		{mid: 1, key: "a", server: "s1"},
		{mid: 1, key: "b", server: "s2"},
		{mid: 2, key: "c", server: "s1"},
	})
	servers, appended, _, err := r.KeysByMidsAppend(ctx, []int64{1, 2}, msg(1), testRetention)
	if err != nil {
		t.Fatal(err)
	}
	if len(appended) != 0 || raw.exists("umeta_1") || raw.exists("ustream_1") || raw.exists("umeta_2") {
		t.Fatalf("appended %v to streams nobody opened", appended)
	}
	wantKeys := map[string][]string{"s1": {"a", "c"}, "s2": {"b"}}
	if got := routedKeys(servers); !reflect.DeepEqual(got, wantKeys) {
		t.Fatalf("KeysByMidsAppend = %v, want %v", got, wantKeys)
	}

	st := open(t, r, userRef(1))[0]
	for i := 1; i <= 2; i++ {
		servers, appended, _, err = r.KeysByMidsAppend(ctx, []int64{1, 2, 3}, msg(i), testRetention)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(appended, []int64{1}) {
			t.Fatalf("appended = %v, want [1]", appended)
		}
		want := dao.StreamPos{Epoch: st.Epoch, Offset: uint64(i)}
		for server, rs := range servers {
			for _, k := range rs {
				wantPos := want
				if k.Key == "c" {
					wantPos = dao.StreamPos{}
				}
				if k.Pos != wantPos {
					t.Errorf("push %d: %s on %s at %+v, want %+v", i, k.Key, server, k.Pos, wantPos)
				}
			}
		}
		if got := routedKeys(servers); !reflect.DeepEqual(got, wantKeys) {
			t.Fatalf("KeysByMidsAppend = %v, want %v", got, wantKeys)
		}
	}
	if raw.exists("umeta_2") || raw.exists("umeta_3") {
		t.Error("a push created the stream of a member that never opened it")
	}
	rd := read(t, r, userRef(1), st.Epoch, 0, 10)
	if !rd.Recovered || rd.Top != 2 || !reflect.DeepEqual(rd.Entries, []dao.StreamEntry{
		{Offset: 1, ID: msg(1).ID, Op: msg(1).Op, Body: msg(1).Body},
		{Offset: 2, ID: msg(2).ID, Op: msg(2).Op, Body: msg(2).Body},
	}) {
		t.Fatalf("read = %+v", rd)
	}

	// By key: the same, the keys of a server in keys' order; an offline
	// key's open stream still gets the push.
	_, kapp, _, err := r.ServersByKeysAppend(ctx, []string{"c", "a", "gone"}, msg(3), testRetention)
	if err != nil || len(kapp) != 0 {
		t.Fatalf("ServersByKeysAppend = %v, %v", kapp, err)
	}
	if raw.exists("kmeta_c") || raw.exists("kmeta_gone") {
		t.Fatal("a push by key created a key stream")
	}
	ka := open(t, r, keyRef("a"), keyRef("gone"))
	servers, kapp, _, err = r.ServersByKeysAppend(ctx, []string{"c", "a", "gone", "a", ""}, msg(4), testRetention)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(kapp, []string{"a", "gone"}) {
		t.Fatalf("appended = %v, want [a gone]", kapp)
	}
	want := map[string][]dao.Routed{"s1": {{Key: "c"}, {Key: "a", Pos: dao.StreamPos{Epoch: ka[0].Epoch, Offset: 1}}}}
	if !reflect.DeepEqual(servers, want) {
		t.Fatalf("ServersByKeysAppend = %+v, want %+v", servers, want)
	}
	if rd := read(t, r, keyRef("gone"), ka[1].Epoch, 0, 10); !rd.Recovered || !reflect.DeepEqual(offsets(rd.Entries), []uint64{1}) {
		t.Fatalf("read of an offline key's stream = %+v", rd)
	}
}

// routedKeys is servers' keys, sorted, by server.
func routedKeys(servers map[string][]dao.Routed) map[string][]string {
	out := map[string][]string{}
	for s, rs := range servers {
		for _, k := range rs {
			out[s] = append(out[s], k.Key)
		}
		sort.Strings(out[s])
	}
	return out
}

// TestAppendRoom: a room push creates the room stream and appends.
func TestAppendRoom(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	ctx := context.Background()
	room := "live://1000"
	p1, err := r.AppendRoom(ctx, room, msg(1), dao.Retention{MaxLen: 10, TTL: time.Minute})
	if err != nil || p1.Epoch == 0 || p1.Offset != 1 {
		t.Fatalf("AppendRoom = %+v, %v", p1, err)
	}
	p2, err := r.AppendRoom(ctx, room, msg(2), dao.Retention{MaxLen: 10, TTL: time.Minute})
	if err != nil || p2 != (dao.StreamPos{Epoch: p1.Epoch, Offset: 2}) {
		t.Fatalf("second AppendRoom = %+v, %v", p2, err)
	}
	raw.checkTTL("rmeta_"+room, time.Minute)
	raw.checkTTL("rstream_"+room, time.Minute)
	if _, err := r.AppendRoom(ctx, "", msg(1), testRetention); !errors.Is(err, dao.ErrInvalidArgument) {
		t.Errorf("AppendRoom of no room = %v, want ErrInvalidArgument", err)
	}
}

// TestStreamConcurrentAppends: offsets 1..n without gaps or repeats under
// concurrent appends, and the stream holds them in order.
func TestStreamConcurrentAppends(t *testing.T) {
	r, _ := newTestRedis(t, nil)
	ctx := context.Background()
	addSessions(t, r, []session{{mid: 9, key: "k9", server: "s1"}})
	st := open(t, r, userRef(9), keyRef("k9"))
	const workers, each = 8, 25
	var (
		mu   sync.Mutex
		user []uint64
		key  []uint64
		room []uint64
		wg   sync.WaitGroup
	)
	errs := make(chan error, workers*each*3)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				m := msg(w*each + i)
				servers, _, _, err := r.KeysByMidsAppend(ctx, []int64{9}, m, testRetention)
				if err != nil {
					errs <- err
					return
				}
				ks, _, _, err := r.ServersByKeysAppend(ctx, []string{"k9"}, m, testRetention)
				if err != nil {
					errs <- err
					return
				}
				rp, err := r.AppendRoom(ctx, "chat://9", m, testRetention)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				user = append(user, servers["s1"][0].Pos.Offset)
				key = append(key, ks["s1"][0].Pos.Offset)
				room = append(room, rp.Offset)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := make([]uint64, workers*each)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	for name, got := range map[string][]uint64{"user": user, "key": key, "room": room} {
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s offsets = %v, want 1..%d once each", name, got, len(want))
		}
	}
	rd := read(t, r, userRef(9), st[0].Epoch, 0, 1000)
	if !rd.Recovered || !slices.Equal(offsets(rd.Entries), want) {
		t.Fatalf("user stream holds %v (recovered %v), want 1..%d", offsets(rd.Entries), rd.Recovered, len(want))
	}
}

// TestStreamTrim: MAXLEN keeps the newest; a read from before the oldest
// kept is not recovered and starts at the oldest.
func TestStreamTrim(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	ret := dao.Retention{MaxLen: 3, TTL: time.Hour}
	st := open(t, r, userRef(4))[0]
	for i := 1; i <= 5; i++ {
		if p := appendMid(t, r, 4, i, ret); p.Offset != uint64(i) {
			t.Fatalf("append %d at %+v", i, p)
		}
	}
	if n := raw.must("XLEN", raw.key("ustream_4")); n != int64(3) {
		t.Fatalf("XLEN = %v, want 3", n)
	}
	tests := []struct {
		name      string
		epoch     uint64
		after     uint64
		limit     int
		recovered bool
		offsets   []uint64
	}{
		{name: "from the start", epoch: st.Epoch, after: 0, limit: 10, recovered: false, offsets: []uint64{3, 4, 5}},
		{name: "after a trimmed entry", epoch: st.Epoch, after: 1, limit: 10, recovered: false, offsets: []uint64{3, 4, 5}},
		{name: "just before the oldest", epoch: st.Epoch, after: 2, limit: 10, recovered: true, offsets: []uint64{3, 4, 5}},
		{name: "inside", epoch: st.Epoch, after: 4, limit: 10, recovered: true, offsets: []uint64{5}},
		{name: "at the top", epoch: st.Epoch, after: 5, limit: 10, recovered: true, offsets: []uint64{}},
		{name: "beyond the top", epoch: st.Epoch, after: 9, limit: 10, recovered: false, offsets: []uint64{3, 4, 5}},
		{name: "limit caps", epoch: st.Epoch, after: 2, limit: 2, recovered: true, offsets: []uint64{3, 4}},
		{name: "state only", epoch: st.Epoch, after: 2, limit: 0, recovered: true, offsets: []uint64{}},
		{name: "state only, trimmed", epoch: st.Epoch, after: 1, limit: 0, recovered: false, offsets: []uint64{}},
		{name: "no epoch", epoch: 0, after: 4, limit: 10, recovered: false, offsets: []uint64{3, 4, 5}},
		{name: "another epoch", epoch: st.Epoch + 1, after: 4, limit: 1, recovered: false, offsets: []uint64{3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := read(t, r, userRef(4), tt.epoch, tt.after, tt.limit)
			if rd.Epoch != st.Epoch || rd.Top != 5 || rd.Recovered != tt.recovered || !slices.Equal(offsets(rd.Entries), tt.offsets) {
				t.Fatalf("read = epoch %x top %d recovered %v offsets %v, want epoch %x top 5 recovered %v offsets %v",
					rd.Epoch, rd.Top, rd.Recovered, offsets(rd.Entries), st.Epoch, tt.recovered, tt.offsets)
			}
		})
	}
}

// TestStreamEpochChange: a stream whose meta is gone (expired, deleted)
// reopens under a new epoch, empty; a reader of the old epoch is not
// recovered.
func TestStreamEpochChange(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	old := open(t, r, keyRef("e1"))[0]
	if _, _, _, err := r.ServersByKeysAppend(context.Background(), []string{"e1"}, msg(1), testRetention); err != nil {
		t.Fatal(err)
	}
	raw.must("DEL", raw.key("kmeta_e1"))
	if rd := read(t, r, keyRef("e1"), old.Epoch, 0, 10); rd.Epoch != 0 || rd.Recovered || len(rd.Entries) != 0 {
		t.Fatalf("read without meta = %+v, want no stream", rd)
	}
	now := open(t, r, keyRef("e1"))[0]
	if now.Epoch == old.Epoch || now.Offset != 0 {
		t.Fatalf("reopen = %+v, want a new epoch (old %x) and top 0", now, old.Epoch)
	}
	if raw.exists("kstream_e1") {
		t.Fatal("the old epoch's entries survived the reopen")
	}
	rd := read(t, r, keyRef("e1"), old.Epoch, 1, 10)
	if rd.Epoch != now.Epoch || rd.Recovered || len(rd.Entries) != 0 {
		t.Fatalf("read of the old epoch = %+v, want epoch %x, not recovered, no entries", rd, now.Epoch)
	}
	if _, _, _, err := r.ServersByKeysAppend(context.Background(), []string{"e1"}, msg(2), testRetention); err != nil {
		t.Fatal(err)
	}
	if rd := read(t, r, keyRef("e1"), now.Epoch, 0, 10); !rd.Recovered || !slices.Equal(offsets(rd.Entries), []uint64{1}) {
		t.Fatalf("read of the new epoch = %+v", rd)
	}
}

// TestStreamOutOfStep: a stream whose entries are ahead of its meta
// (written by hand) starts a new epoch at the next append rather than
// fail the push.
func TestStreamOutOfStep(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	old := open(t, r, userRef(6))[0]
	raw.must("XADD", raw.key("ustream_6"), "50-0", "i", "x", "o", "1", "b", "y")
	p := appendMid(t, r, 6, 1, testRetention)
	if p.Epoch == 0 || p.Epoch == old.Epoch || p.Offset != 1 {
		t.Fatalf("append to an out-of-step stream = %+v, want a new epoch at offset 1", p)
	}
	if rd := read(t, r, userRef(6), p.Epoch, 0, 10); !rd.Recovered || !slices.Equal(offsets(rd.Entries), []uint64{1}) {
		t.Fatalf("read = %+v", rd)
	}
}

// TestReadStreamMissing: a stream nobody opened reads as epoch 0.
func TestReadStreamMissing(t *testing.T) {
	r, _ := newTestRedis(t, nil)
	for _, s := range []dao.StreamRef{userRef(404), keyRef("nope"), roomRef("live://nope")} {
		if rd := read(t, r, s, 12, 3, 10); !reflect.DeepEqual(rd, dao.StreamRead{}) {
			t.Errorf("read of missing %+v = %+v, want the zero answer", s, rd)
		}
	}
}

// TestStreamInvalidArgument: bad references and retentions fail with
// ErrInvalidArgument, sending nothing.
func TestStreamInvalidArgument(t *testing.T) {
	r, _ := newTestRedis(t, nil)
	ctx := context.Background()
	for _, s := range []dao.StreamRef{{}, {Stream: 4, Mid: 1}, userRef(0), userRef(-1), keyRef(""), roomRef("")} {
		if _, err := r.ReadStream(ctx, s, 0, 0, 1); !errors.Is(err, dao.ErrInvalidArgument) {
			t.Errorf("ReadStream(%+v) = %v, want ErrInvalidArgument", s, err)
		}
		if _, err := r.OpenStreams(ctx, []dao.StreamRef{s}, testRetention, testRetention); !errors.Is(err, dao.ErrInvalidArgument) {
			t.Errorf("OpenStreams(%+v) = %v, want ErrInvalidArgument", s, err)
		}
	}
	if _, err := r.ReadStream(ctx, userRef(1), 0, 0, -1); !errors.Is(err, dao.ErrInvalidArgument) {
		t.Errorf("ReadStream with limit -1 = %v", err)
	}
	for _, ret := range []dao.Retention{{MaxLen: 0, TTL: time.Hour}, {MaxLen: 1, TTL: 0}} {
		if _, _, _, err := r.KeysByMidsAppend(ctx, []int64{1}, msg(1), ret); !errors.Is(err, dao.ErrInvalidArgument) {
			t.Errorf("KeysByMidsAppend with %+v = %v", ret, err)
		}
		if _, _, _, err := r.ServersByKeysAppend(ctx, []string{"a"}, msg(1), ret); !errors.Is(err, dao.ErrInvalidArgument) {
			t.Errorf("ServersByKeysAppend with %+v = %v", ret, err)
		}
		if _, err := r.AppendRoom(ctx, "live://1", msg(1), ret); !errors.Is(err, dao.ErrInvalidArgument) {
			t.Errorf("AppendRoom with %+v = %v", ret, err)
		}
		if _, err := r.OpenStreams(ctx, []dao.StreamRef{userRef(1)}, ret, testRetention); !errors.Is(err, dao.ErrInvalidArgument) {
			t.Errorf("OpenStreams with %+v = %v", ret, err)
		}
	}
}

// TestStreamWrongType: a routing key of the wrong type fails the push's
// lookup with ErrRedis and appends nothing.
func TestStreamWrongType(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	open(t, r, userRef(5))
	raw.must("SET", raw.key("mid_5"), "not a hash")
	if _, _, _, err := r.KeysByMidsAppend(context.Background(), []int64{5}, msg(1), testRetention); !errors.Is(err, dao.ErrRedis) {
		t.Fatalf("KeysByMidsAppend on a string = %v, want ErrRedis", err)
	}
	if raw.exists("ustream_5") {
		t.Fatal("appended although the lookup failed")
	}
}

// testClusterStreamTags: a user's stream keys share mid_'s slot, a key's
// share key_'s, a room's have one slot.
func testClusterStreamTags(t *testing.T) {
	r, raw := newTestRedis(t, nil)
	open(t, r, userRef(77), keyRef("kk"), roomRef("live://r"))
	for _, kk := range [][]string{
		{"mid_77", "umeta_77", "ustream_77"},
		{"key_kk", "kmeta_kk", "kstream_kk"},
		{"rmeta_live://r", "rstream_live://r"},
	} {
		slot := redisc.Slot(raw.key(kk[0]))
		for _, k := range kk[1:] {
			if s := redisc.Slot(raw.key(k)); s != slot {
				t.Errorf("%s in slot %d, %s in %d", k, s, kk[0], slot)
			}
		}
	}
	if !raw.exists("umeta_77") || !raw.exists("kmeta_kk") || !raw.exists("rmeta_live://r") {
		t.Fatal("the metas are not under the cluster key names")
	}
}
