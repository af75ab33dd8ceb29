// Package webclient embeds goim.js, the browser client of goim: one
// dependency-free ES module (no build step) that speaks the client
// protocol (docs/protocol.md) over WebSocket, finds comets through logic's
// /goim/nodes/weighted, heartbeats, unpacks op-9 batches, changes room,
// subscribes to ops and reconnects with the backoff hints of the nodes
// answer; with reliable: true it opts in to reliable delivery (op-18
// envelopes unwrapped, op-20 reports, positions sent as since on every
// connect, duplicates dropped, batched op-19 acks). Logic's HTTP API
// serves it at GET /goim.js (Handler); the demo page and the console
// import it from there.
//
// Exports of the module: Client (connect, changeRoom, sub, unsub, close,
// positions, ack; state, room, accepts, url, online, duplicates), Op,
// encodeFrame, decodeFrames, decodeEnvelope, encodeAck, backoffDelay,
// fetchNodes, nodeURLs, HEADER_LEN, ENVELOPE_HEADER_LEN, MAX_ACK_IDS,
// DEFAULT_BACKOFF,
// DEFAULT_HEARTBEAT, DEFAULT_HANDSHAKE_TIMEOUT and the error classes
// GoimError, ProtocolError, CloseError, AuthError, NodesError,
// HeartbeatTimeoutError, ClosedError. docs/push-api.md shows its use.
package webclient

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

// Path is where logic's HTTP API serves the module.
const Path = "/goim.js"

//go:embed goim.js
var source []byte

// Source returns the module's text (a copy).
func Source() []byte { return bytes.Clone(source) }

// etag is the strong entity tag of the module: a digest of its bytes, so
// it changes exactly when the module does.
var etag = func() string {
	sum := sha256.Sum256(source)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}()

// Handler serves the module to GET and HEAD, to any origin: it is a
// static library with no secrets, and pages of other origins import it
// (Access-Control-Allow-Origin: *). Browsers revalidate it each time
// (Cache-Control: no-cache) and get 304 while its ETag matches, so a new
// release is picked up at once. Other methods get 405 with Allow.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "goim.js", time.Time{}, bytes.NewReader(source))
	})
}
