package protocol

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

// unhex decodes space-separated hex as written in docs/protocol.md.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// authBody83 is an 83-byte auth body, the size of goim v2's documented example.
const authBody83 = `{"mid":1234, "room_id":"live://1000", "platform":"web", "accepts":[1000,1001,1002]}`

// goldenFrames are the worked examples of goim v2's protocol (also in docs/protocol.md).
var goldenFrames = []struct {
	name  string
	proto *Proto
	hex   string // the whole frame
}{
	{
		name:  "auth",
		proto: &Proto{Ver: 1, Op: OpAuth, Seq: 1, Body: []byte(authBody83)},
		hex:   "00 00 00 63 00 10 00 01 00 00 00 07 00 00 00 01" + hex.EncodeToString([]byte(authBody83)),
	},
	{
		name:  "auth reply",
		proto: &Proto{Ver: 1, Op: OpAuthReply, Seq: 1},
		hex:   "00 00 00 10 00 10 00 01 00 00 00 08 00 00 00 01",
	},
	{
		name:  "heartbeat",
		proto: &Proto{Ver: 1, Op: OpHeartbeat, Seq: 5},
		hex:   "00 00 00 10 00 10 00 01 00 00 00 02 00 00 00 05",
	},
	{
		name:  "heartbeat reply online 42",
		proto: &Proto{Ver: 1, Op: OpHeartbeatReply, Seq: 5, Body: []byte{0, 0, 0, 42}},
		hex:   "00 00 00 14 00 10 00 01 00 00 00 03 00 00 00 05 00 00 00 2a",
	},
	{
		name:  "push op 1000",
		proto: &Proto{Ver: 1, Op: 1000, Body: []byte(`{"a":1}`)},
		hex:   "00 00 00 17 00 10 00 01 00 00 03 e8 00 00 00 00 7b 22 61 22 3a 31 7d",
	},
}

func sameProto(t *testing.T, got *Proto, want *Proto) {
	t.Helper()
	if got.Ver != want.Ver || got.Op != want.Op || got.Seq != want.Seq || !bytes.Equal(got.Body, want.Body) {
		t.Fatalf("decoded ver=%d op=%d seq=%d body=%q, want ver=%d op=%d seq=%d body=%q",
			got.Ver, got.Op, got.Seq, got.Body, want.Ver, want.Op, want.Seq, want.Body)
	}
}

func TestGoldenFrames(t *testing.T) {
	for _, tc := range goldenFrames {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.hex)
			if got := tc.proto.AppendTCP(nil); !bytes.Equal(got, want) {
				t.Fatalf("AppendTCP\n got % x\nwant % x", got, want)
			}
			if got := tc.proto.AppendWS(nil); !bytes.Equal(got, want) {
				t.Fatalf("AppendWS\n got % x\nwant % x", got, want)
			}
			var buf bytes.Buffer
			w := bufio.NewWriter(&buf)
			if err := tc.proto.WriteTCP(w); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("WriteTCP\n got % x\nwant % x", buf.Bytes(), want)
			}

			var p Proto
			if err := p.ReadTCP(bufio.NewReader(bytes.NewReader(want)), MaxBodySize); err != nil {
				t.Fatalf("ReadTCP: %v", err)
			}
			sameProto(t, &p, tc.proto)
			var q Proto
			if err := q.DecodeWS(want, MaxBodySize); err != nil {
				t.Fatalf("DecodeWS: %v", err)
			}
			sameProto(t, &q, tc.proto)
		})
	}
}

// TestGoldenRawBatch is goim v2's documented example: two room messages as one
// op-9 carrier, 62 bytes on WebSocket, the two bare frames on TCP.
func TestGoldenRawBatch(t *testing.T) {
	push1 := unhex(t, "00 00 00 17 00 10 00 01 00 00 03 e8 00 00 00 00 7b 22 61 22 3a 31 7d")
	push2 := unhex(t, "00 00 00 17 00 10 00 01 00 00 03 e8 00 00 00 00 7b 22 62 22 3a 32 7d")
	wsWant := append(unhex(t, "00 00 00 3e 00 10 00 01 00 00 00 09 00 00 00 00"), append(push1, push2...)...)
	tcpWant := append(append([]byte(nil), push1...), push2...)

	var b Batch
	for _, body := range []string{`{"a":1}`, `{"b":2}`} {
		if err := b.Append(1000, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if b.Count() != 2 || b.Len() != 46 {
		t.Fatalf("Count=%d Len=%d, want 2 and 46", b.Count(), b.Len())
	}
	if !bytes.Equal(b.Frames(), tcpWant) {
		t.Fatalf("Frames\n got % x\nwant % x", b.Frames(), tcpWant)
	}
	if got := b.WSMessage(); !bytes.Equal(got, wsWant) || len(got) != 62 {
		t.Fatalf("WSMessage\n got % x\nwant % x", got, wsWant)
	}

	// The carrier job sends over gRPC encodes to the same bytes.
	carrier := Proto{Ver: Version, Op: OpRaw, Body: b.Frames()}
	if got := carrier.AppendWS(nil); !bytes.Equal(got, wsWant) {
		t.Fatalf("carrier AppendWS\n got % x\nwant % x", got, wsWant)
	}
	if got := carrier.AppendTCP(nil); !bytes.Equal(got, tcpWant) {
		t.Fatalf("carrier AppendTCP\n got % x\nwant % x", got, tcpWant)
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := carrier.WriteTCP(w); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	if !bytes.Equal(buf.Bytes(), tcpWant) {
		t.Fatalf("carrier WriteTCP\n got % x\nwant % x", buf.Bytes(), tcpWant)
	}

	// A WebSocket client decodes the carrier, then walks the inner frames.
	var outer Proto
	if err := outer.DecodeWS(wsWant, MaxPackLen); err != nil {
		t.Fatal(err)
	}
	if outer.Op != OpRaw || outer.Ver != 1 || outer.Seq != 0 {
		t.Fatalf("carrier header ver=%d op=%d seq=%d", outer.Ver, outer.Op, outer.Seq)
	}
	var bodies []string
	for rest := outer.Body; len(rest) > 0; {
		var in Proto
		n, err := in.Decode(rest, MaxPackLen)
		if err != nil {
			t.Fatal(err)
		}
		if in.Op != 1000 || in.Ver != 1 || in.Seq != 0 {
			t.Fatalf("inner header ver=%d op=%d seq=%d", in.Ver, in.Op, in.Seq)
		}
		bodies = append(bodies, string(in.Body))
		rest = rest[n:]
	}
	if strings.Join(bodies, " ") != `{"a":1} {"b":2}` {
		t.Fatalf("inner bodies %q", bodies)
	}
}

// header builds a 16-byte header with arbitrary packLen and headerLen.
func header(packLen uint32, headerLen uint16, op int32) []byte {
	b := make([]byte, HeaderSize)
	b[0], b[1], b[2], b[3] = byte(packLen>>24), byte(packLen>>16), byte(packLen>>8), byte(packLen)
	b[4], b[5] = byte(headerLen>>8), byte(headerLen)
	b[7] = 1
	b[8], b[9], b[10], b[11] = byte(op>>24), byte(op>>16), byte(op>>8), byte(op)
	return b
}

func withBody(h []byte, n int) []byte {
	return append(h, bytes.Repeat([]byte{'x'}, n)...)
}

// TestValidation runs every validation rule through the three decoders.
// A nil error means the frame is accepted.
func TestValidation(t *testing.T) {
	cases := []struct {
		name    string
		in      []byte
		maxBody int
		decode  error // Decode (front of a buffer)
		ws      error // DecodeWS (one message, one frame)
		tcp     error // ReadTCP (stream), first frame
	}{
		{name: "empty input", in: nil, maxBody: MaxBodySize, decode: ErrShortHeader, ws: ErrShortHeader, tcp: io.EOF},
		{name: "short header", in: header(16, 16, 2)[:10], maxBody: MaxBodySize, decode: ErrShortHeader, ws: ErrShortHeader, tcp: io.ErrUnexpectedEOF},
		{name: "headerLen 15", in: header(16, 15, 2), maxBody: MaxBodySize, decode: ErrHeaderLen, ws: ErrHeaderLen, tcp: ErrHeaderLen},
		{name: "headerLen 17", in: header(17, 17, 2), maxBody: MaxBodySize, decode: ErrHeaderLen, ws: ErrHeaderLen, tcp: ErrHeaderLen},
		{name: "headerLen 0", in: header(16, 0, 2), maxBody: MaxBodySize, decode: ErrHeaderLen, ws: ErrHeaderLen, tcp: ErrHeaderLen},
		{name: "packLen 15", in: header(15, 16, 2), maxBody: MaxBodySize, decode: ErrPackLen, ws: ErrPackLen, tcp: ErrPackLen},
		{name: "packLen 0", in: header(0, 16, 2), maxBody: MaxBodySize, decode: ErrPackLen, ws: ErrPackLen, tcp: ErrPackLen},
		{name: "packLen negative", in: header(0xffffffff, 16, 2), maxBody: MaxBodySize, decode: ErrPackLen, ws: ErrPackLen, tcp: ErrPackLen},
		{name: "packLen most negative", in: header(0x80000000, 16, 2), maxBody: MaxBodySize, decode: ErrPackLen, ws: ErrPackLen, tcp: ErrPackLen},
		{name: "packLen 16 empty body", in: header(16, 16, 2), maxBody: MaxBodySize},
		{name: "packLen at the limit", in: withBody(header(16+MaxBodySize, 16, 1000), MaxBodySize), maxBody: MaxBodySize},
		{name: "packLen above the limit", in: withBody(header(17+MaxBodySize, 16, 1000), MaxBodySize+1), maxBody: MaxBodySize, decode: ErrBodyTooLarge, ws: ErrBodyTooLarge, tcp: ErrBodyTooLarge},
		{name: "packLen max int32", in: header(0x7fffffff, 16, 1000), maxBody: MaxBodySize, decode: ErrBodyTooLarge, ws: ErrBodyTooLarge, tcp: ErrBodyTooLarge},
		{name: "limit zero refuses a body", in: withBody(header(17, 16, 1000), 1), maxBody: 0, decode: ErrBodyTooLarge, ws: ErrBodyTooLarge, tcp: ErrBodyTooLarge},
		{name: "negative limit acts as zero", in: header(16, 16, 2), maxBody: -1},
		{name: "packLen larger than message", in: withBody(header(26, 16, 1000), 4), maxBody: MaxBodySize, decode: ErrTruncated, ws: ErrTruncated, tcp: io.ErrUnexpectedEOF},
		{name: "trailing bytes", in: withBody(header(16, 16, 2), 4), maxBody: MaxBodySize, ws: ErrTrailing},
		{name: "headerLen checked before packLen", in: header(3, 15, 2), maxBody: MaxBodySize, decode: ErrHeaderLen, ws: ErrHeaderLen, tcp: ErrHeaderLen},
		{name: "limit checked before truncation", in: header(17+MaxBodySize, 16, 2), maxBody: MaxBodySize, decode: ErrBodyTooLarge, ws: ErrBodyTooLarge, tcp: ErrBodyTooLarge},
	}
	check := func(t *testing.T, what string, got, want error) {
		t.Helper()
		if want == nil && got != nil {
			t.Fatalf("%s: unexpected error %v", what, got)
		}
		if want != nil && !errors.Is(got, want) {
			t.Fatalf("%s: error %v, want %v", what, got, want)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p Proto
			n, err := p.Decode(tc.in, tc.maxBody)
			check(t, "Decode", err, tc.decode)
			if err == nil && (n < HeaderSize || n > len(tc.in)) {
				t.Fatalf("Decode consumed %d of %d bytes", n, len(tc.in))
			}
			check(t, "DecodeWS", p.DecodeWS(tc.in, tc.maxBody), tc.ws)
			// The stream decoder must agree whether or not the frame fits
			// the reader's buffer (zero-copy or allocating path).
			for _, size := range []int{16, 4096, 8192} {
				r := bufio.NewReaderSize(bytes.NewReader(tc.in), size)
				check(t, "ReadTCP", p.ReadTCP(r, tc.maxBody), tc.tcp)
			}
		})
	}
}

func TestReadTCPStream(t *testing.T) {
	var stream []byte
	for _, g := range goldenFrames {
		stream = g.proto.AppendTCP(stream)
	}
	big := Proto{Ver: 1, Op: 1000, Body: bytes.Repeat([]byte("0123456789"), 1000)}
	stream = big.AppendTCP(stream)
	want := make([]*Proto, 0, len(goldenFrames)+1)
	for _, g := range goldenFrames {
		want = append(want, g.proto)
	}
	want = append(want, &big)

	for _, size := range []int{16, 64, 4096, 1 << 16} {
		r := bufio.NewReaderSize(iotestOneByte(stream), size)
		for i, w := range want {
			var p Proto
			if err := p.ReadTCP(r, 1<<20); err != nil {
				t.Fatalf("buffer %d, frame %d: %v", size, i, err)
			}
			sameProto(t, &p, w)
		}
		var p Proto
		if err := p.ReadTCP(r, 1<<20); err != io.EOF {
			t.Fatalf("buffer %d: after the last frame got %v, want io.EOF", size, err)
		}
	}
}

// oneByteReader delivers a stream one byte per Read, the worst chunking.
type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func iotestOneByte(b []byte) io.Reader { return &oneByteReader{b: b} }

func TestReadTCPTruncatedLargeFrame(t *testing.T) {
	frame := AppendFrame(nil, 1, 1000, 0, bytes.Repeat([]byte{'y'}, 100))
	for cut := HeaderSize; cut < len(frame); cut += 7 {
		r := bufio.NewReaderSize(bytes.NewReader(frame[:cut]), 16)
		var p Proto
		if err := p.ReadTCP(r, MaxBodySize); err != io.ErrUnexpectedEOF {
			t.Fatalf("cut at %d: got %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
}

func TestReadTCPBodyCapacity(t *testing.T) {
	stream := AppendFrame(nil, 1, 1000, 0, []byte("first"))
	stream = AppendFrame(stream, 1, 1000, 0, []byte("later"))
	r := bufio.NewReader(bytes.NewReader(stream))
	var p Proto
	if err := p.ReadTCP(r, MaxBodySize); err != nil {
		t.Fatal(err)
	}
	// The body aliases the reader's buffer: an append by the caller must
	// reallocate instead of overwriting the next frame.
	if cap(p.Body) != len(p.Body) {
		t.Fatalf("body capacity %d > length %d", cap(p.Body), len(p.Body))
	}
	_ = append(p.Body, "XXXXXXXXXXXXXXXXXXXXXXXXXXXX"...)
	if err := p.ReadTCP(r, MaxBodySize); err != nil || string(p.Body) != "later" {
		t.Fatalf("next frame body %q, err %v", p.Body, err)
	}
}

func TestWriteTCPSmallWriter(t *testing.T) {
	// A writer smaller than a header still produces the exact bytes.
	var want []byte
	var buf bytes.Buffer
	w := bufio.NewWriterSize(&buf, 7)
	for _, g := range goldenFrames {
		want = g.proto.AppendTCP(want)
		if err := g.proto.WriteTCP(w); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("got % x\nwant % x", buf.Bytes(), want)
	}
}

func TestWriteTCPError(t *testing.T) {
	w := bufio.NewWriterSize(failWriter{}, 16)
	p := Proto{Ver: 1, Op: 1000, Body: []byte("x")}
	var err error
	for i := 0; i < 4 && err == nil; i++ {
		err = p.WriteTCP(w)
	}
	if !errors.Is(err, errBroken) {
		t.Fatalf("got %v, want the writer's error", err)
	}
}

var errBroken = errors.New("broken pipe")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errBroken }

func TestVersionIsSigned16Bit(t *testing.T) {
	p := Proto{Ver: -2, Op: OpHeartbeat, Seq: -7}
	var q Proto
	if err := q.DecodeWS(p.AppendWS(nil), 0); err != nil {
		t.Fatal(err)
	}
	sameProto(t, &q, &p)
}

func TestOpName(t *testing.T) {
	cases := []struct {
		op   int32
		want string
	}{
		{op: OpHeartbeat, want: "heartbeat"},
		{op: OpRaw, want: "raw"},
		{op: OpUnsubReply, want: "unsub_reply"},
		{op: OpMessage, want: "message"},
		{op: OpAck, want: "ack"},
		{op: OpStreams, want: "streams"},
		{op: 21, want: "op_21"},
		{op: -1, want: "op_-1"},
	}
	for _, tc := range cases {
		if got := OpName(tc.op); got != tc.want {
			t.Errorf("OpName(%d) = %q, want %q", tc.op, got, tc.want)
		}
	}
}
