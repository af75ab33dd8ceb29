package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckRoomID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{name: "goim v2 room", id: "live://1000", ok: true},
		{name: "uri characters", id: "chat://a-b_c.d~e:f/g@h!i$j&k'l(m)n*o+p,q;r=s%20", ok: true},
		{name: "longest", id: strings.Repeat("r", MaxRoomIDLen), ok: true},
		{name: "empty", id: ""},
		{name: "too long", id: strings.Repeat("r", MaxRoomIDLen+1)},
		{name: "space", id: "live://a b"},
		{name: "newline", id: "live://a\nb"},
		{name: "nul", id: "live://\x00"},
		{name: "quote", id: `live://"x"`},
		{name: "angle", id: "live://<script>"},
		{name: "backslash", id: `live://a\b`},
		{name: "query", id: "live://a?b"},
		{name: "fragment", id: "live://a#b"},
		{name: "non-ascii", id: "live://房间"},
		{name: "del", id: "live://\x7f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRoomID(tt.id)
			if tt.ok != (err == nil) {
				t.Fatalf("CheckRoomID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrRoomID) {
				t.Fatalf("error %v does not wrap ErrRoomID", err)
			}
		})
	}
}

func TestRoomAllowed(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		id       string
		want     bool
	}{
		{name: "exact", patterns: []string{"live://1"}, id: "live://1", want: true},
		{name: "exact is not a prefix", patterns: []string{"live://1"}, id: "live://10", want: false},
		{name: "other room", patterns: []string{"live://1"}, id: "live://vip", want: false},
		{name: "prefix", patterns: []string{"live://*"}, id: "live://vip", want: true},
		{name: "prefix other type", patterns: []string{"live://*"}, id: "chat://vip", want: false},
		{name: "prefix needs the whole prefix", patterns: []string{"live://*"}, id: "live:/", want: false},
		{name: "prefix matches itself empty suffix", patterns: []string{"live://*"}, id: "live://", want: true},
		{name: "star alone", patterns: []string{"*"}, id: "anything", want: true},
		{name: "inner star literal", patterns: []string{"live://*/x"}, id: "live://a/x", want: false},
		{name: "inner star exact", patterns: []string{"live://*/x"}, id: "live://*/x", want: true},
		{name: "second pattern", patterns: []string{"a://1", "b://*"}, id: "b://2", want: true},
		{name: "no patterns", patterns: nil, id: "live://1", want: false},
		{name: "empty id", patterns: []string{"*"}, id: "", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RoomAllowed(tt.patterns, tt.id); got != tt.want {
				t.Fatalf("RoomAllowed(%q, %q) = %v, want %v", tt.patterns, tt.id, got, tt.want)
			}
		})
	}
}

func TestCheckRoomPattern(t *testing.T) {
	for _, p := range []string{"*", "live://*", "live://1"} {
		if err := CheckRoomPattern(p); err != nil {
			t.Errorf("CheckRoomPattern(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"", "live:// *", strings.Repeat("x", MaxRoomIDLen+1)} {
		if err := CheckRoomPattern(p); !errors.Is(err, ErrRoomID) {
			t.Errorf("CheckRoomPattern(%q) = %v, want ErrRoomID", p, err)
		}
	}
}

// FuzzRoomID checks that CheckRoomID accepts exactly the bounded charset and
// that RoomAllowed never matches an id a pattern list could not name.
func FuzzRoomID(f *testing.F) {
	for _, s := range []string{"live://1000", "", "a b", "live://*", "*", strings.Repeat("x", 200), "\xff"} {
		f.Add(s, "live://*")
	}
	f.Fuzz(func(t *testing.T, id, pattern string) {
		err := CheckRoomID(id)
		if err == nil {
			if len(id) == 0 || len(id) > MaxRoomIDLen {
				t.Fatalf("accepted id of %d bytes", len(id))
			}
			for i := 0; i < len(id); i++ {
				if !roomByte[id[i]] {
					t.Fatalf("accepted byte 0x%02x", id[i])
				}
			}
		} else if !errors.Is(err, ErrRoomID) {
			t.Fatalf("error %v does not wrap ErrRoomID", err)
		}
		if RoomAllowed([]string{pattern}, id) {
			prefix, star := strings.CutSuffix(pattern, "*")
			if id == "" || (!star && id != pattern) || (star && !strings.HasPrefix(id, prefix)) {
				t.Fatalf("RoomAllowed([%q], %q) = true", pattern, id)
			}
		}
	})
}
