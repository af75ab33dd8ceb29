package logic

import (
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
)

// Bounds of the [stream] section.
const (
	MaxStreamLen     = 1_000_000           // max_len, room_max_len
	MinStreamTTL     = time.Minute         // ttl, room_ttl
	MaxStreamTTL     = 30 * 24 * time.Hour // ttl, room_ttl
	MaxStreamRead    = 10_000              // max_read
	MaxStreamRooms   = 1000                // patterns in rooms
	defaultStreamTTL = 24 * time.Hour
)

// StreamConfig is logic's [stream] section: the reliable delivery streams.
// A reliable connection's Connect opens its user stream (mid > 0) and its
// key stream; a push by mid or key is appended to the stream of each
// target that has one open. A push to a room matching rooms is appended
// to the room's stream, opened by the first push.
type StreamConfig struct {
	// Enabled keeps streams. False: nothing is opened or appended (reliable
	// connections still get their pushes with ids, in no stream).
	// Default true.
	Enabled bool `toml:"enabled"`
	// MaxLen is how many messages a user or key stream keeps (the oldest
	// are trimmed), 1..1000000. Default 1000.
	MaxLen int `toml:"max_len"`
	// TTL is how long a user or key stream lives after its last append or
	// open, 1m..720h. Millisecond precision. Default "24h".
	TTL conf.Duration `toml:"ttl"`
	// Rooms are the recoverable rooms: each a room id (exact match), a
	// room id prefix ending in "*" ("live://*") or "*" (every room); at
	// most 1000. Default [] (none).
	Rooms []string `toml:"rooms"`
	// RoomMaxLen is MaxLen for room streams, 1..1000000. Default 1000.
	RoomMaxLen int `toml:"room_max_len"`
	// RoomTTL is TTL for room streams, 1m..720h. Default "1h".
	RoomTTL conf.Duration `toml:"room_ttl"`
	// MaxRead is the most entries one ReadStream returns (a larger limit
	// is capped), 1..10000. Default 256.
	MaxRead int `toml:"max_read"`
}

// DefaultStream is the [stream] section a config file leaves out.
func DefaultStream() StreamConfig {
	return StreamConfig{
		Enabled:    true,
		MaxLen:     1000,
		TTL:        conf.Duration(defaultStreamTTL),
		RoomMaxLen: 1000,
		RoomTTL:    conf.Duration(time.Hour),
		MaxRead:    256,
	}
}

// Validate records c's problems in p. The bounds hold whether or not
// streams are enabled, so turning them on cannot reveal a bad file.
func (c StreamConfig) Validate(p *conf.Problems) {
	p.Check(c.MaxLen >= 1 && c.MaxLen <= MaxStreamLen, "max_len", "must be 1..%d, got %d", MaxStreamLen, c.MaxLen)
	p.Check(c.RoomMaxLen >= 1 && c.RoomMaxLen <= MaxStreamLen, "room_max_len", "must be 1..%d, got %d", MaxStreamLen, c.RoomMaxLen)
	p.Check(c.TTL.D() >= MinStreamTTL && c.TTL.D() <= MaxStreamTTL, "ttl", "must be %v..%v, got %v", MinStreamTTL, MaxStreamTTL, c.TTL)
	p.Check(c.RoomTTL.D() >= MinStreamTTL && c.RoomTTL.D() <= MaxStreamTTL, "room_ttl", "must be %v..%v, got %v", MinStreamTTL, MaxStreamTTL, c.RoomTTL)
	p.Check(c.MaxRead >= 1 && c.MaxRead <= MaxStreamRead, "max_read", "must be 1..%d, got %d", MaxStreamRead, c.MaxRead)
	if !p.Check(len(c.Rooms) <= MaxStreamRooms, "rooms", "at most %d patterns, got %d", MaxStreamRooms, len(c.Rooms)) {
		return
	}
	for i, r := range c.Rooms {
		if err := protocol.CheckRoomPattern(r); err != nil {
			p.Add(conf.Index("rooms", i), "want a room id, a prefix ending in * or *: %v", err)
		}
	}
}

// recoverable reports whether pushes to room are kept in a room stream.
func (c *StreamConfig) recoverable(room string) bool {
	return c.Enabled && len(c.Rooms) > 0 && protocol.RoomAllowed(c.Rooms, room)
}

// userRetention is what user and key streams keep.
func (c *StreamConfig) userRetention() dao.Retention {
	return dao.Retention{MaxLen: c.MaxLen, TTL: c.TTL.D()}
}

// roomRetention is what room streams keep.
func (c *StreamConfig) roomRetention() dao.Retention {
	return dao.Retention{MaxLen: c.RoomMaxLen, TTL: c.RoomTTL.D()}
}
