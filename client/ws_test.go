package client_test

import (
	"errors"
	"io"
	"net"
	"testing"

	"github.com/gobwas/ws"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
)

// TestWSFake: against a fake WebSocket comet, a ping is answered with a
// pong, pushes in the auth reply's own op-9 message are delivered by the
// first ReadFrames, upgrade headers are sent, and a malformed message is
// a *ProtocolError.
func TestWSFake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		origin, path, pong string
		err                error
	}
	res := make(chan result, 1)
	go func() {
		var r result
		defer func() { res <- r }()
		nc, err := ln.Accept()
		if err != nil {
			r.err = err
			return
		}
		defer nc.Close()
		u := ws.Upgrader{
			OnRequest: func(uri []byte) error { r.path = string(uri); return nil },
			OnHeader: func(k, v []byte) error {
				if string(k) == "Origin" {
					r.origin = string(v)
				}
				return nil
			},
		}
		if _, err := u.Upgrade(nc); err != nil {
			r.err = err
			return
		}
		if _, err := readClient(nc); err != nil { // the auth frame
			r.err = err
			return
		}
		var b protocol.Batch
		_ = b.Append(protocol.OpAuthReply, []byte(`{"key":"k-fake"}`))
		_ = b.Append(1000, []byte("early"))
		for _, f := range []ws.Frame{
			ws.NewPingFrame([]byte("hi")),
			ws.NewBinaryFrame(b.WSMessage()),
			ws.NewBinaryFrame(protocol.AppendFrame(nil, 1, 1000, 2, []byte("second"))),
		} {
			if err := ws.WriteFrame(nc, f); err != nil {
				r.err = err
				return
			}
		}
		p, err := readClient(nc)
		if err != nil {
			r.err = err
			return
		}
		r.pong = string(p)
		r.err = ws.WriteFrame(nc, ws.NewBinaryFrame([]byte("short")))
		_, _ = io.Copy(io.Discard, nc)
	}()
	defer ln.Close()
	o := client.DialOptions{Transport: client.WS, Path: "/sub?x=1", Header: map[string][]string{"Origin": {"https://app.example"}}}
	c, err := client.Dial(t.Context(), ln.Addr().String(), client.Auth{}, o)
	if err != nil {
		t.Fatal(err)
	}
	if c.Key() != "k-fake" {
		t.Fatalf("key %q", c.Key())
	}
	var bodies []string
	collect := func(f client.Frame) { bodies = append(bodies, string(f.Body)) }
	for range 2 {
		if err := c.ReadFrames(collect); err != nil {
			t.Fatal(err)
		}
	}
	if len(bodies) != 2 || bodies[0] != "early" || bodies[1] != "second" {
		t.Fatalf("bodies %q", bodies)
	}
	var pe *client.ProtocolError
	if err := c.ReadFrames(collect); !errors.As(err, &pe) || !errors.Is(err, protocol.ErrShortHeader) {
		t.Fatalf("short message: %v", err)
	}
	_ = c.Close()
	r := <-res
	if r.err != nil || r.pong != "hi" || r.origin != "https://app.example" || r.path != "/sub?x=1" {
		t.Fatalf("server saw %+v", r)
	}
}

// readClient reads one masked client frame and returns its payload.
func readClient(nc net.Conn) ([]byte, error) {
	h, err := ws.ReadHeader(nc)
	if err != nil {
		return nil, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(nc, p); err != nil {
		return nil, err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	return p, nil
}
