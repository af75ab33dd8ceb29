package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const testMsgID = "0123456789abcdef0123456789abcdef"

// goldenEnvelope is an op-18 body: stream user, msg id testMsgID, epoch
// 0x1122334455667788, offset 5, carrying op 1000 with body "hi".
const goldenEnvelope = "01 00" +
	" 0123456789abcdef0123456789abcdef" +
	" 1122334455667788" +
	" 0000000000000005" +
	" 00000012 0010 0001 000003e8 00000000 6869"

func TestEnvelopeGolden(t *testing.T) {
	want := unhex(t, goldenEnvelope)
	pos := &Position{Stream: StreamUser, Epoch: 0x1122334455667788, Offset: 5}
	got := AppendEnvelope(nil, testMsgID, pos, 1000, []byte("hi"))
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendEnvelope\n got %x\nwant %x", got, want)
	}
	e, err := DecodeEnvelope(want)
	if err != nil {
		t.Fatal(err)
	}
	if e.Stream != StreamUser || e.ID() != testMsgID || e.Epoch != 0x1122334455667788 || e.Offset != 5 || e.Op != 1000 || string(e.Body) != "hi" {
		t.Fatalf("decoded %+v", e)
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	cases := []struct {
		name  string
		id    string
		pos   *Position
		op    int32
		body  []byte
		wantS int32
		wantI string
	}{
		{name: "user stream", id: testMsgID, pos: &Position{Stream: StreamUser, Epoch: 1, Offset: 1}, op: 1000, body: []byte(`{"a":1}`), wantS: StreamUser, wantI: testMsgID},
		{name: "key stream, max values", id: strings.Repeat("f", 32), pos: &Position{Stream: StreamKey, Epoch: ^uint64(0), Offset: ^uint64(0)}, op: -1, body: []byte("x"), wantS: StreamKey, wantI: strings.Repeat("f", 32)},
		{name: "room stream, empty body", id: testMsgID, pos: &Position{Stream: StreamRoom, Epoch: 7, Offset: 9}, op: 5, wantS: StreamRoom, wantI: testMsgID},
		{name: "no stream (nil position)", id: testMsgID, op: 1000, body: []byte("b"), wantS: StreamNone, wantI: testMsgID},
		{name: "bad id written as zeros", id: "not-an-id", pos: &Position{Stream: StreamUser, Epoch: 1, Offset: 2}, op: 1000, wantS: StreamUser, wantI: strings.Repeat("0", 32)},
		{name: "uppercase id accepted", id: strings.ToUpper(testMsgID), op: 1000, wantS: StreamNone, wantI: testMsgID},
		{name: "stream out of byte range written as none", id: testMsgID, pos: &Position{Stream: 256, Epoch: 3, Offset: 4}, op: 1000, wantS: StreamNone, wantI: testMsgID},
		{name: "negative stream written as none", id: testMsgID, pos: &Position{Stream: -1}, op: 1000, wantS: StreamNone, wantI: testMsgID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("prefix")
			b := AppendEnvelope(bytes.Clone(prefix), tc.id, tc.pos, tc.op, tc.body)
			if !bytes.HasPrefix(b, prefix) {
				t.Fatal("dst prefix overwritten")
			}
			b = b[len(prefix):]
			if len(b) != EnvelopeHeaderSize+HeaderSize+len(tc.body) {
				t.Fatalf("length %d", len(b))
			}
			e, err := DecodeEnvelope(b)
			if err != nil {
				t.Fatal(err)
			}
			if e.Stream != tc.wantS || e.ID() != tc.wantI || e.Epoch != tc.pos.GetEpoch() || e.Offset != tc.pos.GetOffset() || e.Op != tc.op || !bytes.Equal(e.Body, tc.body) {
				t.Fatalf("decoded %+v", e)
			}
		})
	}
}

func TestDecodeEnvelopeErrors(t *testing.T) {
	good := unhex(t, goldenEnvelope)
	withInner := func(inner []byte) []byte {
		return append(bytes.Clone(good[:EnvelopeHeaderSize]), inner...)
	}
	cases := []struct {
		name    string
		b       []byte
		wantErr error // besides ErrEnvelope
		wantMsg string
	}{
		{name: "empty", b: nil, wantMsg: "envelope of 0 bytes"},
		{name: "header only", b: good[:EnvelopeHeaderSize], wantMsg: "at least 50"},
		{name: "one byte short of an empty frame", b: good[:EnvelopeHeaderSize+HeaderSize-1], wantMsg: "envelope of 49 bytes"},
		{name: "stream 4", b: append([]byte{4}, good[1:]...), wantMsg: "stream 4"},
		{name: "stream 255", b: append([]byte{255}, good[1:]...), wantMsg: "stream 255"},
		{name: "inner headerLen", b: withInner(header(16, 17, 1000)), wantErr: ErrHeaderLen},
		{name: "inner packLen below header", b: withInner(header(15, 16, 1000)), wantErr: ErrPackLen},
		{name: "inner packLen huge", b: withInner(header(0xffffffff, 16, 1000)), wantErr: ErrPackLen},
		{name: "inner body truncated", b: good[:len(good)-1], wantErr: ErrTruncated},
		{name: "inner packLen at the limit, body missing", b: withInner(header(uint32(MaxPackLen), 16, 1000)), wantErr: ErrTruncated},
		{name: "byte after the inner frame", b: append(bytes.Clone(good), 0), wantMsg: "1 bytes after the inner frame"},
		{name: "a second inner frame", b: append(bytes.Clone(good), good[EnvelopeHeaderSize:]...), wantMsg: "18 bytes after the inner frame"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := DecodeEnvelope(tc.b)
			if !errors.Is(err, ErrEnvelope) {
				t.Fatalf("err %v, want ErrEnvelope", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if tc.wantMsg != "" && !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err %q, want %q in it", err, tc.wantMsg)
			}
			if !reflect.DeepEqual(e, Envelope{}) {
				t.Fatalf("envelope %+v on error", e)
			}
		})
	}
}

func TestDecodeEnvelopeFlagsIgnored(t *testing.T) {
	b := unhex(t, goldenEnvelope)
	b[1] = 0xff
	if _, err := DecodeEnvelope(b); err != nil {
		t.Fatalf("reserved flags: %v", err)
	}
}

func TestParseMsgID(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   string
		ok   bool
	}{
		{name: "lowercase", id: testMsgID, ok: true},
		{name: "uppercase", id: strings.ToUpper(testMsgID), ok: true},
		{name: "empty", id: ""},
		{name: "31 digits", id: testMsgID[:31]},
		{name: "33 digits", id: testMsgID + "0"},
		{name: "not hex", id: "g" + testMsgID[1:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, ok := ParseMsgID(tc.id)
			if ok != tc.ok {
				t.Fatalf("ok %v", ok)
			}
			if !ok && b != [MsgIDSize]byte{} {
				t.Fatalf("bytes %x on failure", b)
			}
		})
	}
}

// ackIDs returns n distinct push ids.
func ackIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		var b [MsgIDSize]byte
		b[0], b[15] = byte(i>>8), byte(i)
		e := Envelope{MsgID: b}
		ids[i] = e.ID()
	}
	return ids
}

func TestParseAck(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int // ids in the body; -1: use body
		body []byte
		ok   bool
	}{
		{name: "0 ids", n: 0},
		{name: "1 id", n: 1, ok: true},
		{name: "64 ids", n: MaxAckIDs, ok: true},
		{name: "65 ids", n: MaxAckIDs + 1},
		{name: "15 bytes", n: -1, body: make([]byte, 15)},
		{name: "17 bytes", n: -1, body: make([]byte, 17)},
		{name: "1023 bytes", n: -1, body: make([]byte, 1023)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, ids := tc.body, []string(nil)
			if tc.n >= 0 {
				ids = ackIDs(tc.n)
				var n int
				body, n = AppendAck(nil, ids...)
				if n != tc.n || len(body) != tc.n*MsgIDSize {
					t.Fatalf("AppendAck wrote %d ids, %d bytes", n, len(body))
				}
			}
			got, err := ParseAck(body)
			if !tc.ok {
				if !errors.Is(err, ErrEnvelope) || got != nil {
					t.Fatalf("ParseAck: %v, %v", got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, ids) {
				t.Fatalf("ParseAck: %v, %v", got, err)
			}
		})
	}
}

func TestAppendAckSkipsBadIDs(t *testing.T) {
	ids := ackIDs(2)
	body, n := AppendAck([]byte("x"), "", ids[0], "zz", strings.ToUpper(ids[1]), ids[1][:31], ids[1]+"0")
	if n != 2 || len(body) != 1+2*MsgIDSize || body[0] != 'x' {
		t.Fatalf("n %d, body %x", n, body)
	}
	got, err := ParseAck(body[1:])
	if err != nil || !reflect.DeepEqual(got, ids) {
		t.Fatalf("ParseAck: %v, %v", got, err)
	}
	if _, n := AppendAck(nil, "bad"); n != 0 {
		t.Fatalf("n %d for no good id", n)
	}
}

func TestEpoch(t *testing.T) {
	for _, tc := range []struct {
		epoch uint64
		text  string
	}{
		{epoch: 0, text: "0000000000000000"},
		{epoch: 1, text: "0000000000000001"},
		{epoch: 0x1122334455667788, text: "1122334455667788"},
		{epoch: ^uint64(0), text: "ffffffffffffffff"},
	} {
		if got := FormatEpoch(tc.epoch); got != tc.text {
			t.Errorf("FormatEpoch(%#x) = %q", tc.epoch, got)
		}
		if got, err := ParseEpoch(tc.text); err != nil || got != tc.epoch {
			t.Errorf("ParseEpoch(%q) = %#x, %v", tc.text, got, err)
		}
	}
	for _, s := range []string{"1", "A", "00ff"} {
		if _, err := ParseEpoch(s); err != nil {
			t.Errorf("ParseEpoch(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "10000000000000000", "g", "-1", "+1", "0x1", " 1", "1 "} {
		if _, err := ParseEpoch(s); err == nil {
			t.Errorf("ParseEpoch(%q) accepted", s)
		}
	}
}

func TestAuthBodySince(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		want    []*Position
		wantErr string
	}{
		{name: "no since", body: `{"reliable":true}`},
		{name: "null since", body: `{"reliable":true,"since":null}`},
		{name: "empty since", body: `{"since":{}}`},
		{
			name: "all three",
			body: `{"reliable":true,"since":{"room":{"epoch":"3","offset":30},"user":{"epoch":"00000000000000ff","offset":1},"key":{"epoch":"ffffffffffffffff","offset":18446744073709551615}}}`,
			want: []*Position{
				{Stream: StreamUser, Epoch: 0xff, Offset: 1},
				{Stream: StreamKey, Epoch: ^uint64(0), Offset: ^uint64(0)},
				{Stream: StreamRoom, Epoch: 3, Offset: 30},
			},
		},
		{name: "key only", body: `{"since":{"key":{"epoch":"a","offset":2}}}`, want: []*Position{{Stream: StreamKey, Epoch: 10, Offset: 2}}},
		{name: "bad user epoch", body: `{"since":{"user":{"epoch":"xyz","offset":1}}}`, wantErr: "since.user: epoch"},
		{name: "empty key epoch", body: `{"since":{"key":{"epoch":"","offset":1}}}`, wantErr: "since.key: epoch"},
		{name: "17-digit room epoch", body: `{"since":{"room":{"epoch":"10000000000000000","offset":1}}}`, wantErr: "since.room: epoch"},
		{name: "epoch as number", body: `{"since":{"user":{"epoch":5,"offset":1}}}`, wantErr: `field "since.user.epoch"`},
		{name: "negative offset", body: `{"since":{"user":{"epoch":"1","offset":-1}}}`, wantErr: `since.user.offset`},
		{name: "since as array", body: `{"since":[]}`, wantErr: `field "since"`},
		{name: "reliable as string", body: `{"reliable":"yes"}`, wantErr: `field "reliable"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAuthBody([]byte(tc.body))
			if tc.wantErr != "" {
				if !errors.Is(err, ErrAuthBody) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := a.Since.Positions()
			if len(got) != len(tc.want) {
				t.Fatalf("positions %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].Stream != tc.want[i].Stream || got[i].Epoch != tc.want[i].Epoch || got[i].Offset != tc.want[i].Offset {
					t.Fatalf("position %d: %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
	if (*Since)(nil).Positions() != nil {
		t.Fatal("nil Since has positions")
	}
}

func TestStreamName(t *testing.T) {
	for s, name := range map[int32]string{StreamNone: "", StreamUser: "user", StreamKey: "key", StreamRoom: "room", 4: "", -1: ""} {
		if got := StreamName(s); got != name {
			t.Errorf("StreamName(%d) = %q", s, got)
		}
		if name != "" && StreamByName(name) != s {
			t.Errorf("StreamByName(%q) = %d", name, StreamByName(name))
		}
	}
	for _, n := range []string{"", "none", "User", "rooms"} {
		if StreamByName(n) != StreamNone {
			t.Errorf("StreamByName(%q) = %d", n, StreamByName(n))
		}
	}
}

func FuzzEnvelope(f *testing.F) {
	good := unhex(f, goldenEnvelope)
	f.Add(good)
	f.Add(AppendEnvelope(nil, testMsgID, nil, 1000, nil))
	f.Add(AppendEnvelope(nil, testMsgID, &Position{Stream: StreamRoom, Epoch: 1, Offset: 2}, 9, []byte("body")))
	f.Add(good[:EnvelopeHeaderSize+HeaderSize-1])
	f.Add(append(bytes.Clone(good), 0))
	f.Add(append([]byte{4}, good[1:]...))
	f.Add(append(bytes.Clone(good[:EnvelopeHeaderSize]), header(16, 17, 1000)...))
	f.Add(append(bytes.Clone(good[:EnvelopeHeaderSize]), header(0xffffffff, 16, 1000)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEnvelope(b)
		if err != nil {
			if !errors.Is(err, ErrEnvelope) {
				t.Fatalf("error %v does not wrap ErrEnvelope", err)
			}
			return
		}
		if e.Stream < StreamNone || e.Stream > StreamRoom {
			t.Fatalf("stream %d accepted", e.Stream)
		}
		again := AppendEnvelope(nil, e.ID(), &Position{Stream: e.Stream, Epoch: e.Epoch, Offset: e.Offset}, e.Op, e.Body)
		e2, err := DecodeEnvelope(again)
		if err != nil {
			t.Fatalf("re-encoded envelope: %v", err)
		}
		if !reflect.DeepEqual(e, e2) && !(len(e.Body) == 0 && len(e2.Body) == 0 && e.Stream == e2.Stream && e.MsgID == e2.MsgID && e.Epoch == e2.Epoch && e.Offset == e2.Offset && e.Op == e2.Op) {
			t.Fatalf("round trip\n got %+v\nwant %+v", e2, e)
		}
		// Apart from the reserved flags, the inner frame's version and seq,
		// the bytes are those decoded.
		if len(again) != len(b) || !bytes.Equal(again[:1], b[:1]) || !bytes.Equal(again[2:EnvelopeHeaderSize], b[2:EnvelopeHeaderSize]) {
			t.Fatalf("re-encoded %x from %x", again, b)
		}
	})
}
