package protocol

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
)

var frameErrors = []error{ErrShortHeader, ErrHeaderLen, ErrPackLen, ErrBodyTooLarge, ErrTruncated, ErrTrailing}

func isFrameError(err error) bool {
	for _, e := range frameErrors {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// errClass returns the sentinel err wraps, or err itself.
func errClass(err error) error {
	for _, e := range frameErrors {
		if errors.Is(err, e) {
			return e
		}
	}
	return err
}

// fuzzSeeds are the golden frames, a batch, concatenations and broken frames.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	var all []byte
	for _, g := range goldenFrames {
		f := unhex(t, g.hex)
		seeds = append(seeds, f)
		all = append(all, f...)
	}
	var b Batch
	_ = b.Append(1000, []byte(`{"a":1}`))
	_ = b.Append(1000, []byte(`{"b":2}`))
	seeds = append(seeds, all, b.WSMessage(),
		header(15, 16, 2), header(16, 17, 2), header(0xffffffff, 16, 2),
		withBody(header(26, 16, 1000), 4), withBody(header(16, 16, 2), 4))
	return seeds
}

// chunkReader hands out data in chunks whose sizes come from the fuzzer.
type chunkReader struct {
	data   []byte
	chunks []byte
	i      int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.chunks) > 0 {
		n = 1 + int(r.chunks[r.i%len(r.chunks)])
		r.i++
	}
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// FuzzReadTCP feeds an arbitrary byte stream, cut into arbitrary chunks,
// through ReadTCP and checks it against Decode on the whole stream: the same
// frames in the same order and the matching final error. Accepted frames
// re-encode to exactly the bytes they came from.
func FuzzReadTCP(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, []byte{0}, uint16(4096), uint16(MaxBodySize))
		f.Add(s, []byte{6, 200, 1}, uint16(0), uint16(64))
	}
	f.Fuzz(func(t *testing.T, stream, chunks []byte, bufSize, maxBody uint16) {
		limit := int(maxBody)
		r := bufio.NewReaderSize(&chunkReader{data: stream, chunks: chunks}, HeaderSize+int(bufSize)%8192)
		rest := stream
		for {
			var want Proto
			n, wantErr := want.Decode(rest, limit)
			var got Proto
			gotErr := got.ReadTCP(r, limit)
			if wantErr != nil {
				// Map the flat decoder's error to what a stream reports.
				wantErr = errClass(wantErr)
				switch {
				case len(rest) == 0:
					wantErr = io.EOF
				case wantErr == ErrShortHeader, wantErr == ErrTruncated:
					wantErr = io.ErrUnexpectedEOF
				}
				if errClass(gotErr) != wantErr {
					t.Fatalf("at offset %d: ReadTCP error %v, Decode error %v", len(stream)-len(rest), gotErr, wantErr)
				}
				if gotErr != io.EOF && gotErr != io.ErrUnexpectedEOF && !isFrameError(gotErr) {
					t.Fatalf("untyped error %v", gotErr)
				}
				return
			}
			if gotErr != nil {
				t.Fatalf("at offset %d: ReadTCP error %v, Decode accepted %d bytes", len(stream)-len(rest), gotErr, n)
			}
			if got.Ver != want.Ver || got.Op != want.Op || got.Seq != want.Seq || !bytes.Equal(got.Body, want.Body) {
				t.Fatalf("at offset %d: ReadTCP %v, Decode %v", len(stream)-len(rest), &got, &want)
			}
			if len(got.Body) > limit {
				t.Fatalf("body of %d bytes passed a limit of %d", len(got.Body), limit)
			}
			if enc := AppendFrame(nil, got.Ver, got.Op, got.Seq, got.Body); !bytes.Equal(enc, rest[:n]) {
				t.Fatalf("re-encoded % x, read % x", enc, rest[:n])
			}
			rest = rest[n:]
		}
	})
}

// FuzzWSMessage decodes arbitrary WebSocket payloads. An accepted message
// re-encodes to itself; an op-9 carrier's body is walked frame by frame.
func FuzzWSMessage(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint16(MaxBodySize))
	}
	f.Fuzz(func(t *testing.T, msg []byte, maxBody uint16) {
		var p Proto
		err := p.DecodeWS(msg, int(maxBody))
		if err != nil {
			if !isFrameError(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if enc := AppendFrame(nil, p.Ver, p.Op, p.Seq, p.Body); !bytes.Equal(enc, msg) {
			t.Fatalf("re-encoded % x, message % x", enc, msg)
		}
		if p.Op != OpRaw {
			return
		}
		rest := p.Body
		for len(rest) > 0 {
			var in Proto
			n, err := in.Decode(rest, MaxPackLen)
			if err != nil {
				if !isFrameError(err) {
					t.Fatalf("inner frame: untyped error %v", err)
				}
				return
			}
			if n < HeaderSize || n > len(rest) {
				t.Fatalf("inner frame consumed %d of %d bytes", n, len(rest))
			}
			rest = rest[n:]
		}
	})
}

// FuzzAuthBody parses arbitrary auth bodies: failures wrap ErrAuthBody, and
// whatever parses survives a marshal/parse round trip unchanged.
func FuzzAuthBody(f *testing.F) {
	f.Add([]byte(authBody83))
	f.Add([]byte(`{"mid":7,"key":"","room_id":"test://1","platform":"ios","accepts":[1000,1001,1002]}`))
	f.Add([]byte(`{"token":"a.b.c","accepts":[]}`))
	f.Add([]byte(`{"mid":"1"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"accepts":[1,`))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := ParseAuthBody(body)
		if err != nil {
			if !errors.Is(err, ErrAuthBody) {
				t.Fatalf("error %v does not wrap ErrAuthBody", err)
			}
			return
		}
		enc, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ParseAuthBody(enc)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", enc, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed %+v into %+v", a, b)
		}
	})
}
