package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckKey(t *testing.T) {
	tests := []struct {
		name string
		key  string
		ok   bool
	}{
		{name: "uuid", key: "0f8fad5b-d9cb-469f-a165-70867728950e", ok: true},
		{name: "charset", key: "user:1001@phone_2.a~b-c", ok: true},
		{name: "longest", key: strings.Repeat("k", MaxKeyLen), ok: true},
		{name: "empty", key: ""},
		{name: "too long", key: strings.Repeat("k", MaxKeyLen+1)},
		{name: "comma splits the push API's keys", key: "a,b"},
		{name: "plus is a space in a query", key: "a+b"},
		{name: "slash", key: "a/b"},
		{name: "space", key: "a b"},
		{name: "quote", key: `a"b`},
		{name: "brace", key: "a{b}"},
		{name: "newline", key: "a\n"},
		{name: "non-ascii", key: "键"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckKey(tt.key)
			if tt.ok != (err == nil) {
				t.Fatalf("CheckKey(%q) = %v, want ok=%v", tt.key, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrKey) {
				t.Fatalf("error %v does not wrap ErrKey", err)
			}
		})
	}
}

// FuzzKey: CheckKey accepts exactly 1..MaxKeyLen bytes of the key charset,
// a subset of the room id charset.
func FuzzKey(f *testing.F) {
	for _, s := range []string{"0f8fad5b-d9cb-469f-a165-70867728950e", "", "a,b", strings.Repeat("k", 200), "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := CheckKey(key)
		if err != nil {
			if !errors.Is(err, ErrKey) {
				t.Fatalf("error %v does not wrap ErrKey", err)
			}
			return
		}
		if len(key) == 0 || len(key) > MaxKeyLen {
			t.Fatalf("accepted key of %d bytes", len(key))
		}
		for i := 0; i < len(key); i++ {
			if !keyByte[key[i]] || !roomByte[key[i]] || key[i] == ',' || key[i] == '+' {
				t.Fatalf("accepted byte 0x%02x", key[i])
			}
		}
	})
}
