package httpapi

import (
	"encoding/json"
	"net/http"
)

// envelope is every response body. The struct fixes the field order: code,
// message (always present, "" on success), data (omitted when nil).
type envelope struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

var (
	// okBody is the body of code 0 without data.
	okBody = []byte(`{"code":0,"message":""}`)
	// internalErrorBody answers a panic or a response that cannot be
	// encoded.
	internalErrorBody = []byte(`{"code":-500,"message":"internal error"}`)

	// Header values shared by every response (net/http only reads them).
	jsonContentType = []string{"application/json; charset=utf-8"}
	nosniff         = []string{"nosniff"}
	connClose       = []string{"close"}
)

// pushData is the data of a successful push.
type pushData struct {
	MsgID string `json:"msg_id"`
}

// pushedBody returns the body of a successful push with id, as encode
// would render it, without the reflection of encoding/json: ok is false
// (and the caller encodes) when id holds a byte JSON would escape.
func pushedBody(id string) (body []byte, ok bool) {
	const head, tail = `{"code":0,"message":"","data":{"msg_id":"`, `"}}`
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return nil, false
		}
	}
	b := make([]byte, 0, len(head)+len(id)+len(tail))
	b = append(b, head...)
	b = append(b, id...)
	return append(b, tail...), true
}

// writeBody writes a JSON response body with its status.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(status)
	_, _ = w.Write(body) // a client gone away is not our problem
}

// encode renders an envelope. It fails only for data that cannot be
// encoded, which no endpoint produces.
func encode(code int, message string, data any) ([]byte, error) {
	return json.Marshal(envelope{Code: code, Message: message, Data: data})
}

// closeAfter asks net/http to close the connection after the response: the
// client then reconnects (through a load balancer, possibly to another
// logic) and an unread oversized body is not drained.
func closeAfter(w http.ResponseWriter) { w.Header()["Connection"] = connClose }
