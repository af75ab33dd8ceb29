package protocol

import (
	"bufio"
	"io"
	"testing"
)

// loopReader repeats b forever, so a bufio.Reader over it never runs dry.
type loopReader struct {
	b   []byte
	off int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

// TestZeroAllocs pins the hot-path promise: decoding and encoding into a
// caller's buffer allocate nothing.
func TestZeroAllocs(t *testing.T) {
	push := Proto{Ver: 1, Op: 1000, Body: []byte(`{"test":1}`)}
	frame := push.AppendTCP(nil)
	var batch Batch
	for i := 0; i < 20; i++ {
		_ = batch.Append(1000, push.Body)
	}
	carrier := Proto{Ver: 1, Op: OpRaw, Body: batch.Frames()}
	r := bufio.NewReader(&loopReader{b: frame})
	w := bufio.NewWriter(io.Discard)
	dst := make([]byte, 0, 4096)
	var p Proto

	cases := []struct {
		name string
		fn   func()
	}{
		{name: "ReadTCP", fn: func() { _ = p.ReadTCP(r, MaxBodySize) }},
		{name: "DecodeWS", fn: func() { _ = p.DecodeWS(frame, MaxBodySize) }},
		{name: "Decode", fn: func() { _, _ = p.Decode(frame, MaxBodySize) }},
		{name: "WriteTCP", fn: func() { _ = push.WriteTCP(w) }},
		{name: "WriteTCP raw", fn: func() { _ = carrier.WriteTCP(w) }},
		{name: "AppendTCP", fn: func() { dst = push.AppendTCP(dst[:0]) }},
		{name: "AppendWS raw", fn: func() { dst = carrier.AppendWS(dst[:0]) }},
		{name: "Batch reuse", fn: func() {
			batch.Reset()
			for i := 0; i < 20; i++ {
				_ = batch.Append(1000, push.Body)
			}
			_ = batch.WSMessage()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(200, tc.fn); n != 0 {
				t.Fatalf("%v allocs per call, want 0", n)
			}
		})
	}
}
