package httpapi

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/goim/goim/api/protocol"
)

func TestSplitList(t *testing.T) {
	tests := []struct {
		name        string
		vals        []string
		wantElems   []string
		wantEmptyAt int
	}{
		{name: "none", vals: nil, wantElems: nil},
		{name: "one empty value", vals: []string{""}, wantElems: []string{""}, wantEmptyAt: 1},
		{name: "one", vals: []string{"a"}, wantElems: []string{"a"}},
		{name: "comma", vals: []string{"a,b"}, wantElems: []string{"a", "b"}},
		{name: "repeated", vals: []string{"a", "b"}, wantElems: []string{"a", "b"}},
		{name: "mixed keeps order and duplicates", vals: []string{"b,a", "c", "a"}, wantElems: []string{"b", "a", "c", "a"}},
		{name: "leading comma", vals: []string{",a"}, wantElems: []string{"", "a"}, wantEmptyAt: 1},
		{name: "first empty reported", vals: []string{"a", "b,,", ""}, wantElems: []string{"a", "b", "", "", ""}, wantEmptyAt: 3},
		{name: "spaces kept", vals: []string{" a , b"}, wantElems: []string{" a ", " b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			elems, emptyAt := splitList(tt.vals)
			if !slices.Equal(elems, tt.wantElems) || emptyAt != tt.wantEmptyAt {
				t.Errorf("splitList(%q) = %q, %d; want %q, %d", tt.vals, elems, emptyAt, tt.wantElems, tt.wantEmptyAt)
			}
		})
	}
}

func TestDedupe(t *testing.T) {
	long := make([]int64, 0, 40)
	for i := range 40 {
		long = append(long, int64(i%13))
	}
	want := make([]int64, 13)
	for i := range want {
		want[i] = int64(i)
	}
	if got := dedupe(long); !slices.Equal(got, want) {
		t.Errorf("dedupe(long) = %v, want %v", got, want)
	}
	if got := dedupe([]string{"c", "a", "c", "b", "a"}); !slices.Equal(got, []string{"c", "a", "b"}) {
		t.Errorf("dedupe = %q", got)
	}
}

// FuzzList checks the list splitter and dedupe on two values of a list
// parameter (keys=a&keys=b).
func FuzzList(f *testing.F) {
	for _, seed := range [][2]string{
		{"a", "b"}, {"a,b", "c"}, {"", ""}, {",", "a"}, {"a,,b", ""}, {"x,y,x", "y,z"},
		{"\x00,\xff", "✓,✓"}, {strings.Repeat("k,", 40) + "k", "1"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ea, emptyA := splitList([]string{a})
		// Round trip: joining the elements gives the value back.
		if got := strings.Join(ea, ","); got != a {
			t.Fatalf("join(split(%q)) = %q", a, got)
		}
		if len(ea) != strings.Count(a, ",")+1 {
			t.Fatalf("split(%q) has %d elements, want %d", a, len(ea), strings.Count(a, ",")+1)
		}
		for _, e := range ea {
			if strings.Contains(e, ",") {
				t.Fatalf("element %q of %q holds a comma", e, a)
			}
		}
		if want := slices.Index(ea, "") + 1; emptyA != want {
			t.Fatalf("split(%q) emptyAt = %d, want %d", a, emptyA, want)
		}
		// Repeating the parameter concatenates the lists.
		eb, emptyB := splitList([]string{b})
		eab, emptyAB := splitList([]string{a, b})
		if !slices.Equal(eab, append(slices.Clone(ea), eb...)) {
			t.Fatalf("split(%q, %q) = %q, want %q + %q", a, b, eab, ea, eb)
		}
		wantEmpty := emptyA
		if wantEmpty == 0 && emptyB > 0 {
			wantEmpty = len(ea) + emptyB
		}
		if emptyAB != wantEmpty {
			t.Fatalf("split(%q, %q) emptyAt = %d, want %d", a, b, emptyAB, wantEmpty)
		}
		// Comma-joining is the same list as repeating.
		if joined, emptyJ := splitList([]string{a + "," + b}); !slices.Equal(joined, eab) || emptyJ != emptyAB {
			t.Fatalf("split(%q) differs from split(%q, %q)", a+","+b, a, b)
		}
		// dedupe keeps the first occurrence of each element, in order.
		got := dedupe(slices.Clone(eab))
		var want []string
		for _, e := range eab {
			if !slices.Contains(want, e) {
				want = append(want, e)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("dedupe(%q) = %q, want %q", eab, got, want)
		}
		// stringList: the whole rule set.
		keys, err := stringList(url.Values{"keys": {a, b}}, "keys")
		switch {
		case err != nil && emptyAB == 0:
			t.Fatalf("stringList(%q, %q): %v, but no element is empty", a, b, err)
		case err == nil && (emptyAB != 0 || !slices.Equal(keys, want)):
			t.Fatalf("stringList(%q, %q) = %q, want %q or an error", a, b, keys, want)
		}
	})
}

// FuzzQuery runs an arbitrary raw query string through every endpoint's
// parameter parsing: it must never panic, every error must be a
// "<param>: <why>" paramError, and accepted values must hold the
// invariants the Service relies on, bounds included (keys and mids are
// parsed with a limit of fuzzLimit).
func FuzzQuery(f *testing.F) {
	for _, seed := range []string{
		"", "operation=1&keys=a", "operation=7&keys=a,b&keys=c", "operation=0", "operation=-1&mids=1",
		"operation=1&mids=1,2,0", "operation=2147483648", "mids=9223372036854775808", "operation=1&type=live&room=1000",
		"operation=1&type=a://b&room=1", "operation=1&speed=-5", "operation=1&speed=2147483647", "type=live&limit=0",
		"type=live&limit=1000", "type=live&limit=1001", "type=live&rooms=1,,2", "platform=web", "platform=a&platform=b",
		"%zz", "a;b", "keys=%2C", "keys=a%00b", "operation=+1&keys=%E2%9C%93", "operation=1&operation=1",
		"operation=1&keys=" + strings.Repeat("k,", 100) + "k", "operation=1&keys=a,b,c,d,e,f", "operation=1&mids=1,2,3,4,5,6",
		"operation=1&mids=1,1,1,1,1,1,2", "operation=1&speed=1000000", "operation=1&speed=1000001",
		"operation=1&type=live&room=" + strings.Repeat("r", 122), "operation=1&type=live&room=" + strings.Repeat("r", 123),
		"operation=1&type=live&room=a%20b", "operation=1&type=li%22ve&room=1", "type=live&rooms=1,%3Cb%3E", "type=*&limit=1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseQuery(raw)
		if err != nil {
			checkParamError(t, err, "query")
			return
		}
		if op, keys, err := parsePushKeys(q, fuzzLimit); err != nil {
			checkParamError(t, err, "operation", "keys")
		} else {
			checkOp(t, op)
			checkStrings(t, "keys", keys)
			if len(keys) > fuzzLimit {
				t.Fatalf("%d keys accepted, limit %d", len(keys), fuzzLimit)
			}
		}
		if op, mids, err := parsePushMids(q, fuzzLimit); err != nil {
			checkParamError(t, err, "operation", "mids")
		} else {
			checkOp(t, op)
			if len(mids) == 0 || len(mids) > fuzzLimit {
				t.Fatalf("%d mids accepted, limit %d", len(mids), fuzzLimit)
			}
			seen := map[int64]bool{}
			for _, m := range mids {
				if m <= 0 || seen[m] {
					t.Fatalf("mids %v: %d is not > 0 or repeated", mids, m)
				}
				seen[m] = true
			}
		}
		if op, room, err := parsePushRoom(q); err != nil {
			checkParamError(t, err, "operation", "type", "room")
		} else {
			checkOp(t, op)
			typ, id, ok := strings.Cut(room, "://")
			if !ok || typ == "" || id == "" || typ != q.Get("type") || id != q.Get("room") {
				t.Fatalf("room %q from type %q, room %q", room, q.Get("type"), q.Get("room"))
			}
			if err := protocol.CheckRoomID(room); err != nil {
				t.Fatalf("room %q accepted: %v", room, err)
			}
		}
		if op, speed, err := parsePushAll(q); err != nil {
			checkParamError(t, err, "operation", "speed")
		} else {
			checkOp(t, op)
			if speed < 0 || speed > MaxSpeed {
				t.Fatalf("speed %d accepted", speed)
			}
		}
		if typ, limit, err := parseOnlineTop(q); err != nil {
			checkParamError(t, err, "type", "limit")
		} else if typ == "" || strings.Contains(typ, "://") || protocol.CheckRoomID(typ+"://") != nil || limit < 1 || limit > MaxTopLimit {
			t.Fatalf("online top accepted type %q, limit %d", typ, limit)
		}
		if typ, rooms, err := parseOnlineRoom(q); err != nil {
			checkParamError(t, err, "type", "rooms")
		} else {
			if typ == "" || strings.Contains(typ, "://") {
				t.Fatalf("online room accepted type %q", typ)
			}
			checkStrings(t, "rooms", rooms)
			for _, r := range rooms {
				if err := protocol.CheckRoomID(typ + "://" + r); err != nil {
					t.Fatalf("online room accepted %q of type %q: %v", r, typ, err)
				}
			}
		}
		if platform, err := parseNodes(q); err != nil {
			checkParamError(t, err, "platform")
		} else if platform != q.Get("platform") {
			t.Fatalf("platform %q, want %q", platform, q.Get("platform"))
		}
	})
}

// fuzzLimit is FuzzQuery's bound on keys and mids.
const fuzzLimit = 5

func checkOp(t *testing.T, op int32) {
	t.Helper()
	if op <= 0 {
		t.Fatalf("operation %d accepted", op)
	}
}

func checkStrings(t *testing.T, name string, list []string) {
	t.Helper()
	if len(list) == 0 {
		t.Fatalf("no %s accepted", name)
	}
	for i, s := range list {
		if s == "" || strings.Contains(s, ",") || slices.Contains(list[:i], s) {
			t.Fatalf("%s %q: element %d %q is empty, holds a comma or repeats", name, list, i, s)
		}
	}
}

// checkParamError checks that err is a paramError naming one of params,
// with a reason.
func checkParamError(t *testing.T, err error, params ...string) {
	t.Helper()
	var pe *paramError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a paramError", err, err)
	}
	if !slices.Contains(params, pe.param) || pe.why == "" || err.Error() != pe.param+": "+pe.why {
		t.Fatalf("error %q: param %q not one of %q, or no reason", err, pe.param, params)
	}
}
