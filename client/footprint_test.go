package client

import (
	"bufio"
	"testing"
	"unsafe"

	"github.com/goim/goim/api/protocol"
)

// loop repeats b forever.
type loop struct {
	b   []byte
	off int
}

func (l *loop) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

// TestFootprint: a Conn stays small (goim-bench holds 100,000 per
// process) and reading pushes, op-9 batches included, allocates nothing.
func TestFootprint(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 160 {
		t.Fatalf("Conn is %d bytes", n)
	}
	var b protocol.Batch
	for range 20 {
		_ = b.Append(1000, []byte("a room push of some size"))
	}
	tcp := &Conn{br: bufio.NewReaderSize(&loop{b: protocol.AppendFrame(nil, 1, 1000, 0, []byte("push"))}, 256), maxBody: defaultMaxBody}
	wsc := &Conn{br: bufio.NewReaderSize(&loop{b: wsFrame(wsBinary, true, b.WSMessage(), false)}, 64), maxBody: defaultMaxBody}
	wsc.ws = &wsReader{br: wsc.br, maxBody: defaultMaxBody, pong: wsc.pong}
	frames := 0
	fn := func(Frame) { frames++ }
	for name, c := range map[string]*Conn{"tcp": tcp, "ws batch": wsc} {
		if a := testing.AllocsPerRun(100, func() {
			if err := c.ReadFrames(fn); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Errorf("%s: %v allocations per read", name, a)
		}
	}
	if frames != 101+101*20 {
		t.Fatalf("%d frames", frames)
	}
}
