package client

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/gobwas/ws"
	"github.com/goim/goim/api/protocol"
)

// wsFrame encodes one server WebSocket frame (unmasked unless mask).
func wsFrame(op byte, fin bool, payload []byte, mask bool) []byte {
	h := ws.Header{Fin: fin, OpCode: ws.OpCode(op), Length: int64(len(payload)), Masked: mask}
	p := slices.Clone(payload)
	if mask {
		h.Mask = [4]byte{1, 2, 3, 4}
		unmask(p, h.Mask)
	}
	var b bytes.Buffer
	if err := ws.WriteHeader(&b, h); err != nil {
		panic(err)
	}
	b.Write(p)
	return b.Bytes()
}

// got is a frame a reader delivered.
type got struct {
	op, seq int32
	body    string
}

func collect(out *[]got) func(Frame) {
	return func(f Frame) { *out = append(*out, got{f.Op, f.Seq, string(f.Body)}) }
}

func TestWSReader(t *testing.T) {
	push := func(body string) []byte { return protocol.AppendFrame(nil, 1, 1000, 5, []byte(body)) }
	var batch protocol.Batch
	_ = batch.Append(1000, []byte("a"))
	_ = batch.Append(1001, []byte(""))
	_ = batch.Append(1000, bytes.Repeat([]byte("b"), 3000)) // larger than the read buffer
	big := bytes.Repeat([]byte("c"), 5000)

	var stream []byte
	stream = append(stream, wsFrame(wsBinary, true, push("one"), false)...)
	stream = append(stream, wsFrame(wsPing, true, []byte("hi"), false)...)
	stream = append(stream, wsFrame(wsBinary, true, batch.WSMessage(), false)...)
	stream = append(stream, wsFrame(wsText, true, push(string(big)), false)...)
	// A fragmented message with a ping between its fragments.
	frag := push("fragmented")
	stream = append(stream, wsFrame(wsBinary, false, frag[:10], false)...)
	stream = append(stream, wsFrame(wsPing, true, []byte("x"), false)...)
	stream = append(stream, wsFrame(wsContinuation, true, frag[10:], false)...)
	// A masked message (servers must not mask; read it anyway).
	stream = append(stream, wsFrame(wsBinary, true, push("masked"), true)...)
	stream = append(stream, wsFrame(wsClose, true, append([]byte{0x03, 0xe9}, "going away"...), false)...)

	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			var src io.Reader = bytes.NewReader(stream)
			if chunked {
				src = iotest.OneByteReader(src)
			}
			var pongs []string
			r := &wsReader{br: bufio.NewReaderSize(src, 256), maxBody: defaultMaxBody,
				pong: func(p []byte) error { pongs = append(pongs, string(p)); return nil }}
			var frames []got
			var err error
			for err == nil {
				err = r.read(collect(&frames))
			}
			var ce *CloseError
			if !errors.As(err, &ce) || ce.Code != 1001 || ce.Reason != "going away" {
				t.Fatalf("ended with %v, want the close frame 1001", err)
			}
			want := []got{{1000, 5, "one"}, {1000, 0, "a"}, {1001, 0, ""}, {1000, 0, string(bytes.Repeat([]byte("b"), 3000))},
				{1000, 5, string(big)}, {1000, 5, "fragmented"}, {1000, 5, "masked"}}
			if !slices.Equal(frames, want) {
				t.Fatalf("frames %d, want %d: %.80v", len(frames), len(want), frames)
			}
			if !slices.Equal(pongs, []string{"hi", "x"}) {
				t.Fatalf("pongs %q", pongs)
			}
		})
	}
}

func TestWSReaderBadMessages(t *testing.T) {
	push := protocol.AppendFrame(nil, 1, 1000, 0, []byte("abc"))
	raw := protocol.AppendFrame(nil, 1, protocol.OpRaw, 0, push)
	shortBatch := slices.Clone(raw)
	binary.BigEndian.PutUint32(shortBatch[16:], 40) // inner packLen past the message
	cases := []struct {
		name    string
		in      []byte
		maxBody int
		want    error
	}{
		{name: "packLen differs from the message", in: wsFrame(wsBinary, true, append(slices.Clone(push), 'x'), false), want: ErrWebSocket},
		{name: "message shorter than a header", in: wsFrame(wsBinary, true, []byte("short"), false), want: protocol.ErrShortHeader},
		{name: "inner frame past the batch", in: wsFrame(wsBinary, true, shortBatch, false), want: protocol.ErrBodyTooLarge},
		{name: "bad headerLen", in: wsFrame(wsBinary, true, append(push[:4:4], append([]byte{0, 15}, push[6:]...)...), false), want: protocol.ErrHeaderLen},
		{name: "reserved bits", in: []byte{0xc2, 0}, want: ErrWebSocket},
		{name: "continuation first", in: wsFrame(wsContinuation, true, push, false), want: ErrWebSocket},
		{name: "control frame too long", in: wsFrame(wsPing, true, make([]byte, 126), false), want: ErrWebSocket},
		{name: "message over MaxBody", in: wsFrame(wsBinary, true, push, false), maxBody: 2, want: protocol.ErrBodyTooLarge},
		{name: "fragmented over MaxBody", in: wsFrame(wsBinary, false, push, false), maxBody: 2, want: protocol.ErrBodyTooLarge},
		{name: "huge length", in: []byte{0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, want: protocol.ErrBodyTooLarge},
		{name: "truncated", in: wsFrame(wsBinary, true, push, false)[:10], want: io.ErrUnexpectedEOF},
		{name: "clean end", in: nil, want: io.EOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mb := tc.maxBody
			if mb == 0 {
				mb = defaultMaxBody
			}
			r := &wsReader{br: bufio.NewReader(bytes.NewReader(tc.in)), maxBody: mb, pong: func([]byte) error { return nil }}
			err := r.read(func(Frame) {})
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			c := &Conn{}
			var pe *ProtocolError
			if isProto := errors.As(c.readErr(err), &pe); isProto == (tc.want == io.EOF || tc.want == io.ErrUnexpectedEOF) {
				t.Fatalf("error %v typed as a protocol error: %v", err, isProto)
			}
		})
	}
}

func TestReadTCP(t *testing.T) {
	var stream []byte
	stream = protocol.AppendFrame(stream, 1, protocol.OpAuthReply, 1, nil)
	stream = protocol.AppendFrame(stream, 1, 1000, 0, []byte("x"))
	// An op-9 carrier on TCP (comet strips it; read it anyway).
	stream = protocol.AppendFrame(stream, 1, protocol.OpRaw, 0, protocol.AppendFrame(nil, 1, 1001, 0, []byte("y")))
	stream = protocol.AppendFrame(stream, 1, 1002, 0, bytes.Repeat([]byte("z"), 100)) // larger than the buffer
	br := bufio.NewReaderSize(iotest.HalfReader(bytes.NewReader(stream)), 64)
	var frames []got
	for {
		if err := readTCP(br, defaultMaxBody, collect(&frames)); err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
	}
	if want := []got{{protocol.OpAuthReply, 1, ""}, {1000, 0, "x"}, {1001, 0, "y"}, {1002, 0, string(bytes.Repeat([]byte("z"), 100))}}; !slices.Equal(frames, want) {
		t.Fatalf("frames %v, want %v", frames, want)
	}
	// MaxBody bounds a frame before any byte of its body is read.
	br = bufio.NewReader(bytes.NewReader(protocol.AppendFrame(nil, 1, 1000, 0, []byte("12345"))))
	if err := readTCP(br, 4, func(Frame) {}); !errors.Is(err, protocol.ErrBodyTooLarge) {
		t.Fatalf("5-byte body with MaxBody 4: %v", err)
	}
}

func TestWSClientFrame(t *testing.T) {
	for _, n := range []int{0, 16, 125, 126, 70000} {
		payload := bytes.Repeat([]byte{7}, n)
		r := bytes.NewReader(appendWSClientFrame(nil, wsBinary, payload))
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatal(err)
		}
		if !h.Fin || !h.Masked || h.OpCode != ws.OpBinary || h.Length != int64(n) || int64(r.Len()) != h.Length {
			t.Fatalf("header %+v, %d bytes after it", h, r.Len())
		}
		got, _ := io.ReadAll(r)
		ws.Cipher(got, h.Mask, 0)
		if !bytes.Equal(got, payload) {
			t.Fatalf("%d-byte payload changed", n)
		}
	}
}

// FuzzRead feeds arbitrary server bytes to the TCP and WebSocket readers:
// they must end with an error or frames, never panic, and never deliver a
// body over the limit.
func FuzzRead(f *testing.F) {
	var batch protocol.Batch
	_ = batch.Append(1000, []byte("a"))
	_ = batch.Append(1001, []byte("bc"))
	f.Add(protocol.AppendFrame(nil, 1, 1000, 0, []byte("x")))
	f.Add(wsFrame(wsBinary, true, batch.WSMessage(), false))
	f.Add(wsFrame(wsBinary, false, protocol.AppendFrame(nil, 1, 1000, 0, []byte("x")), true))
	f.Add(wsFrame(wsClose, true, []byte{3, 0xe8, 'o', 'k'}, false))
	const maxBody = 64
	f.Fuzz(func(t *testing.T, in []byte) {
		check := func(fr Frame) {
			if len(fr.Body) > maxBody {
				t.Fatalf("%d-byte body over the %d limit", len(fr.Body), maxBody)
			}
		}
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		for i := 0; i < 100 && readTCP(br, maxBody, check) == nil; i++ {
		}
		r := &wsReader{br: bufio.NewReaderSize(bytes.NewReader(in), 16), maxBody: maxBody, pong: func([]byte) error { return nil }}
		for i := 0; i < 100 && r.read(check) == nil; i++ {
		}
	})
}
