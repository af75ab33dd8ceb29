package protocol

import (
	"bufio"
	"io"
	"testing"
)

// The codec benchmarks: every hot-path one reports 0 allocs/op (TestZeroAllocs
// enforces it). Figures go to docs/benchmark.md.

var benchPush = Proto{Ver: 1, Op: 1000, Body: []byte(`{"test":1,"msg":"hello, room 1000"}`)}

func BenchmarkReadTCP(b *testing.B) {
	frame := benchPush.AppendTCP(nil)
	r := bufio.NewReader(&loopReader{b: frame})
	var p Proto
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.ReadTCP(r, MaxBodySize); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeWS(b *testing.B) {
	frame := benchPush.AppendWS(nil)
	var p Proto
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.DecodeWS(frame, MaxBodySize); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteTCP(b *testing.B) {
	w := bufio.NewWriter(io.Discard)
	b.SetBytes(int64(HeaderSize + len(benchPush.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := benchPush.WriteTCP(w); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendTCP(b *testing.B) {
	dst := make([]byte, 0, 256)
	b.SetBytes(int64(HeaderSize + len(benchPush.Body)))
	b.ReportAllocs()
	for b.Loop() {
		dst = benchPush.AppendTCP(dst[:0])
	}
}

// BenchmarkBatch20 builds a 20-message room batch and both of its forms:
// what job does once per room batch.
func BenchmarkBatch20(b *testing.B) {
	var batch Batch
	b.SetBytes(int64(20 * (HeaderSize + len(benchPush.Body))))
	b.ReportAllocs()
	for b.Loop() {
		batch.Reset()
		for range 20 {
			if err := batch.Append(benchPush.Op, benchPush.Body); err != nil {
				b.Fatal(err)
			}
		}
		_ = batch.Frames()
		_ = batch.WSMessage()
	}
}

// BenchmarkAppendWSRaw wraps a 20-frame carrier for WebSocket clients: what a
// comet does once per room batch it receives.
func BenchmarkAppendWSRaw(b *testing.B) {
	var batch Batch
	for range 20 {
		_ = batch.Append(benchPush.Op, benchPush.Body)
	}
	carrier := Proto{Ver: 1, Op: OpRaw, Body: batch.Frames()}
	dst := make([]byte, 0, 4096)
	b.SetBytes(int64(HeaderSize + len(carrier.Body)))
	b.ReportAllocs()
	for b.Loop() {
		dst = carrier.AppendWS(dst[:0])
	}
}

func BenchmarkParseAuthBody(b *testing.B) {
	body := []byte(authBody83)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseAuthBody(body); err != nil {
			b.Fatal(err)
		}
	}
}
