package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// MaxRoomIDLen is the longest room id accepted anywhere (auth body, op 12,
// the push and online HTTP API, comets' online reports), in bytes.
const MaxRoomIDLen = 128

// ErrRoomID: a room id is empty, longer than MaxRoomIDLen or holds a byte
// outside the room id charset (see CheckRoomID).
var ErrRoomID = errors.New("protocol: invalid room id")

// roomByte marks the bytes a room id may hold: ASCII letters and digits and
// the URI characters - . _ ~ : / @ ! $ & ' ( ) * + , ; = %. Room ids look
// like "live://1000"; no spaces, control characters, quotes, backslashes,
// angle brackets or non-ASCII bytes, so an id is safe in a log line, a
// metric-free report, a URL and an HTML page alike.
var roomByte = charset("-._~:/@!$&'()*+,;=%")

// charset marks the ASCII letters and digits and the bytes of extra.
func charset(extra string) (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for i := 0; i < len(extra); i++ {
		t[extra[i]] = true
	}
	return t
}

// checkBytes reports why s is not 1 to max bytes of the charset allowed,
// as an error wrapping sentinel that does not echo s.
func checkBytes(s string, max int, allowed *[256]bool, sentinel error) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", sentinel)
	case len(s) > max:
		return fmt.Errorf("%w: %d bytes, at most %d", sentinel, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if !allowed[s[i]] {
			return fmt.Errorf("%w: byte %d (0x%02x) is not allowed", sentinel, i, s[i])
		}
	}
	return nil
}

// CheckRoomID reports whether id is a valid room id: 1 to MaxRoomIDLen
// bytes, each an ASCII letter or digit or one of - . _ ~ : / @ ! $ & ' ( ) *
// + , ; = %. The error wraps ErrRoomID and says what is wrong without
// echoing the id.
func CheckRoomID(id string) error {
	return checkBytes(id, MaxRoomIDLen, &roomByte, ErrRoomID)
}

// CheckRoomPattern reports whether p is a valid entry of a token's rooms
// claim: a room id (exact match), a room id prefix followed by one final
// "*" (matches every room id with that prefix, "live://*"), or "*" alone
// (every room). A "*" anywhere else is literal, as in a room id.
func CheckRoomPattern(p string) error {
	if p == "*" {
		return nil
	}
	return CheckRoomID(p)
}

// RoomAllowed reports whether the room id matches one of patterns (see
// CheckRoomPattern). No pattern matches the empty id.
func RoomAllowed(patterns []string, id string) bool {
	for _, p := range patterns {
		if RoomMatches(p, id) {
			return true
		}
	}
	return false
}

// RoomMatches reports whether the room id matches the one pattern (see
// CheckRoomPattern). No pattern matches the empty id.
func RoomMatches(pattern, id string) bool {
	if id == "" {
		return false
	}
	prefix, star := strings.CutSuffix(pattern, "*")
	return star && strings.HasPrefix(id, prefix) || pattern == id
}
