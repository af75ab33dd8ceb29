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
//     its room; then its read loop (stack.go says why it moves between
//     goroutines) reads frames (server_tcp.go, server_ws.go) and answers
//     them (operation.go): heartbeats (renewing the session in logic now and
//     then), room changes, and other ops sent up to logic.
//   - When it ends, its disconnect goes to logic through logicLink's
//     workers (disconnect.go), sent again later while logic is unavailable
//     (disconnect_retry.go).
//
// Where a push enters and leaves: job calls the Comet gRPC service (rpc.go)
// with keys, a room or a broadcast. The frame is encoded once per
// transport (frame.go). push.go finds a key push's connections in the
// buckets and walks every bucket for a broadcast (paced or not); room.go
// queues a room push for its room worker, which merges the pushes that
// queued meanwhile and walks the room's members. Each connection's writer
// (writer.go) writes the frame to the socket at once when it can, or
// queues it for a write loop that writes what has queued in one writev;
// a room worker sends a big room's frame to the idle members through an
// io_uring of its own instead, many sends per system call
// (uring_fanout.go, uring_linux.go).
//
// A connection that opted in to reliable delivery (reliable.go) gets every
// push as an op-18 envelope with its id and stream position; the comet
// sequences each of its streams, reading gaps and the auth's recovery
// from logic on a pool of fetch workers (fetch.go), and sends its op-19
// acks to logic in batches (ack.go). Other connections pay a nil check.
//
// Besides, logicLink reports the room counts and the load to logic every
// report interval, and registrar (discovery.go) keeps this comet's entry in
// discovery, where job and logic find the comets.
package comet
