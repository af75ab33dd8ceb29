// Command goim-frame encodes and decodes goim client frames as hex: a small
// aid for reading packet captures, writing client code and checking the
// examples in docs/protocol.md.
//
//	goim-frame encode -op 1000 -body '{"a":1}'        one frame, as hex
//	goim-frame encode -ws -op 9 -body HEXFRAMES -hexbody  an op-9 WebSocket carrier
//	echo '00 00 00 10 00 10 ...' | goim-frame decode   frames of a TCP stream
//	goim-frame decode -ws 0000003e0010...              one WebSocket message
//
// decode reads hex from its arguments or, without any, from standard input;
// spaces, newlines and colons are ignored.
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/buildinfo"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "goim-frame:", err)
		os.Exit(2)
	}
}

const usage = "usage: goim-frame encode [flags] | goim-frame decode [flags] [hex...] | goim-frame -version; -h after a command lists its flags"

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "-version", "--version", "version":
		_, err := fmt.Fprintln(stdout, "goim-frame", buildinfo.Version())
		return err
	case "encode":
		return encode(args[1:], stdout)
	case "decode":
		return decode(args[1:], stdin, stdout)
	default:
		return fmt.Errorf("unknown command %q; %s", args[0], usage)
	}
}

func encode(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("encode", flag.ContinueOnError)
	ver := fs.Int("ver", protocol.Version, "protocol version (int16)")
	op := fs.Int("op", 0, "operation")
	seq := fs.Int("seq", 0, "sequence number")
	body := fs.String("body", "", "body text")
	hexBody := fs.Bool("hexbody", false, "-body is hex (for binary bodies and op-9 frames)")
	ws := fs.Bool("ws", false, "encode as a WebSocket message (op 9 gets the outer header)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("encode: unexpected arguments %q", fs.Args())
	}
	b := []byte(*body)
	if *hexBody {
		var err error
		if b, err = parseHex(*body); err != nil {
			return fmt.Errorf("encode: -body: %w", err)
		}
	}
	p := protocol.Proto{Ver: int32(*ver), Op: int32(*op), Seq: int32(*seq), Body: b}
	var out []byte
	if *ws {
		out = p.AppendWS(nil)
	} else {
		out = p.AppendTCP(nil)
	}
	_, err := fmt.Fprintf(stdout, "% x\n", out)
	return err
}

func decode(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	ws := fs.Bool("ws", false, "the input is one WebSocket message (op-9 carriers are unpacked)")
	maxBody := fs.Int("max", protocol.MaxPackLen-protocol.HeaderSize, "largest body accepted, bytes (comet reads client frames with 4096)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	text := strings.Join(fs.Args(), " ")
	if fs.NArg() == 0 {
		in, err := io.ReadAll(stdin)
		if err != nil {
			return err
		}
		text = string(in)
	}
	data, err := parseHex(text)
	if err != nil {
		return err
	}
	if *ws {
		var p protocol.Proto
		if err := p.DecodeWS(data, *maxBody); err != nil {
			return err
		}
		printFrame(stdout, "", &p)
		if p.Op == protocol.OpRaw {
			return walk(stdout, p.Body)
		}
		return nil
	}
	r := bufio.NewReader(bytes.NewReader(data))
	for {
		var p protocol.Proto
		switch err := p.ReadTCP(r, *maxBody); {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
		printFrame(stdout, "", &p)
	}
}

// walk prints the inner frames of an op-9 body.
func walk(stdout io.Writer, body []byte) error {
	for len(body) > 0 {
		var p protocol.Proto
		n, err := p.Decode(body, protocol.MaxPackLen-protocol.HeaderSize)
		if err != nil {
			return fmt.Errorf("inner frame: %w", err)
		}
		printFrame(stdout, "  ", &p)
		body = body[n:]
	}
	return nil
}

func printFrame(w io.Writer, indent string, p *protocol.Proto) {
	fmt.Fprintf(w, "%sver=%d op=%d(%s) seq=%d body=%d bytes %q\n",
		indent, p.Ver, p.Op, protocol.OpName(p.Op), p.Seq, len(p.Body), p.Body)
}

func parseHex(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\r', ':':
			return -1
		}
		return r
	}, s)
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("bad hex: %w", err)
	}
	return b, nil
}
