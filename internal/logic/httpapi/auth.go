package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

const tokenHashLen = sha256.Size

// hashTokens returns the SHA-256 of each token. Comparing hashes keeps the
// comparison's time independent of the tokens' lengths as well as their
// contents.
func hashTokens(tokens []string) [][tokenHashLen]byte {
	out := make([][tokenHashLen]byte, len(tokens))
	for i, t := range tokens {
		out[i] = sha256.Sum256([]byte(t))
	}
	return out
}

// authorized reports whether r may use a protected endpoint: no token is
// configured, or its Authorization header is "Bearer <token>" (scheme
// case-insensitive, RFC 7235) with one of them. Every configured token is
// compared, in constant time.
func (s *Server) authorized(r *http.Request) bool {
	if len(s.tokens) == 0 {
		return true
	}
	const scheme = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimLeft(h[len(scheme):], " ")))
	match := 0
	for i := range s.tokens {
		match |= subtle.ConstantTimeCompare(got[:], s.tokens[i][:])
	}
	return match == 1
}
