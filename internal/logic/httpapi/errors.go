package httpapi

// Codes of the response envelope's "code" field (docs/push-api.md). Each
// goes with one HTTP status, given below; the message says what went wrong.
const (
	// CodeOK: the request succeeded (HTTP 200). For a push: Kafka
	// acknowledged the message.
	CodeOK = 0
	// CodeBadRequest: a parameter is missing or malformed, the query
	// string cannot be parsed, or the body is empty or too large
	// (HTTP 400). Nothing was published. The message reads
	// "<param>: <why>".
	CodeBadRequest = -400
	// CodeUnauthorized: a request to a push, online or instances endpoint
	// has no valid "Authorization: Bearer <token>" header (HTTP 401, with
	// a WWW-Authenticate challenge). Never answered when no credential is
	// configured (Config.AllowAnonymous).
	CodeUnauthorized = -401
	// CodeForbidden: a push endpoint got a read-scope token (HTTP 403,
	// with a WWW-Authenticate challenge naming insufficient_scope).
	// Nothing was published.
	CodeForbidden = -403
	// CodeNotFound: no endpoint has the request's path, or
	// /goim/push/status has no delivery record of the msg_id (HTTP 404).
	CodeNotFound = -404
	// CodeMethodNotAllowed: the path exists with another method, named in
	// the Allow header (HTTP 405).
	CodeMethodNotAllowed = -405
	// CodeServerError: the service failed (Kafka or Redis unavailable, a
	// timeout; HTTP 500, the message is the error's text), logic is
	// shutting down (HTTP 503), or an internal error (HTTP 500). A failed
	// push may still have been published to some comets or, after a Kafka
	// timeout, at all: a retry can deliver twice.
	CodeServerError = -500
	// CodeNotImplemented: the endpoint's feature is turned off in this
	// logic's configuration (HTTP 501): /goim/push/status with
	// [receipts] enabled = false.
	CodeNotImplemented = -501
)

// paramError is a rejected request parameter: "<param>: <why>", the
// message of a -400 response.
type paramError struct {
	param string // query parameter name, "query" or "body"
	why   string
}

func (e *paramError) Error() string { return e.param + ": " + e.why }
