// Package client is goim's Go client: it connects to a comet over raw TCP,
// TLS, WebSocket or WebSocket over TLS, authenticates, and reads what the
// comet pushes.
//
// The low level is one connection without reconnect: Dial (or DialBody
// with a raw auth body) returns a *Conn once the comet answered the auth
// frame. A Conn starts no goroutine and holds one read buffer: the
// caller reads with ReadFrames, which calls back once per frame (op-9
// batches unpacked, streamed through the buffer without being held
// whole), and writes with WriteFrame and Heartbeat from any goroutine.
// It is made for processes holding very many connections (the goim-bench
// load tool holds 100,000 per process).
//
//	c, err := client.Dial(ctx, "127.0.0.1:3101", client.Auth{Mid: 1, RoomID: "live://1000", Accepts: []int32{1000}}, client.DialOptions{})
//	if err != nil { ... }
//	defer c.Close()
//	for {
//		err := c.ReadFrames(func(f client.Frame) {
//			// f.Body is valid only during the call
//		})
//		if err != nil { ... }
//	}
//
// The connection must heartbeat (Heartbeat, op 2) at the period logic
// gives in /goim/nodes/weighted (FetchNodes returns it with the comets of
// each transport and the reconnect back-off hint, Backoff), or the comet
// closes it.
//
// Errors are typed: *DialError (dial, TLS, upgrade), *AuthError (the
// connection ended before the auth reply), *CloseError (a WebSocket close
// frame from the comet, with its status and reason), *ProtocolError (a
// malformed frame from the comet), *NodesError (an error answer of
// logic's nodes endpoint) and ErrClosed.
package client
