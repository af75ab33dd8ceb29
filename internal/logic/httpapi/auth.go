package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

const tokenHashLen = sha256.Size

// scope is what a credential allows. The values are ordered: a scope
// allows everything a lower one does.
type scope int

const (
	// scopeNone: no valid credential.
	scopeNone scope = iota
	// scopeRead: the online endpoints and /goim/nodes/instances.
	scopeRead
	// scopeFull: every endpoint, pushes included.
	scopeFull
)

// credential is one accepted token, kept as its SHA-256 only.
type credential struct {
	hash  [tokenHashLen]byte
	scope scope
}

// newCredentials hashes the tokens of c. Comparing hashes keeps the
// comparison's time independent of the tokens' lengths as well as their
// contents.
func newCredentials(c Credentials) []credential {
	out := make([]credential, 0, len(c.Full)+len(c.Read))
	for _, t := range c.Full {
		out = append(out, credential{hash: sha256.Sum256([]byte(t)), scope: scopeFull})
	}
	for _, t := range c.Read {
		out = append(out, credential{hash: sha256.Sum256([]byte(t)), scope: scopeRead})
	}
	return out
}

// Reasons a request fails authentication: the reason label of
// goim_logic_http_auth_failures_total.
const (
	// reasonMissing: no Authorization header.
	reasonMissing = "missing"
	// reasonInvalid: an Authorization header that is not "Bearer <one of
	// the tokens>".
	reasonInvalid = "invalid"
	// reasonForbidden: a valid token whose scope does not cover the
	// endpoint (a read token on a push endpoint).
	reasonForbidden = "forbidden"
)

// authenticate returns the scope r's credential grants, or scopeNone and
// the reason (reasonMissing or reasonInvalid). The header must be
// "Bearer <token>" (scheme case-insensitive, RFC 7235). Every configured
// token is compared, in constant time, whether or not one matched; no
// token has two scopes, so at most one matches.
func (s *Server) authenticate(r *http.Request) (scope, string) {
	h, ok := r.Header["Authorization"]
	if !ok || len(h) == 0 || h[0] == "" {
		return scopeNone, reasonMissing
	}
	const scheme = "Bearer "
	v := h[0]
	if len(h) > 1 || len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return scopeNone, reasonInvalid
	}
	got := sha256.Sum256([]byte(strings.TrimLeft(v[len(scheme):], " ")))
	granted := int(scopeNone)
	for i := range s.creds {
		match := subtle.ConstantTimeCompare(got[:], s.creds[i].hash[:])
		granted = subtle.ConstantTimeSelect(match, int(s.creds[i].scope), granted)
	}
	if granted == int(scopeNone) {
		return scopeNone, reasonInvalid
	}
	return scope(granted), ""
}

// Challenges of the WWW-Authenticate header (RFC 6750): a missing
// credential gets the bare challenge, a wrong one says invalid_token, a
// read token on a push endpoint says insufficient_scope.
const (
	challengeMissing   = `Bearer realm="goim"`
	challengeInvalid   = `Bearer realm="goim", error="invalid_token"`
	challengeForbidden = `Bearer realm="goim", error="insufficient_scope"`
)
