package protocol

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The worked examples of reliable delivery's frames in docs/protocol.md
// ("Reliable delivery"), made with the real encoders.
const (
	goldenMsgID = "0123456789abcdef0123456789abcdef"
	// op 18: push op 1000, body {"a":1}, in the key stream (2) at epoch
	// 1122334455667788, offset 5.
	goldenEnvelopeHex = "00 00 00 49 00 10 00 01 00 00 00 12 00 00 00 00" + // header: 73 bytes, op 18, seq 0
		"02 00" + // stream 2 (key), flags 0
		"01 23 45 67 89 ab cd ef 01 23 45 67 89 ab cd ef" + // msg id
		"11 22 33 44 55 66 77 88" + // epoch
		"00 00 00 00 00 00 00 05" + // offset
		"00 00 00 17 00 10 00 01 00 00 03 e8 00 00 00 00 7b 22 61 22 3a 31 7d" // the push's frame
	// op 19, seq 7, acking goldenMsgID.
	goldenAckHex = "00 00 00 20 00 10 00 01 00 00 00 13 00 00 00 07" +
		"01 23 45 67 89 ab cd ef 01 23 45 67 89 ab cd ef"
	goldenStreamsJSON = `{"streams":[{"stream":"user","epoch":"1122334455667788","offset":42,"recovered":true},` +
		`{"stream":"key","epoch":"0a0b0c0d0e0f1011","offset":3,"recovered":false}]}`
)

func TestGoldenEnvelope(t *testing.T) {
	env := AppendEnvelope(nil, goldenMsgID, &Position{Stream: StreamKey, Epoch: 0x1122334455667788, Offset: 5}, 1000, []byte(`{"a":1}`))
	got := AppendFrame(nil, Version, OpMessage, 0, env)
	if want := unhex(t, goldenEnvelopeHex); !bytes.Equal(got, want) {
		t.Fatalf("op 18\n got % x\nwant % x", got, want)
	}
	var p Proto
	if _, err := p.Decode(got, MaxBodySize); err != nil {
		t.Fatal(err)
	}
	e, err := DecodeEnvelope(p.Body)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID() != goldenMsgID || e.Stream != StreamKey || e.Epoch != 0x1122334455667788 || e.Offset != 5 || e.Op != 1000 || string(e.Body) != `{"a":1}` {
		t.Fatalf("decoded %+v", e)
	}
}

func TestGoldenAck(t *testing.T) {
	body, n := AppendAck(nil, goldenMsgID)
	got := AppendFrame(nil, Version, OpAck, 7, body)
	if want := unhex(t, goldenAckHex); n != 1 || !bytes.Equal(got, want) {
		t.Fatalf("op 19 (%d ids)\n got % x\nwant % x", n, got, want)
	}
	ids, err := ParseAck(body)
	if err != nil || len(ids) != 1 || ids[0] != goldenMsgID {
		t.Fatalf("ParseAck %v %v", ids, err)
	}
}

func TestGoldenStreams(t *testing.T) {
	b, err := json.Marshal(StreamsBody{Streams: []StreamState{
		{Stream: "user", Epoch: FormatEpoch(0x1122334455667788), Offset: 42, Recovered: true},
		{Stream: "key", Epoch: FormatEpoch(0x0a0b0c0d0e0f1011), Offset: 3},
	}})
	if err != nil || string(b) != goldenStreamsJSON {
		t.Fatalf("op 20 body %s, %v\nwant %s", b, err, goldenStreamsJSON)
	}
}
