package logic

import (
	"strconv"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/testkit"
)

// TestStreamConfigValidate: every bound of [stream], at and beyond it.
func TestStreamConfigValidate(t *testing.T) {
	manyRooms := make([]string, MaxStreamRooms+1)
	for i := range manyRooms {
		manyRooms[i] = "live://" + strconv.Itoa(i)
	}
	cases := []struct {
		name  string
		edit  func(*StreamConfig)
		paths []string
	}{
		{name: "defaults", edit: func(*StreamConfig) {}},
		{name: "lower bounds", edit: func(c *StreamConfig) {
			c.MaxLen, c.RoomMaxLen, c.MaxRead = 1, 1, 1
			c.TTL, c.RoomTTL = conf.Duration(time.Minute), conf.Duration(time.Minute)
		}},
		{name: "upper bounds", edit: func(c *StreamConfig) {
			c.MaxLen, c.RoomMaxLen, c.MaxRead = MaxStreamLen, MaxStreamLen, MaxStreamRead
			c.TTL, c.RoomTTL = conf.Duration(MaxStreamTTL), conf.Duration(MaxStreamTTL)
			c.Rooms = manyRooms[:MaxStreamRooms]
		}},
		{name: "below the bounds", edit: func(c *StreamConfig) {
			c.MaxLen, c.RoomMaxLen, c.MaxRead = 0, 0, 0
			c.TTL, c.RoomTTL = conf.Duration(time.Minute-time.Millisecond), 0
		}, paths: []string{"stream.max_len", "stream.room_max_len", "stream.ttl", "stream.room_ttl", "stream.max_read"}},
		{name: "above the bounds", edit: func(c *StreamConfig) {
			c.MaxLen, c.RoomMaxLen, c.MaxRead = MaxStreamLen+1, MaxStreamLen+1, MaxStreamRead+1
			c.TTL, c.RoomTTL = conf.Duration(MaxStreamTTL+time.Millisecond), conf.Duration(MaxStreamTTL+time.Hour)
		}, paths: []string{"stream.max_len", "stream.room_max_len", "stream.ttl", "stream.room_ttl", "stream.max_read"}},
		{name: "negative", edit: func(c *StreamConfig) {
			c.MaxLen, c.RoomMaxLen, c.MaxRead = -1, -1, -1
			c.TTL, c.RoomTTL = conf.Duration(-time.Hour), conf.Duration(-time.Hour)
		}, paths: []string{"stream.max_len", "stream.room_max_len", "stream.ttl", "stream.room_ttl", "stream.max_read"}},
		{name: "room patterns", edit: func(c *StreamConfig) {
			c.Rooms = []string{"live://1", "live://*", "*", "", "bad room", "x*y*"}
		}, paths: []string{"stream.rooms[3]", "stream.rooms[4]"}},
		{name: "too many room patterns", edit: func(c *StreamConfig) { c.Rooms = manyRooms }, paths: []string{"stream.rooms"}},
		{name: "bounds hold when disabled", edit: func(c *StreamConfig) {
			c.Enabled = false
			c.MaxLen = 0
		}, paths: []string{"stream.max_len"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultStream()
			tc.edit(&c)
			var p conf.Problems
			c.Validate(p.Sub("stream"))
			testkit.WantProblems(t, p.Err(), tc.paths)
		})
	}
}

// TestStreamConfigDefaults: the documented defaults.
func TestStreamConfigDefaults(t *testing.T) {
	c := DefaultStream()
	if !c.Enabled || c.MaxLen != 1000 || c.TTL.D() != 24*time.Hour || len(c.Rooms) != 0 ||
		c.RoomMaxLen != 1000 || c.RoomTTL.D() != time.Hour || c.MaxRead != 256 {
		t.Fatalf("DefaultStream() = %+v", c)
	}
}

// TestStreamRecoverable: a room is recoverable when streams are on and
// it matches a pattern.
func TestStreamRecoverable(t *testing.T) {
	c := DefaultStream()
	c.Rooms = []string{"live://*", "chat://1"}
	for room, want := range map[string]bool{"live://9": true, "chat://1": true, "chat://2": false, "": false} {
		if got := c.recoverable(room); got != want {
			t.Errorf("recoverable(%q) = %v, want %v", room, got, want)
		}
	}
	c.Enabled = false
	if c.recoverable("live://9") {
		t.Error("a room is recoverable with streams off")
	}
}
