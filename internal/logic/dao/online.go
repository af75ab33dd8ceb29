package dao

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"
)

// OnlineReport is what one comet last reported of its load: what logic
// answers /goim/online/* and the weighted node list from.
type OnlineReport struct {
	// Server is the comet's server id.
	Server string
	// Rooms maps a room key ("type://id") to its connections on that
	// comet. Only rooms with at least one connection appear.
	Rooms map[string]int32
	// ConnCount and IPCount are the comet's connections and distinct
	// client IPs.
	ConnCount, IPCount int64
	// Draining is true while the comet sends its clients elsewhere.
	Draining bool
	// Updated is when logic stored the report (logic's clock, millisecond
	// precision).
	Updated time.Time
}

// onlineRecord is the value of ol_<server>: one comet's whole report as a
// JSON object, for example
//
//	{"server":"comet-1","rooms":{"live://1000":12,"live://1001":3},
//	 "conn_count":40,"ip_count":31,"draining":false,"updated":1767225600000}
//
// updated is Unix milliseconds. Every report replaces the whole value with
// one SET ... PX online_ttl, so a room that emptied disappears with the
// next report and a comet that stopped reporting disappears after
// online_ttl.
//
// The same pipeline records the comet in the online_servers index (ZADD,
// score = updated), so LoadAllOnline finds every comet that reported
// without asking discovery. The index only names candidates: the ol_ key
// is the report, and its TTL decides whether the comet still counts.
//
// This value is goim's own. goim v2 kept ol_<server> as a hash of 64 JSON
// shards (CityHash32(room) mod 64 -> {"server","room_count","updated"}),
// rewrote only the shards that had rooms, so rooms that emptied stayed
// counted with their last count, and read it back with 64 HGETs per comet. That layout is
// not kept. A v2 logic and this one cannot share a Redis for online
// counts: v2 gets WRONGTYPE on this key; LoadOnline reads a v2 hash as
// absent (MGET answers nil for a key that is not a string).
type onlineRecord struct {
	Server    string           `json:"server"`
	Rooms     map[string]int32 `json:"rooms"`
	ConnCount int64            `json:"conn_count"`
	IPCount   int64            `json:"ip_count"`
	Draining  bool             `json:"draining"`
	Updated   int64            `json:"updated"`
}

// onlineIndexTTLFactor times online_ttl is the TTL of the online_servers
// index, renewed by every report: once no comet of the cluster reports,
// the index goes too, after every ol_ key it names.
const onlineIndexTTLFactor = 3

// StoreOnline replaces comet server's online report with this one, with
// the online TTL, and records server in the online_servers index, in one
// pipeline: SET ol_<server>, ZADD online_servers, ZREMRANGEBYSCORE of the
// members older than online_ttl (so the index stays bounded whoever reads
// it) and PEXPIRE online_servers; then SET epoch NX and GET epoch. Rooms
// with a count <= 0 are left out. It returns the epoch: a random value
// stored once without a TTL, so it changes only when Redis lost its data
// (see OnlineReply.epoch).
func (r *Redis) StoreOnline(ctx context.Context, server string, rooms map[string]int32, connCount, ipCount int64, draining bool) (epoch string, err error) {
	if server == "" {
		return "", fmt.Errorf("dao: redis: store online: %w: empty server", ErrInvalidArgument)
	}
	now := time.Now().UnixMilli()
	rec := onlineRecord{
		Server:    server,
		Rooms:     make(map[string]int32, len(rooms)),
		ConnCount: connCount,
		IPCount:   ipCount,
		Draining:  draining,
		Updated:   now,
	}
	for room, n := range rooms {
		if n > 0 {
			rec.Rooms[room] = n
		}
	}
	value, err := json.Marshal(&rec)
	if err != nil { // not reached: the record has only plain fields
		return "", &opError{kind: ErrRedis, op: "store online server=" + strconv.Quote(server), err: err}
	}
	index := r.onlineServersKey()
	fresh := newEpoch()
	stale := "(" + strconv.FormatInt(now-r.onlineTTL, 10) // scores below it
	// SET before ZADD: LoadAllOnline removes index members that have no
	// report, so a member must never be in the index before its report is
	// stored. (In cluster mode every key here has the online tag: one
	// slot, one pipeline.)
	ek, rk := r.epochKey(), r.onlineKey(server)
	cmds := []command{
		{key: rk, name: "SET", args: []any{rk, value, "PX", r.onlineTTL}},
		{key: index, name: "ZADD", args: []any{index, now, server}},
		{key: index, name: "ZREMRANGEBYSCORE", args: []any{index, "-inf", stale}},
		{key: index, name: "PEXPIRE", args: []any{index, onlineIndexTTLFactor * r.onlineTTL}},
		{key: ek, name: "SET", args: []any{ek, fresh, "NX"}},
		{key: ek, name: "GET", args: []any{ek}},
	}
	err = r.exec(ctx, cmds)
	if err == nil {
		err = firstError(cmds)
	}
	if err == nil {
		epoch, err = redis.String(cmds[len(cmds)-1].reply, nil)
	}
	if err != nil {
		return "", &opError{kind: ErrRedis, op: "store online server=" + strconv.Quote(server), err: err}
	}
	return epoch, nil
}

// newEpoch is a random epoch value.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// LoadOnline returns the current reports of servers, with one MGET. A
// server without a report (never reported, or silent for longer than the
// online TTL) is absent from the map. A value that does not decode is
// logged and treated as absent, so one bad key cannot hide every comet.
func (r *Redis) LoadOnline(ctx context.Context, servers []string) (map[string]OnlineReport, error) {
	servers = uniqueStrings(servers)
	out := make(map[string]OnlineReport, len(servers))
	if len(servers) == 0 {
		return out, nil
	}
	args := make([]any, len(servers))
	for i, s := range servers {
		args[i] = r.onlineKey(s)
	}
	// In cluster mode the report keys share the online tag: one MGET.
	cmds := []command{{key: r.onlineKey(servers[0]), name: "MGET", args: args}}
	err := r.exec(ctx, cmds)
	var values [][]byte
	if err == nil {
		values, err = redis.ByteSlices(cmds[0].reply, cmds[0].err)
	}
	if err != nil {
		return nil, &opError{kind: ErrRedis, op: "load online (" + strconv.Itoa(len(servers)) + " servers)", err: err}
	}
	for i, v := range values {
		if v != nil && i < len(servers) {
			r.addReport(out, servers[i], v)
		}
	}
	return out, nil
}

// loadAllOnlineLua trims the online_servers index and returns the reports
// of the comets it still names.
//
//	KEYS[1] online_servers
//	ARGV[1] the oldest score kept: the caller's Unix ms minus online_ttl
//	ARGV[2] the prefix of the report keys, "<prefix>ol_"
//
// It removes the members scored below ARGV[1], MGETs ARGV[2]..member for
// the others (in chunks, as unpack is bounded), removes the members whose
// report is gone (expired or deleted) and returns {server1, report1,
// server2, report2, ...} for the rest.
//
// The ol_ keys are built here, not passed in KEYS: this script is for
// single mode only; cluster mode reads the index first and passes the keys
// (clusterLoadOnlineLua).
const loadAllOnlineLua = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
local servers = redis.call('ZRANGE', KEYS[1], 0, -1)
local out, gone = {}, {}
local chunk = 500
for i = 1, #servers, chunk do
  local last = math.min(i + chunk - 1, #servers)
  local keys = {}
  for j = i, last do
    keys[#keys + 1] = ARGV[2] .. servers[j]
  end
  local values = redis.call('MGET', unpack(keys))
  for j = i, last do
    local v = values[j - i + 1]
    if v then
      out[#out + 1] = servers[j]
      out[#out + 1] = v
    else
      gone[#gone + 1] = servers[j]
    end
  end
end
for i = 1, #gone, chunk do
  redis.call('ZREM', KEYS[1], unpack(gone, i, math.min(i + chunk - 1, #gone)))
end
return out
`

// LoadAllOnline returns the reports of every comet that reported within
// the online TTL, found through the online_servers index rather than a
// list of servers (discovery's membership can lag), in one Lua script (in
// cluster mode a pipeline, then a script). It
// trims the index as it reads: members older than online_ttl by this
// process's clock, and members whose report expired, are removed.
//
// A comet is absent when its report expired or when it is no longer in
// the index. The index scores come from the clocks of the logic processes
// that stored the reports, so their clocks should agree to well within
// online_ttl minus comet's report interval: a reader whose clock runs
// ahead by more drops live comets from the index until they next report.
// A value that does not decode is logged and left out, as in LoadOnline.
func (r *Redis) LoadAllOnline(ctx context.Context) (map[string]OnlineReport, error) {
	oldest := strconv.FormatInt(time.Now().UnixMilli()-r.onlineTTL, 10)
	var pairs [][]byte
	var err error
	if r.cluster != nil {
		pairs, err = r.clusterLoadAllOnline(ctx, oldest)
	} else {
		keys := []string{r.onlineServersKey()}
		err = r.do(ctx, func(c redis.Conn, timeout time.Duration) error {
			var err error
			pairs, err = redis.ByteSlices(r.onlineLua.run(c, timeout, keys, oldest, r.onlinePrefixKey()))
			return err
		})
	}
	if err != nil {
		return nil, &opError{kind: ErrRedis, op: "load all online", err: err}
	}
	out := make(map[string]OnlineReport, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		r.addReport(out, string(pairs[i]), pairs[i+1])
	}
	return out, nil
}

// addReport decodes server's report v into out; a value that does not
// decode is logged and left out, so one bad key cannot hide every comet.
func (r *Redis) addReport(out map[string]OnlineReport, server string, v []byte) {
	var rec onlineRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		r.log.Warn("dao: ignoring an online report that does not decode",
			slog.String("key", r.onlineKey(server)), slog.Any("error", err))
		return
	}
	if rec.Rooms == nil {
		rec.Rooms = map[string]int32{}
	}
	out[server] = OnlineReport{
		Server:    server,
		Rooms:     rec.Rooms,
		ConnCount: rec.ConnCount,
		IPCount:   rec.IPCount,
		Draining:  rec.Draining,
		Updated:   time.UnixMilli(rec.Updated),
	}
}
