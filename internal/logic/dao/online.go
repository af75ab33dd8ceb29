package dao

import (
	"context"
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
// This value is goim's own. goim v2 kept ol_<server> as a hash of 64 JSON
// shards (CityHash32(room) mod 64 -> {"server","room_count","updated"}),
// rewrote only the shards that had rooms, so rooms that emptied stayed
// counted (R7), and read it back with 64 HGETs per comet. That layout is
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

// StoreOnline replaces comet server's online report with this one, with
// the online TTL, in one SET. Rooms with a count <= 0 are left out.
func (r *Redis) StoreOnline(ctx context.Context, server string, rooms map[string]int32, connCount, ipCount int64, draining bool) error {
	if server == "" {
		return fmt.Errorf("dao: redis: store online: %w: empty server", ErrInvalidArgument)
	}
	rec := onlineRecord{
		Server:    server,
		Rooms:     make(map[string]int32, len(rooms)),
		ConnCount: connCount,
		IPCount:   ipCount,
		Draining:  draining,
		Updated:   time.Now().UnixMilli(),
	}
	for room, n := range rooms {
		if n > 0 {
			rec.Rooms[room] = n
		}
	}
	value, err := json.Marshal(&rec)
	if err != nil { // not reached: the record has only plain fields
		return &opError{kind: ErrRedis, op: "store online server=" + strconv.Quote(server), err: err}
	}
	err = r.do(ctx, func(c redis.Conn, timeout time.Duration) error {
		_, err := redis.DoWithTimeout(c, timeout, "SET", r.onlineKey(server), value, "PX", r.onlineTTL)
		return err
	})
	if err != nil {
		return &opError{kind: ErrRedis, op: "store online server=" + strconv.Quote(server), err: err}
	}
	return nil
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
	var values [][]byte
	err := r.do(ctx, func(c redis.Conn, timeout time.Duration) error {
		var err error
		values, err = redis.ByteSlices(redis.DoWithTimeout(c, timeout, "MGET", args...))
		return err
	})
	if err != nil {
		return nil, &opError{kind: ErrRedis, op: "load online (" + strconv.Itoa(len(servers)) + " servers)", err: err}
	}
	for i, v := range values {
		if v == nil || i >= len(servers) {
			continue
		}
		var rec onlineRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			r.log.Warn("dao: ignoring an online report that does not decode",
				slog.String("key", r.onlineKey(servers[i])), slog.Any("error", err))
			continue
		}
		if rec.Rooms == nil {
			rec.Rooms = map[string]int32{}
		}
		out[servers[i]] = OnlineReport{
			Server:    servers[i],
			Rooms:     rec.Rooms,
			ConnCount: rec.ConnCount,
			IPCount:   rec.IPCount,
			Draining:  rec.Draining,
			Updated:   time.UnixMilli(rec.Updated),
		}
	}
	return out, nil
}
