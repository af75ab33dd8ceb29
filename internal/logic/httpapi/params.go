package httpapi

import (
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/goim/goim/api/protocol"
)

// Parameter parsing. Parameters come only from the URL query string, never
// from a form body (the body is the message). The rules:
//
//   - A scalar parameter given with an empty value counts as absent; given
//     twice it is rejected (which value was meant is ambiguous).
//   - A list parameter is repeated (keys=a&keys=b), comma-separated
//     (keys=a,b) or both; its elements keep their order, an empty element
//     is rejected, and duplicates are dropped keeping the first. Elements
//     are used as given: no trimming, so a key cannot contain a comma.
//   - A list has a bound on its length (keys and mids: Config.MaxKeys and
//     Config.MaxMids), counted after duplicates are dropped.
//   - Room ids ("type://room") must pass protocol.CheckRoomID: at most
//     protocol.MaxRoomIDLen bytes of the room id charset.
//   - Parameters are checked in the order of docs/push-api.md's tables and
//     the first problem is reported. Unknown parameters are ignored.
//
// These functions take url.Values and strings, not gin types, so that they
// can be fuzzed.

// MaxTopLimit is the largest limit /goim/online/top accepts. It bounds the
// response (one small JSON object per room) and the sorting work per
// request; goim v2 had no bound and panicked on a negative limit.
const MaxTopLimit = 1000

// maxEcho is the longest parameter value, in bytes, quoted back in an error
// message; longer values are cut and marked with "...".
const maxEcho = 64

// parseQuery parses a raw query string strictly: a malformed percent
// escape or a ';' separator is an error, where url.URL.Query silently
// drops the pair.
func parseQuery(raw string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, &paramError{param: "query", why: err.Error()}
	}
	return q, nil
}

// parsePushKeys parses /goim/push/keys: operation, keys (at most
// maxKeys).
func parsePushKeys(q url.Values, maxKeys int) (op int32, keys []string, err error) {
	if op, err = parseOperation(q); err != nil {
		return 0, nil, err
	}
	if keys, err = stringList(q, "keys"); err != nil {
		return 0, nil, err
	}
	if err = checkLen("keys", len(keys), maxKeys, "max_keys"); err != nil {
		return 0, nil, err
	}
	return op, keys, nil
}

// parsePushMids parses /goim/push/mids: operation, mids (at most
// maxMids).
func parsePushMids(q url.Values, maxMids int) (op int32, mids []int64, err error) {
	if op, err = parseOperation(q); err != nil {
		return 0, nil, err
	}
	if mids, err = midList(q, "mids"); err != nil {
		return 0, nil, err
	}
	if err = checkLen("mids", len(mids), maxMids, "max_mids"); err != nil {
		return 0, nil, err
	}
	return op, mids, nil
}

// checkLen rejects a list parameter of n distinct elements over limit,
// naming the config key of the bound.
func checkLen(name string, n, limit int, key string) error {
	if n <= limit {
		return nil
	}
	return &paramError{param: name, why: strconv.Itoa(n) + " distinct values, at most " +
		strconv.Itoa(limit) + " (http." + key + ")"}
}

// parsePushRoom parses /goim/push/room: operation, type, room. The room
// returned is the full id, "type://room".
func parsePushRoom(q url.Values) (op int32, room string, err error) {
	if op, err = parseOperation(q); err != nil {
		return 0, "", err
	}
	typ, err := roomType(q)
	if err != nil {
		return 0, "", err
	}
	id, err := requiredString(q, "room")
	if err != nil {
		return 0, "", err
	}
	room = typ + "://" + id
	if err := checkRoom("room", room); err != nil {
		return 0, "", err
	}
	return op, room, nil
}

// checkRoom rejects a full room id that protocol.CheckRoomID refuses, for
// parameter name. The message quotes the id (cut at maxEcho bytes).
func checkRoom(name, room string) error {
	err := protocol.CheckRoomID(room)
	if err == nil {
		return nil
	}
	why := strings.TrimPrefix(err.Error(), protocol.ErrRoomID.Error()+": ")
	return &paramError{param: name, why: "room id " + echo(room) + " is invalid: " + why +
		" (at most " + strconv.Itoa(protocol.MaxRoomIDLen) + " bytes of letters, digits and -._~:/@!$&'()*+,;=%)"}
}

// parsePushAll parses /goim/push/all: operation, speed (absent: 0).
func parsePushAll(q url.Values) (op, speed int32, err error) {
	if op, err = parseOperation(q); err != nil {
		return 0, 0, err
	}
	s, err := scalar(q, "speed")
	if err != nil || s == "" {
		return op, 0, err
	}
	v, err := parseInt("speed", s, 32)
	if err != nil {
		return 0, 0, err
	}
	if v < 0 || v > MaxSpeed {
		return 0, 0, &paramError{param: "speed",
			why: "must be 0.." + strconv.Itoa(MaxSpeed) + ", got " + strconv.FormatInt(v, 10)}
	}
	return op, int32(v), nil
}

// parseOnlineTop parses /goim/online/top: type, limit (1..MaxTopLimit).
func parseOnlineTop(q url.Values) (typ string, limit int, err error) {
	if typ, err = roomType(q); err != nil {
		return "", 0, err
	}
	s, err := scalar(q, "limit")
	if err != nil {
		return "", 0, err
	}
	if s == "" {
		return "", 0, &paramError{param: "limit", why: "required"}
	}
	v, err := parseInt("limit", s, 64)
	if err != nil {
		return "", 0, err
	}
	if v < 1 || v > MaxTopLimit {
		return "", 0, &paramError{param: "limit",
			why: "must be 1.." + strconv.Itoa(MaxTopLimit) + ", got " + strconv.FormatInt(v, 10)}
	}
	return typ, int(v), nil
}

// parseOnlineRoom parses /goim/online/room: type, rooms (ids without the
// "type://" prefix; each type://room a valid room id).
func parseOnlineRoom(q url.Values) (typ string, rooms []string, err error) {
	if typ, err = roomType(q); err != nil {
		return "", nil, err
	}
	if rooms, err = stringList(q, "rooms"); err != nil {
		return "", nil, err
	}
	for _, r := range rooms {
		if err := checkRoom("rooms", typ+"://"+r); err != nil {
			return "", nil, err
		}
	}
	return typ, rooms, nil
}

// parseNodes parses /goim/nodes/weighted: platform, optional, any value.
func parseNodes(q url.Values) (platform string, err error) {
	return scalar(q, "platform")
}

// parseOperation parses the operation of a push: required, int32, > 0.
func parseOperation(q url.Values) (int32, error) {
	s, err := scalar(q, "operation")
	if err != nil {
		return 0, err
	}
	if s == "" {
		return 0, &paramError{param: "operation", why: "required"}
	}
	v, err := parseInt("operation", s, 32)
	if err != nil {
		return 0, err
	}
	if v <= 0 {
		return 0, &paramError{param: "operation", why: "must be > 0, got " + strconv.FormatInt(v, 10)}
	}
	return int32(v), nil
}

// roomType parses the type parameter: required, without "://", which
// separates it from the room id in a full room id, and such that
// "type://" passes protocol.CheckRoomID (so some room of the type can
// exist).
func roomType(q url.Values) (string, error) {
	typ, err := requiredString(q, "type")
	if err != nil {
		return "", err
	}
	if strings.Contains(typ, "://") {
		return "", &paramError{param: "type", why: `must not contain "://"`}
	}
	if err := checkRoom("type", typ+"://"); err != nil {
		return "", err
	}
	return typ, nil
}

// requiredString returns the non-empty single value of parameter name.
func requiredString(q url.Values, name string) (string, error) {
	s, err := scalar(q, name)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", &paramError{param: name, why: "required"}
	}
	return s, nil
}

// scalar returns the value of the single-valued parameter name: "" when it
// is absent or empty, an error when it is given more than once.
func scalar(q url.Values, name string) (string, error) {
	vs := q[name]
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	default:
		return "", &paramError{param: name, why: "given " + strconv.Itoa(len(vs)) + " times, want once"}
	}
}

// parseInt parses s as a base-10 integer of bitSize bits for parameter
// name.
func parseInt(name, s string, bitSize int) (int64, error) {
	v, err := strconv.ParseInt(s, 10, bitSize)
	if err == nil {
		return v, nil
	}
	why := echo(s) + " is not an integer"
	if errors.Is(err, strconv.ErrRange) {
		why = echo(s) + " is out of range for int" + strconv.Itoa(bitSize)
	}
	return 0, &paramError{param: name, why: why}
}

// stringList returns the elements of list parameter name: at least one,
// none empty, without duplicates, in first-seen order.
func stringList(q url.Values, name string) ([]string, error) {
	vs := q[name]
	if len(vs) == 0 || len(vs) == 1 && vs[0] == "" {
		return nil, &paramError{param: name, why: "required (repeat " + name + "=... or separate with commas)"}
	}
	elems, emptyAt := splitList(vs)
	if emptyAt > 0 {
		return nil, &paramError{param: name, why: "empty value at position " + strconv.Itoa(emptyAt)}
	}
	return dedupe(elems), nil
}

// midList is stringList for user ids: every element an int64 > 0.
func midList(q url.Values, name string) ([]int64, error) {
	elems, err := stringList(q, name)
	if err != nil {
		return nil, err
	}
	// Positions count the elements as written, duplicates included.
	vs := q[name]
	mids := make([]int64, 0, len(elems))
	pos := 0
	for _, v := range vs {
		for e := range strings.SplitSeq(v, ",") {
			pos++
			mid, err := strconv.ParseInt(e, 10, 64)
			if err != nil {
				why := echo(e) + " at position " + strconv.Itoa(pos) + " is not an integer"
				if errors.Is(err, strconv.ErrRange) {
					why = echo(e) + " at position " + strconv.Itoa(pos) + " is out of range for int64"
				}
				return nil, &paramError{param: name, why: why}
			}
			if mid <= 0 {
				return nil, &paramError{param: name, why: "must be > 0, got " + strconv.FormatInt(mid, 10)}
			}
			mids = append(mids, mid)
		}
	}
	return dedupe(mids), nil
}

// splitList splits each of vals at commas and returns all the elements in
// order. emptyAt is the 1-based position of the first empty element, or 0
// when there is none. splitList(nil) is (nil, 0); splitList([""]) has an
// empty element at 1.
func splitList(vals []string) (elems []string, emptyAt int) {
	n := 0
	for _, v := range vals {
		n += strings.Count(v, ",") + 1
	}
	if n == 0 {
		return nil, 0
	}
	elems = make([]string, 0, n)
	for _, v := range vals {
		for e := range strings.SplitSeq(v, ",") {
			if e == "" && emptyAt == 0 {
				emptyAt = len(elems) + 1
			}
			elems = append(elems, e)
		}
	}
	return elems, emptyAt
}

// dedupe removes later duplicates from s in place, keeping the first-seen
// order, and returns the shortened slice.
func dedupe[T comparable](s []T) []T {
	if len(s) < 2 {
		return s
	}
	if len(s) <= 16 { // quadratic, but no map for the common short list
		out := s[:1]
		for _, v := range s[1:] {
			dup := false
			for _, w := range out {
				if v == w {
					dup = true
					break
				}
			}
			if !dup {
				out = append(out, v)
			}
		}
		return out
	}
	seen := make(map[T]struct{}, len(s))
	out := s[:0]
	for _, v := range s {
		if _, ok := seen[v]; !ok {
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}

// echo quotes a parameter value for an error message, cut at maxEcho
// bytes. Invalid UTF-8 and non-printable characters come out escaped.
func echo(s string) string {
	if len(s) > maxEcho {
		return strconv.Quote(s[:maxEcho]) + "..."
	}
	return strconv.Quote(s)
}
