package client

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/goim/goim/api/protocol"
)

// TestReliablePositions: duplicates, new epochs, op-20 reports (recovered
// or not, same or new epoch), a room change and the since they give.
func TestReliablePositions(t *testing.T) {
	r := newReliable(&protocol.Since{User: &protocol.SincePos{Epoch: "00000000000000AA", Offset: 5}}, true)
	steps := []struct {
		name   string
		do     func() bool // accept's answer, or true
		want   bool
		since  string
		dupsIs uint64
	}{
		{name: "start", do: func() bool { return true }, want: true, since: `{"user":{"epoch":"00000000000000aa","offset":5}}`},
		{name: "at the position", do: func() bool { return r.accept(protocol.StreamUser, 0xaa, 5) }, since: `{"user":{"epoch":"00000000000000aa","offset":5}}`, dupsIs: 1},
		{name: "below", do: func() bool { return r.accept(protocol.StreamUser, 0xaa, 1) }, since: `{"user":{"epoch":"00000000000000aa","offset":5}}`, dupsIs: 2},
		{name: "next", do: func() bool { return r.accept(protocol.StreamUser, 0xaa, 6) }, want: true, since: `{"user":{"epoch":"00000000000000aa","offset":6}}`, dupsIs: 2},
		{name: "a gap is accepted", do: func() bool { return r.accept(protocol.StreamUser, 0xaa, 9) }, want: true, since: `{"user":{"epoch":"00000000000000aa","offset":9}}`, dupsIs: 2},
		{name: "no stream", do: func() bool { return r.accept(protocol.StreamNone, 0, 0) }, want: true, since: `{"user":{"epoch":"00000000000000aa","offset":9}}`, dupsIs: 2},
		{name: "unknown stream", do: func() bool { return r.accept(7, 1, 1) }, want: true, since: `{"user":{"epoch":"00000000000000aa","offset":9}}`, dupsIs: 2},
		{name: "new epoch without a report", do: func() bool { return r.accept(protocol.StreamUser, 0xbb, 3) }, want: true, since: `{"user":{"epoch":"00000000000000bb","offset":3}}`, dupsIs: 2},
		{name: "room, first", do: func() bool { return r.accept(protocol.StreamRoom, 1, 40) }, want: true, since: `{"user":{"epoch":"00000000000000bb","offset":3},"room":{"epoch":"0000000000000001","offset":40}}`, dupsIs: 2},
		{name: "report recovered: no move", do: func() bool {
			r.report([]StreamState{{Stream: protocol.StreamUser, Epoch: 0xbb, Offset: 10, Recovered: true}})
			return true
		}, want: true, since: `{"user":{"epoch":"00000000000000bb","offset":3},"room":{"epoch":"0000000000000001","offset":40}}`, dupsIs: 2},
		{name: "recovered messages follow", do: func() bool { return r.accept(protocol.StreamUser, 0xbb, 4) }, want: true, since: `{"user":{"epoch":"00000000000000bb","offset":4},"room":{"epoch":"0000000000000001","offset":40}}`, dupsIs: 2},
		{name: "report not recovered, same epoch: floor", do: func() bool {
			r.report([]StreamState{{Stream: protocol.StreamUser, Epoch: 0xbb, Offset: 20}})
			return true
		}, want: true, since: `{"user":{"epoch":"00000000000000bb","offset":20},"room":{"epoch":"0000000000000001","offset":40}}`, dupsIs: 2},
		{name: "below the floor still delivered", do: func() bool { return r.accept(protocol.StreamUser, 0xbb, 15) }, want: true, since: `{"user":{"epoch":"00000000000000bb","offset":20},"room":{"epoch":"0000000000000001","offset":40}}`, dupsIs: 2},
		{name: "report not recovered, new epoch: from 0", do: func() bool {
			r.report([]StreamState{{Stream: protocol.StreamKey, Epoch: 0xcc, Offset: 2}})
			return r.accept(protocol.StreamKey, 0xcc, 1)
		}, want: true, since: `{"user":{"epoch":"00000000000000bb","offset":20},"key":{"epoch":"00000000000000cc","offset":2},"room":{"epoch":"0000000000000001","offset":40}}`, dupsIs: 2},
		{name: "room change forgets the room", do: func() bool { r.forgetRoom(); return true }, want: true, since: `{"user":{"epoch":"00000000000000bb","offset":20},"key":{"epoch":"00000000000000cc","offset":2}}`, dupsIs: 2},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("%s: %v", s.name, got)
		}
		b, _ := json.Marshal(r.since())
		if string(b) != s.since || r.dups != s.dupsIs {
			t.Fatalf("%s: since %s, %d duplicates; want %s, %d", s.name, b, r.dups, s.since, s.dupsIs)
		}
	}
	if newReliable(nil, true).since() != nil {
		t.Fatal("since without positions")
	}
}

// TestReliableAckQueue: the queue keeps the newest maxPendingAcks ids,
// take hands out MaxAckIDs at a time, putBack restores the order.
func TestReliableAckQueue(t *testing.T) {
	r := newReliable(nil, true)
	ids := make([]string, maxPendingAcks+10)
	for i := range ids {
		ids[i] = fmt.Sprintf("%032x", i)
	}
	r.queue(ids[:maxPendingAcks]...)
	if r.pending() != maxPendingAcks {
		t.Fatalf("%d pending", r.pending())
	}
	r.queue(ids[maxPendingAcks:]...)
	if r.pending() != maxPendingAcks || r.acks[0] != ids[10] {
		t.Fatalf("%d pending, first %s", r.pending(), r.acks[0])
	}
	got := r.take()
	if !slices.Equal(got, ids[10:10+protocol.MaxAckIDs]) {
		t.Fatalf("take %d ids from %s", len(got), got[0])
	}
	r.putBack(got)
	if r.pending() != maxPendingAcks || r.acks[0] != ids[10] {
		t.Fatalf("after putBack: %d pending, first %s", r.pending(), r.acks[0])
	}
	for r.pending() > 0 {
		if n := len(r.take()); n == 0 || n > protocol.MaxAckIDs {
			t.Fatalf("take %d", n)
		}
	}
	if got := r.take(); len(got) != 0 {
		t.Fatal("take from an empty queue")
	}
}

// TestParseStreams: op-20 bodies, good and malformed.
func TestParseStreams(t *testing.T) {
	got, err := parseStreams([]byte(`{"streams":[{"stream":"user","epoch":"00000000000000ff","offset":3,"recovered":true},{"stream":"x","epoch":"zz"},{"stream":"room","epoch":"1","offset":0,"recovered":false}]}`))
	want := []StreamState{{Stream: protocol.StreamUser, Epoch: 0xff, Offset: 3, Recovered: true}, {Stream: protocol.StreamRoom, Epoch: 1}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("parseStreams: %v, %v", got, err)
	}
	for _, body := range []string{``, `[]`, `{"streams":{}}`, `{"streams":[{"stream":"user","epoch":"xyz"}]}`,
		`{"streams":[{"stream":"key","epoch":""}]}`, `{"streams":[{"stream":"user","epoch":"1","offset":-1}]}`} {
		if _, err := parseStreams([]byte(body)); err == nil || !strings.Contains(err.Error(), "op-20 body") {
			t.Errorf("%q: %v", body, err)
		}
	}
}
