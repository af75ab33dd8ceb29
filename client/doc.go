// Package client is goim's Go client: it connects to a comet over raw TCP,
// TLS, WebSocket or WebSocket over TLS, authenticates, and reads what the
// comet pushes. It has two layers.
//
// The high level is Client, a connection that keeps itself up: Connect
// asks logic's /goim/nodes/weighted for comets (Config.API; or fixed
// Config.Addrs), authenticates, heartbeats at the period logic gives, and
// after any drop (a comet draining or shutting down, a network error, a
// heartbeat not answered within a period) waits the back-off logic hints
// (Backoff) and connects again, to the comets logic names then, in the
// room and with the ops it has at that moment. Messages arrive in order on
// Messages() or through Config.OnMessage; ChangeRoom, Sub and Unsub wait
// for the comet's reply; Close stops everything.
//
//	c, err := client.Connect(ctx, client.Config{
//		API:  "http://127.0.0.1:3111",
//		Auth: client.Auth{Mid: 1, RoomID: "live://1000", Platform: "web", Accepts: []int32{1000}},
//	})
//	if err != nil { ... }
//	defer c.Close()
//	for m := range c.Messages() {
//		// m.Op, m.Body (the receiver's own copy)
//	}
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
// Reliable delivery is opt-in (Config.Reliable): a Client then gets each
// push with its id (Message.MsgID) and its position in its stream
// (Message.Stream, Epoch, Offset), op-20 reports of its streams as
// Messages with Streams (Recovered false: resync that stream), sends its
// last positions with every connect so the comet replays what it missed,
// drops messages at or below its position, and acks (op 19) what it hands
// over, batched (Ack for manual acks). Positions returns the positions to
// persist; Config.Since takes them back. A Conn opts in with
// Auth.Reliable and reads the raw op-18 envelopes (protocol.DecodeEnvelope).
//
// Errors are typed: *DialError (dial, TLS, upgrade), *AuthError (the
// connection ended before the auth reply), *CloseError (a WebSocket close
// frame from the comet, with its status and reason), *ProtocolError (a
// malformed frame from the comet), *NodesError (an error answer of
// logic's nodes endpoint) and ErrClosed; a Client adds ErrDisconnected (a
// request whose connection dropped before the reply) and
// ErrHeartbeatTimeout (a drop's cause).
package client
