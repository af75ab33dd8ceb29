package protocol

import (
	"bytes"
	"testing"
)

func TestBatch(t *testing.T) {
	bodies := [][]byte{[]byte(`{"n":1}`), nil, bytes.Repeat([]byte{'z'}, 5000)}
	var want []byte
	for _, body := range bodies {
		want = AppendFrame(want, Version, 1001, 0, body)
	}
	cases := []struct {
		name  string
		batch *Batch
	}{
		{name: "zero value", batch: &Batch{}},
		{name: "NewBatch", batch: NewBatch(64)},
		{name: "NewBatch negative size", batch: NewBatch(-5)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.batch
			if b.Count() != 0 || b.Len() != 0 || len(b.Frames()) != 0 {
				t.Fatalf("new batch: Count=%d Len=%d Frames=%d bytes", b.Count(), b.Len(), len(b.Frames()))
			}
			// An empty batch is still a valid (empty) op-9 message.
			var p Proto
			if err := p.DecodeWS(b.WSMessage(), 0); err != nil || p.Op != OpRaw || len(p.Body) != 0 {
				t.Fatalf("empty WSMessage: op %d body %d bytes, err %v", p.Op, len(p.Body), err)
			}
			for round := 0; round < 2; round++ { // the second round reuses the buffer
				b.Reset()
				for _, body := range bodies {
					if err := b.Append(1001, body); err != nil {
						t.Fatal(err)
					}
				}
				if b.Count() != len(bodies) || b.Len() != len(want) {
					t.Fatalf("round %d: Count=%d Len=%d, want %d and %d", round, b.Count(), b.Len(), len(bodies), len(want))
				}
				if !bytes.Equal(b.Frames(), want) {
					t.Fatalf("round %d: frames differ", round)
				}
				msg := b.WSMessage()
				if err := p.DecodeWS(msg, MaxPackLen); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				if p.Op != OpRaw || p.Ver != Version || p.Seq != 0 || !bytes.Equal(p.Body, want) {
					t.Fatalf("round %d: carrier op=%d ver=%d seq=%d", round, p.Op, p.Ver, p.Seq)
				}
				// WSMessage is a view of the same buffer as Frames.
				if &msg[HeaderSize] != &b.Frames()[0] {
					t.Fatalf("round %d: WSMessage copied the frames", round)
				}
			}
		})
	}
}
