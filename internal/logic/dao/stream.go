package dao

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Reliable delivery streams. Each stream is two keys:
//
//	<kind>meta_<id>    hash    epoch = the stream's epoch (decimal uint64,
//	                           random, never 0), top = its last offset
//	<kind>stream_<id>  stream  entry id "<offset>-0", fields i (msg id),
//	                           o (op, decimal), b (body); trimmed to the
//	                           retention's MaxLen (exact) on every append
//
// with kind u (by mid: umeta_<mid>), k (by connection key) or r (by room
// id). Both keys get the retention's TTL on every append and every open.
// Offsets run 1, 2, 3, ... without gaps within an epoch: the meta's top
// is incremented and the entry added by one script. A meta that is
// created (by an open, or a room append) gets a new random epoch, top 0,
// and the stream key is deleted; so is a stream that does not follow its
// meta (an append whose id is not above the stream's last one).
//
// In cluster mode the keys carry the hash tag of the routing key of the
// same target, so one script can read the routing and append:
// umeta_{<mid>} and ustream_{<mid>} share mid_{<mid>}'s slot,
// kmeta_{:<key>} and kstream_{:<key>} share key_{:<key>}'s; a room's
// keys have a tag of their own, rmeta_{r:<room>} and rstream_{r:<room>}.
//
// A user or key stream exists only once a reliable connection opened it
// (OpenStreams): pushes append to it only then, so targets that never
// connected reliably cost the script call and store nothing. A room
// stream is created by the first append.
const (
	userMetaPrefix   = "umeta_"
	userStreamPrefix = "ustream_"
	keyMetaPrefix    = "kmeta_"
	keyStreamPrefix  = "kstream_"
	roomMetaPrefix   = "rmeta_"
	roomStreamPrefix = "rstream_"
	clusterRoomTag   = "{r:"
)

// The streams (the values of protocol.StreamUser .. StreamRoom).
const (
	StreamUser int32 = 1
	StreamKey  int32 = 2
	StreamRoom int32 = 3
)

// Retention is what a stream keeps: at most MaxLen messages (>= 1), for
// TTL after its last append or open (>= 1ms).
type Retention struct {
	MaxLen int
	TTL    time.Duration
}

func (r Retention) check() error {
	if r.MaxLen < 1 || r.TTL < time.Millisecond {
		return fmt.Errorf("%w: stream retention %d messages, %v: want >= 1 message and >= 1ms", ErrInvalidArgument, r.MaxLen, r.TTL)
	}
	return nil
}

// StreamRef names one stream: Stream is StreamUser (by Mid > 0), StreamKey
// (by Key) or StreamRoom (by Room).
type StreamRef struct {
	Stream int32
	Mid    int64
	Key    string
	Room   string
}

func (s StreamRef) check() error {
	switch s.Stream {
	case StreamUser:
		if s.Mid > 0 {
			return nil
		}
		return fmt.Errorf("%w: user stream of mid %d", ErrInvalidArgument, s.Mid)
	case StreamKey:
		if s.Key != "" {
			return nil
		}
		return fmt.Errorf("%w: key stream of an empty key", ErrInvalidArgument)
	case StreamRoom:
		if s.Room != "" {
			return nil
		}
		return fmt.Errorf("%w: room stream of an empty room", ErrInvalidArgument)
	}
	return fmt.Errorf("%w: stream %d", ErrInvalidArgument, s.Stream)
}

// StreamPos is a place in a stream: its epoch and an offset (of a message,
// or the stream's last offset). Epoch 0 means no stream.
type StreamPos struct {
	Epoch  uint64
	Offset uint64
}

// StreamMsg is a push as streams keep it: its msg id, op and body.
type StreamMsg struct {
	ID   string
	Op   int32
	Body []byte
}

// StreamEntry is one message read from a stream.
type StreamEntry struct {
	Offset uint64
	ID     string
	Op     int32
	Body   []byte
}

// StreamRead is what ReadStream found.
type StreamRead struct {
	// Epoch and Top are the stream's epoch and last offset; Epoch 0: no
	// such stream.
	Epoch, Top uint64
	// Recovered: Epoch is the reader's and every message after its offset
	// is still held (Entries continue from it).
	Recovered bool
	Entries   []StreamEntry
}

// Routed is a connection key a push goes to, with the position of the
// push in the stream of the key's target (Epoch 0: none).
type Routed struct {
	Key string
	Pos StreamPos
	// Mid is the key's member id for a lookup by member (KeysByMidsAppend),
	// 0 for a lookup by key.
	Mid int64
}

// streamAppendLua is the append every stream script shares, as a Lua
// function: append(meta, stream, create, ARGV offset) appends ARGV[o+4]
// (msg id), ARGV[o+5] (op), ARGV[o+6] (body) to stream if meta exists, or
// creates both when create is true; ARGV[o+1] is the TTL in ms, ARGV[o+2]
// MaxLen, ARGV[o+3] the epoch of a created meta. It returns {epoch, top}
// or false (not open).
const streamAppendLua = `
local function append(meta, stream, create, o)
  local e = redis.call('HGET', meta, 'epoch')
  if not e then
    if not create then
      return false
    end
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'epoch', ARGV[o+3], 'top', 0)
    e = ARGV[o+3]
  end
  local top = redis.call('HINCRBY', meta, 'top', 1)
  local r = redis.pcall('XADD', stream, 'MAXLEN', ARGV[o+2], string.format('%d-0', top),
    'i', ARGV[o+4], 'o', ARGV[o+5], 'b', ARGV[o+6])
  if type(r) == 'table' and r.err then
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'epoch', ARGV[o+3], 'top', 1)
    e, top = ARGV[o+3], 1
    redis.call('XADD', stream, 'MAXLEN', ARGV[o+2], '1-0', 'i', ARGV[o+4], 'o', ARGV[o+5], 'b', ARGV[o+6])
  end
  redis.call('PEXPIRE', meta, ARGV[o+1])
  redis.call('PEXPIRE', stream, ARGV[o+1])
  return {e, top}
end
`

// midsAppendLua is KeysByMids' lookup of one member plus the append to
// its user stream when it is open, atomically.
//
//	KEYS[1] mid_<mid>, KEYS[2] umeta_<mid>, KEYS[3] ustream_<mid>
//	ARGV[1] TTL ms, ARGV[2] MaxLen, ARGV[3] new epoch, ARGV[4] msg id,
//	ARGV[5] op, ARGV[6] body
//
// Returns {HGETALL mid_} or {HGETALL mid_, epoch, offset}.
const midsAppendLua = streamAppendLua + `
local f = redis.call('HGETALL', KEYS[1])
local p = append(KEYS[2], KEYS[3], false, 0)
if p then
  return {f, p[1], p[2]}
end
return {f}
`

// keysAppendLua is ServersByKeys' lookup of one key plus the append to its
// key stream when it is open, atomically.
//
//	KEYS[1] key_<key>, KEYS[2] kmeta_<key>, KEYS[3] kstream_<key>
//	ARGV as midsAppendLua's
//
// Returns {server or ""} or {server or "", epoch, offset}.
const keysAppendLua = streamAppendLua + `
local s = redis.call('GET', KEYS[1]) or ''
local p = append(KEYS[2], KEYS[3], false, 0)
if p then
  return {s, p[1], p[2]}
end
return {s}
`

// roomAppendLua appends to a room stream, creating it when absent.
//
//	KEYS[1] rmeta_<room>, KEYS[2] rstream_<room>; ARGV as midsAppendLua's
//
// Returns {epoch, offset}.
const roomAppendLua = streamAppendLua + `
return append(KEYS[1], KEYS[2], true, 0)
`

// openStreamLua opens a stream: creates its meta when absent (new epoch,
// top 0, the stream key deleted) and refreshes both TTLs.
//
//	KEYS[1] meta, KEYS[2] stream; ARGV[1] TTL ms, ARGV[2] new epoch
//
// Returns {epoch, top}.
const openStreamLua = `
local e = redis.call('HGET', KEYS[1], 'epoch')
if not e then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'top', 0)
  e = ARGV[2]
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return {e, redis.call('HGET', KEYS[1], 'top') or '0'}
`

// readStreamLua reads a stream's state and entries.
//
//	KEYS[1] meta, KEYS[2] stream
//	ARGV[1] the reader's epoch (decimal), ARGV[2] its offset (decimal),
//	ARGV[3] the most entries (0: none)
//
// Returns {} (no stream) or {epoch, top, oldest entry id or "", entries}:
// the entries after ARGV[2] when the epoch is the reader's and ARGV[2] <=
// top, else from the oldest.
const readStreamLua = `
local m = redis.call('HMGET', KEYS[1], 'epoch', 'top')
if not m[1] then
  return {}
end
local top = m[2] or '0'
local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local first = ''
if #oldest > 0 then
  first = oldest[1][1]
end
local entries = {}
if ARGV[3] ~= '0' then
  local start = '-'
  if m[1] == ARGV[1] and tonumber(ARGV[2]) <= tonumber(top) then
    start = '(' .. ARGV[2] .. '-0'
  end
  entries = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', ARGV[3])
end
return {m[1], top, first, entries}
`

var (
	midsAppendScript = newLuaScript(midsAppendLua)
	keysAppendScript = newLuaScript(keysAppendLua)
	roomAppendScript = newLuaScript(roomAppendLua)
	openStreamScript = newLuaScript(openStreamLua)
	readStreamScript = newLuaScript(readStreamLua)
)

// newStreamEpoch is a random non-zero epoch.
func newStreamEpoch() uint64 {
	for {
		if e := rand.Uint64(); e != 0 {
			return e
		}
	}
}

// streamKeys are the meta and stream keys of s.
func (r *Redis) streamKeys(s StreamRef) (meta, stream string) {
	var tag, mp, sp string
	switch s.Stream {
	case StreamUser:
		tag, mp, sp = strconv.FormatInt(s.Mid, 10), userMetaPrefix, userStreamPrefix
		if r.cluster != nil {
			tag = "{" + tag + "}"
		}
	case StreamKey:
		tag, mp, sp = s.Key, keyMetaPrefix, keyStreamPrefix
		if r.cluster != nil {
			tag = clusterKeyTagOpen + tag + "}"
		}
	default:
		tag, mp, sp = s.Room, roomMetaPrefix, roomStreamPrefix
		if r.cluster != nil {
			tag = clusterRoomTag + tag + "}"
		}
	}
	return r.prefix + mp + tag, r.prefix + sp + tag
}

// appendArgs are the ARGV of the append scripts.
func appendArgs(ret Retention, msg StreamMsg) []any {
	return []any{ret.TTL.Milliseconds(), ret.MaxLen, strconv.FormatUint(newStreamEpoch(), 10), msg.ID, strconv.Itoa(int(msg.Op)), msg.Body}
}

// OpenStreams opens each of refs (a reliable connection's streams): the
// meta of a stream that has none is created with a new epoch and top 0;
// every stream's TTL is refreshed. It returns each one's epoch and last
// offset. User and key streams get ret, room streams roomRet. In single
// mode it is one pipeline, in cluster mode one per master.
func (r *Redis) OpenStreams(ctx context.Context, refs []StreamRef, ret, roomRet Retention) ([]StreamPos, error) {
	if err := ret.check(); err != nil {
		return nil, err
	}
	if err := roomRet.check(); err != nil {
		return nil, err
	}
	cmds := make([]command, len(refs))
	for i, s := range refs {
		if err := s.check(); err != nil {
			return nil, err
		}
		rt := ret
		if s.Stream == StreamRoom {
			rt = roomRet
		}
		meta, stream := r.streamKeys(s)
		cmds[i] = openStreamScript.command(meta, []string{meta, stream}, rt.TTL.Milliseconds(), strconv.FormatUint(newStreamEpoch(), 10))
	}
	fail := func(err error) ([]StreamPos, error) {
		return nil, &opError{kind: ErrRedis, op: "open streams (" + strconv.Itoa(len(refs)) + ")", err: err}
	}
	if err := r.exec(ctx, cmds); err != nil {
		return fail(err)
	}
	out := make([]StreamPos, len(refs))
	for i := range cmds {
		v, err := redis.Values(cmds[i].reply, cmds[i].err)
		if err == nil {
			out[i], err = parsePos(v)
		}
		if err != nil {
			return fail(err)
		}
	}
	return out, nil
}

// parsePos reads {epoch, offset} (each a decimal string or an integer).
func parsePos(v []any) (StreamPos, error) {
	if len(v) != 2 {
		return StreamPos{}, fmt.Errorf("stream script answered %d values, want 2", len(v))
	}
	e, err := redis.Uint64(v[0], nil)
	if err != nil {
		return StreamPos{}, fmt.Errorf("stream epoch: %w", err)
	}
	o, err := redis.Uint64(v[1], nil)
	if err != nil {
		return StreamPos{}, fmt.Errorf("stream offset: %w", err)
	}
	if e == 0 {
		return StreamPos{}, errors.New("stream epoch 0")
	}
	return StreamPos{Epoch: e, Offset: o}, nil
}

// KeysByMidsAppend is KeysByMids for a push that streams keep: for each
// member, one script reads its connections and, when its user stream is
// open, appends msg to it (with ret's MaxLen and TTL), so the append
// happens atomically with the routing lookup. Each key comes with its
// member's position in that stream (Epoch 0: the stream is not open).
// appended lists the members whose stream got msg, in mids' order, and
// offline those of them with no connection.
func (r *Redis) KeysByMidsAppend(ctx context.Context, mids []int64, msg StreamMsg, ret Retention) (servers map[string][]Routed, appended, offline []int64, err error) {
	mids = uniqueMids(mids)
	found, err := r.lookupAppend(ctx, len(mids), "HGETALL", &midsAppendScript, msg, ret, func(i int) (string, StreamRef) {
		return r.midKey(mids[i]), StreamRef{Stream: StreamUser, Mid: mids[i]}
	})
	if err != nil {
		return nil, nil, nil, &opError{kind: ErrRedis, op: "keys by mids with streams (" + strconv.Itoa(len(mids)) + " mids)", err: err}
	}
	servers = make(map[string][]Routed)
	for i, f := range found {
		fields, err := redis.StringMap(f.routing, nil)
		if err != nil {
			return nil, nil, nil, &opError{kind: ErrRedis, op: "keys by mids with streams", err: err}
		}
		routed := false
		for key, server := range fields {
			if server != "" {
				servers[server] = append(servers[server], Routed{Key: key, Pos: f.pos, Mid: mids[i]})
				routed = true
			}
		}
		if f.pos.Epoch != 0 {
			appended = append(appended, mids[i])
			if !routed {
				offline = append(offline, mids[i])
			}
		}
	}
	return servers, appended, offline, nil
}

// ServersByKeysAppend is ServersByKeys for a push that streams keep: for
// each key, one script reads its routing and, when its key stream is open,
// appends msg to it (ret's MaxLen and TTL), atomically. Each key comes
// with its position in its stream (Epoch 0: not open); the keys of a
// server keep their order in keys. Keys without routing are left out of
// servers, but their streams still get msg (a reliable client that is
// reconnecting recovers it). appended lists the keys whose stream got
// msg, in keys' order, and offline those of them without routing.
func (r *Redis) ServersByKeysAppend(ctx context.Context, keys []string, msg StreamMsg, ret Retention) (servers map[string][]Routed, appended, offline []string, err error) {
	keys = uniqueStrings(keys)
	found, err := r.lookupAppend(ctx, len(keys), "GET", &keysAppendScript, msg, ret, func(i int) (string, StreamRef) {
		return r.keyKey(keys[i]), StreamRef{Stream: StreamKey, Key: keys[i]}
	})
	if err != nil {
		return nil, nil, nil, &opError{kind: ErrRedis, op: "servers by keys with streams (" + strconv.Itoa(len(keys)) + " keys)", err: err}
	}
	servers = make(map[string][]Routed)
	for i, f := range found {
		server, err := redis.String(f.routing, nil)
		if errors.Is(err, redis.ErrNil) {
			server, err = "", nil // no routing
		}
		if err != nil {
			return nil, nil, nil, &opError{kind: ErrRedis, op: "servers by keys with streams", err: err}
		}
		if server != "" {
			servers[server] = append(servers[server], Routed{Key: keys[i], Pos: f.pos})
		}
		if f.pos.Epoch != 0 {
			appended = append(appended, keys[i])
			if server == "" {
				offline = append(offline, keys[i])
			}
		}
	}
	return servers, appended, offline, nil
}

// lookedUp is one target's answer of a lookup-and-append script: its
// routing reply, and msg's position in its stream when appended (Epoch 0:
// not appended; a stream's epoch is never 0).
type lookedUp struct {
	routing any
	pos     StreamPos
}

// lookupAppend looks up n targets' routing and appends msg to those whose
// stream is open, in two steps so that a target without a stream (every
// target of a cluster with no reliable client) costs its routing command
// and an EXISTS, and msg is not sent to Redis for it:
//
//  1. one exec of, per target, its routing command (lookup: HGETALL
//     mid_<mid> or GET key_<key>) and EXISTS on its stream's meta;
//  2. one exec of script (midsAppendLua or keysAppendLua) for the targets
//     whose meta existed: the routing read again and the append, atomically;
//     its routing answer replaces step 1's.
//
// target(i) gives target i's routing key (which also routes its commands
// in cluster mode: the meta shares its slot) and its stream. A stream
// opened between the two steps misses msg, as it would had the push come
// first: its client's view starts at its open. A stream whose meta expires
// between them is not appended (the script appends only to an open one).
func (r *Redis) lookupAppend(ctx context.Context, n int, lookup string, script *luaScript, msg StreamMsg, ret Retention, target func(i int) (string, StreamRef)) ([]lookedUp, error) {
	if err := ret.check(); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	routing := make([]string, n)
	metas := make([]string, n)
	streams := make([]string, n)
	cmds := make([]command, 0, 2*n)
	for i := range n {
		var ref StreamRef
		routing[i], ref = target(i)
		metas[i], streams[i] = r.streamKeys(ref)
		cmds = append(cmds,
			command{key: routing[i], name: lookup, args: []any{routing[i]}},
			command{key: routing[i], name: "EXISTS", args: []any{metas[i]}})
	}
	if err := r.exec(ctx, cmds); err != nil {
		return nil, err
	}
	out := make([]lookedUp, n)
	var open []int
	for i := range out {
		if err := cmds[2*i].err; err != nil {
			return nil, err
		}
		out[i].routing = cmds[2*i].reply
		exists, err := redis.Int(cmds[2*i+1].reply, cmds[2*i+1].err)
		if err != nil {
			return nil, err
		}
		if exists == 1 {
			open = append(open, i)
		}
	}
	if len(open) == 0 {
		return out, nil
	}
	args := appendArgs(ret, msg)
	scripted := make([]command, len(open))
	for j, i := range open {
		scripted[j] = script.command(routing[i], []string{routing[i], metas[i], streams[i]}, args...)
	}
	if err := r.exec(ctx, scripted); err != nil {
		return nil, err
	}
	for j, i := range open {
		v, err := redis.Values(scripted[j].reply, scripted[j].err)
		if err != nil {
			return nil, err
		}
		if len(v) != 1 && len(v) != 3 {
			return nil, fmt.Errorf("lookup script answered %d values", len(v))
		}
		out[i].routing = v[0]
		if len(v) == 3 {
			if out[i].pos, err = parsePos(v[1:]); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// AppendRoom appends msg to room's stream, creating it when absent (a new
// epoch), with ret's MaxLen and TTL, and returns msg's position.
func (r *Redis) AppendRoom(ctx context.Context, room string, msg StreamMsg, ret Retention) (StreamPos, error) {
	s := StreamRef{Stream: StreamRoom, Room: room}
	if err := s.check(); err != nil {
		return StreamPos{}, err
	}
	if err := ret.check(); err != nil {
		return StreamPos{}, err
	}
	meta, stream := r.streamKeys(s)
	cmds := []command{roomAppendScript.command(meta, []string{meta, stream}, appendArgs(ret, msg)...)}
	err := r.exec(ctx, cmds)
	var pos StreamPos
	if err == nil {
		var v []any
		if v, err = redis.Values(cmds[0].reply, cmds[0].err); err == nil {
			pos, err = parsePos(v)
		}
	}
	if err != nil {
		return StreamPos{}, &opError{kind: ErrRedis, op: "append to room stream", err: err}
	}
	return pos, nil
}

// ReadStream reads stream s for a reader at offset after of epoch: up to
// limit entries (0: the state only), oldest first. When epoch is the
// stream's and after <= its top, the entries are those after after, and
// Recovered says whether the first of them (offset after+1) is still held
// (true as well when after == top). Otherwise (another epoch, epoch 0, or
// an offset beyond the stream's top) the entries start at the oldest held
// and Recovered is false. A missing stream reads as Epoch 0.
func (r *Redis) ReadStream(ctx context.Context, s StreamRef, epoch, after uint64, limit int) (StreamRead, error) {
	if err := s.check(); err != nil {
		return StreamRead{}, err
	}
	if limit < 0 {
		return StreamRead{}, fmt.Errorf("%w: read stream: limit %d", ErrInvalidArgument, limit)
	}
	meta, stream := r.streamKeys(s)
	cmds := []command{readStreamScript.command(meta, []string{meta, stream},
		strconv.FormatUint(epoch, 10), strconv.FormatUint(after, 10), limit)}
	fail := func(err error) (StreamRead, error) {
		return StreamRead{}, &opError{kind: ErrRedis, op: "read stream", err: err}
	}
	if err := r.exec(ctx, cmds); err != nil {
		return fail(err)
	}
	v, err := redis.Values(cmds[0].reply, cmds[0].err)
	if err != nil {
		return fail(err)
	}
	if len(v) == 0 {
		return StreamRead{}, nil
	}
	if len(v) != 4 {
		return fail(fmt.Errorf("read script answered %d values", len(v)))
	}
	pos, err := parsePos(v[:2])
	if err != nil {
		return fail(err)
	}
	out := StreamRead{Epoch: pos.Epoch, Top: pos.Offset}
	oldest := uint64(0)
	if id, _ := redis.String(v[2], nil); id != "" {
		if oldest, err = entryOffset(id); err != nil {
			return fail(err)
		}
	}
	if out.Entries, err = parseEntries(v[3]); err != nil {
		return fail(err)
	}
	if epoch == out.Epoch && after <= out.Top {
		// Nothing missed, or the next message is still held: offsets have
		// no gaps, so the oldest held at or before after+1 means after+1
		// is held.
		out.Recovered = after == out.Top || (oldest != 0 && oldest <= after+1)
	}
	return out, nil
}

// entryOffset is the offset of a stream entry id "<offset>-0".
func entryOffset(id string) (uint64, error) {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok || seq != "0" {
		return 0, fmt.Errorf("stream entry id %q is not <offset>-0", id)
	}
	o, err := strconv.ParseUint(ms, 10, 64)
	if err != nil || o == 0 {
		return 0, fmt.Errorf("stream entry id %q is not <offset>-0", id)
	}
	return o, nil
}

// parseEntries reads XRANGE's reply.
func parseEntries(reply any) ([]StreamEntry, error) {
	items, err := redis.Values(reply, nil)
	if err != nil || len(items) == 0 {
		return nil, err
	}
	out := make([]StreamEntry, 0, len(items))
	for _, it := range items {
		pair, err := redis.Values(it, nil)
		if err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("stream entry: %v", err)
		}
		id, err := redis.String(pair[0], nil)
		if err != nil {
			return nil, fmt.Errorf("stream entry id: %w", err)
		}
		var e StreamEntry
		if e.Offset, err = entryOffset(id); err != nil {
			return nil, err
		}
		fields, err := redis.Values(pair[1], nil)
		if err != nil {
			return nil, fmt.Errorf("stream entry %s fields: %w", id, err)
		}
		for j := 0; j+1 < len(fields); j += 2 {
			name, _ := redis.String(fields[j], nil)
			switch name {
			case "i":
				e.ID, err = redis.String(fields[j+1], nil)
			case "o":
				var op int
				op, err = redis.Int(fields[j+1], nil)
				e.Op = int32(op)
			case "b":
				e.Body, err = redis.Bytes(fields[j+1], nil)
			}
			if err != nil {
				return nil, fmt.Errorf("stream entry %s field %s: %w", id, name, err)
			}
		}
		out = append(out, e)
	}
	return out, nil
}
