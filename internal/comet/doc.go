// Package comet is goim's connection tier: it holds the clients' long-lived
// TCP, TLS, WebSocket and WSS connections, authenticates them through logic,
// and delivers to them the pushes job sends. The sessions (which comet holds
// which key) live in logic; job routes pushes by them.
//
// Where a connection enters and what it passes through:
//   - Server (server.go) owns the listeners; its accept loops hand each
//     connection to serveConn (conn.go), on a goroutine of its own.
//   - limits (limits.go) admits it (max_conns, the per-IP counts), then the
//     handshake runs: TLS, the WebSocket upgrade (server_ws.go) and the auth
//     frame, whose body goes to logic through logicLink.connect
//     (logiclink.go, connect.go).
//   - Accepted, the connection is published in its bucket by key and joins
//     its room; then its read loop reads frames (server_tcp.go,
//     server_ws.go) and answers them (operation.go): heartbeats (renewing
//     the session in logic now and then), room changes, and other ops sent
//     up to logic.
//   - When it ends, its disconnect goes to logic through logicLink's
//     workers (disconnect.go), sent again later while logic is unavailable
//     (disconnect_retry.go).
//
// Where a push enters and leaves: job calls the Comet gRPC service (rpc.go)
// with keys, a room or a broadcast; push.go finds the connections in the
// buckets, in the rooms (room.go, through the room workers) or in every
// bucket, and queues the frame on each of them, whose writer (channel.go)
// writes it to the socket.
//
// Besides, logicLink reports the room counts and the load to logic every
// report interval, and registrar (discovery.go) keeps this comet's entry in
// discovery, where job and logic find the comets.
package comet
