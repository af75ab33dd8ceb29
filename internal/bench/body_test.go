package bench

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestBodyRoundTrip(t *testing.T) {
	cases := []struct {
		name   string
		run    string
		stream string
		seq    uint64
		sent   int64
		size   int
		want   string // exact body, or "" to check the length only
	}{
		{name: "no padding", run: "r1", stream: "room:live://1000", seq: 1, sent: 1700000000123456789, size: 0,
			want: "gb1 r1 room:live://1000 1 1700000000123456789"},
		{name: "size below the natural length", run: "r1", stream: "mid:7", seq: 42, sent: 5, size: 10,
			want: "gb1 r1 mid:7 42 5"},
		{name: "padded to 32", run: "r1", stream: "mid:7", seq: 42, sent: 5, size: 32,
			want: "gb1 r1 mid:7 42 5 xxxxxxxxxxxxxx"},
		{name: "one byte over: no room for a padding field", run: "r1", stream: "mid:7", seq: 42, sent: 5, size: 18,
			want: "gb1 r1 mid:7 42 5"},
		{name: "padded to two more", run: "r1", stream: "mid:7", seq: 42, sent: 5, size: 19,
			want: "gb1 r1 mid:7 42 5 x"},
		{name: "max size", run: "run-1.a_b", stream: "key:bk-99", seq: 1<<64 - 1, sent: 1<<63 - 1, size: MaxBodySize},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := AppendBody([]byte("prefix"), tc.run, tc.stream, tc.seq, tc.sent, tc.size)
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatalf("prefix lost: %q", b)
			}
			b = b[len("prefix"):]
			if tc.want != "" && string(b) != tc.want {
				t.Fatalf("body %q, want %q", b, tc.want)
			}
			if tc.want == "" && len(b) != tc.size {
				t.Fatalf("body of %d bytes, want %d", len(b), tc.size)
			}
			got, err := ParseBody(b)
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Run) != tc.run || string(got.Stream) != tc.stream || got.Seq != tc.seq || got.Sent != tc.sent {
				t.Fatalf("parsed %q %q %d %d", got.Run, got.Stream, got.Seq, got.Sent)
			}
		})
	}
}

func TestParseBodyRejects(t *testing.T) {
	cases := []struct {
		name     string
		body     string
		notBench bool // errNotBench rather than errBadBody
	}{
		{name: "empty", body: "", notBench: true},
		{name: "someone else's push", body: `{"a":1}`, notBench: true},
		{name: "magic without space", body: "gb1", notBench: true},
		{name: "other version", body: "gb2 r s 1 2", notBench: true},
		{name: "too few fields", body: "gb1 r s 1"},
		{name: "empty run", body: "gb1  s 1 2"},
		{name: "run with a bad byte", body: "gb1 r/1 s 1 2"},
		{name: "run too long", body: "gb1 " + strings.Repeat("r", MaxRunLen+1) + " s 1 2"},
		{name: "stream too long", body: "gb1 r " + strings.Repeat("s", MaxStreamLen+1) + " 1 2"},
		{name: "stream with a control byte", body: "gb1 r s\x01 1 2"},
		{name: "seq zero", body: "gb1 r s 0 2"},
		{name: "seq not a number", body: "gb1 r s 1a 2"},
		{name: "seq negative", body: "gb1 r s -1 2"},
		{name: "seq overflows uint64", body: "gb1 r s 18446744073709551616 2"},
		{name: "sent overflows int64", body: "gb1 r s 1 9223372036854775808"},
		{name: "sent empty", body: "gb1 r s 1 "},
		{name: "double space", body: "gb1 r s  1 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBody([]byte(tc.body))
			want := errBadBody
			if tc.notBench {
				want = errNotBench
			}
			if !errors.Is(err, want) {
				t.Fatalf("error %v, want %v", err, want)
			}
		})
	}
}

func TestParseBodyAllocs(t *testing.T) {
	b := AppendBody(nil, "r1", "room:live://1000", 9, 123, 64)
	foreign := []byte(`{"hello":"world"}`)
	if n := testing.AllocsPerRun(100, func() {
		_, _ = ParseBody(b)
		_, _ = ParseBody(foreign)
	}); n != 0 {
		t.Fatalf("%v allocations per parse", n)
	}
}

// FuzzParseBody: no input panics; whatever parses re-encodes to a body
// that parses to the same fields; every valid body round-trips.
func FuzzParseBody(f *testing.F) {
	f.Add([]byte("gb1 r1 room:live://1000 1 1700000000123456789"))
	f.Add(AppendBody(nil, "r1", "mid:7", 42, 5, 64))
	f.Add([]byte("gb1 r s 18446744073709551615 9223372036854775807 xxx"))
	f.Add([]byte("gb1 r s 1 2 "))
	f.Add([]byte(`{"a":1}`))
	f.Add([]byte("gb1 "))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseBody(b)
		if err != nil {
			return
		}
		if !validRun(got.Run) || !validStream(got.Stream) || got.Seq == 0 || got.Sent < 0 {
			t.Fatalf("accepted invalid fields %q %q %d %d", got.Run, got.Stream, got.Seq, got.Sent)
		}
		again, err := ParseBody(AppendBody(nil, string(got.Run), string(got.Stream), got.Seq, got.Sent, len(b)))
		if err != nil {
			t.Fatalf("re-encoded body does not parse: %v", err)
		}
		if !bytes.Equal(again.Run, got.Run) || !bytes.Equal(again.Stream, got.Stream) || again.Seq != got.Seq || again.Sent != got.Sent {
			t.Fatalf("round trip changed %+v to %+v", got, again)
		}
	})
}
