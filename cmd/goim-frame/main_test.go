package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/buildinfo"
)

func TestRun(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		stdin   string
		want    string // exact output
		wantErr error  // errors.Is target, or nil
		errText string // substring of the error
	}{
		{
			name: "encode push",
			args: []string{"encode", "-op", "1000", "-body", `{"a":1}`},
			want: "00 00 00 17 00 10 00 01 00 00 03 e8 00 00 00 00 7b 22 61 22 3a 31 7d\n",
		},
		{
			name: "encode heartbeat reply with binary body",
			args: []string{"encode", "-op", "3", "-seq", "5", "-hexbody", "-body", "0000002a"},
			want: "00 00 00 14 00 10 00 01 00 00 00 03 00 00 00 05 00 00 00 2a\n",
		},
		{
			name: "encode op-9 carrier for WebSocket",
			args: []string{"encode", "-ws", "-op", "9", "-hexbody", "-body", "00000017 0010 0001 000003e8 00000000 7b2261223a317d"},
			want: "00 00 00 27 00 10 00 01 00 00 00 09 00 00 00 00 00 00 00 17 00 10 00 01 00 00 03 e8 00 00 00 00 7b 22 61 22 3a 31 7d\n",
		},
		{
			name:  "decode a TCP stream from stdin",
			args:  []string{"decode"},
			stdin: "00 00 00 10 00 10 00 01 00 00 00 02 00 00 00 05\n00 00 00 14 00 10 00 01 00 00 00 03 00 00 00 05 00 00 00 2a\n",
			want:  "ver=1 op=2(heartbeat) seq=5 body=0 bytes \"\"\nver=1 op=3(heartbeat_reply) seq=5 body=4 bytes \"\\x00\\x00\\x00*\"\n",
		},
		{
			name: "decode a WebSocket op-9 message",
			args: []string{"decode", "-ws", "0000002700100001000000090000000000000017 0010 0001 000003e8 00000000 7b2261223a317d"},
			want: "ver=1 op=9(raw) seq=0 body=23 bytes \"\\x00\\x00\\x00\\x17\\x00\\x10\\x00\\x01\\x00\\x00\\x03\\xe8\\x00\\x00\\x00\\x00{\\\"a\\\":1}\"\n" +
				"  ver=1 op=1000(op_1000) seq=0 body=7 bytes \"{\\\"a\\\":1}\"\n",
		},
		{name: "decode with the client limit", args: []string{"decode", "-max", "4", "00000015001000010000000200000000 0102030405"}, wantErr: protocol.ErrBodyTooLarge},
		{name: "decode truncated stream", args: []string{"decode", "00000015001000010000000200000000 01"}, errText: "unexpected EOF"},
		{name: "decode WebSocket trailing bytes", args: []string{"decode", "-ws", "00000010001000010000000200000000ff"}, wantErr: protocol.ErrTrailing},
		{name: "decode bad hex", args: []string{"decode", "zz"}, errText: "bad hex"},
		{name: "no command", args: nil, errText: "usage"},
		{name: "version", args: []string{"-version"}, want: "goim-frame " + buildinfo.Version() + "\n"},
		{name: "unknown command", args: []string{"frob"}, errText: `unknown command "frob"`},
		{name: "encode stray argument", args: []string{"encode", "x"}, errText: "unexpected arguments"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(tc.args, strings.NewReader(tc.stdin), &out)
			switch {
			case tc.wantErr != nil || tc.errText != "":
				if err == nil {
					t.Fatalf("no error; output %q", out.String())
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("error %q, want it to contain %q", err, tc.errText)
				}
			case err != nil:
				t.Fatal(err)
			case out.String() != tc.want:
				t.Fatalf("output\n%q\nwant\n%q", out.String(), tc.want)
			}
		})
	}
}
