package httpapi

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/secret"
)

// Limits of Config values.
const (
	// MaxBodyLimit is the largest Config.MaxBody accepted: 16 MiB.
	MaxBodyLimit = 16 << 20
	// MinTokenLen is the shortest bearer token accepted, in bytes.
	MinTokenLen = 16
	// DefaultMaxKeys and DefaultMaxMids are the defaults of Config.MaxKeys
	// and Config.MaxMids.
	DefaultMaxKeys = 1000
	DefaultMaxMids = 1000
	// MaxListLimit is the largest Config.MaxKeys or Config.MaxMids
	// accepted.
	MaxListLimit = 100000
	// MaxSpeed is the largest speed /goim/push/all accepts, connections
	// per second for the whole cluster.
	MaxSpeed = 1000000
	// minHeaderBytes and maxHeaderBytes bound Config.MaxHeaderBytes.
	minHeaderBytes = 1 << 10
	maxHeaderBytes = 16 << 20
)

// Config is the [http] section of logic's configuration: the push API
// listener.
type Config struct {
	// Bind is the host:port to listen on. Default ":3111" (all
	// interfaces). Port 0 picks a free port; see Server.Addr.
	Bind string `toml:"bind"`
	// MaxBody is the largest push message, in bytes. Default 4096, what
	// every goim v2 client accepts; a larger body is rejected with -400
	// and nothing is published. Must be 1..16777216.
	MaxBody int `toml:"max_body"`
	// ReadHeaderTimeout bounds reading a request's headers, a duration
	// string. Default "5s".
	ReadHeaderTimeout conf.Duration `toml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, headers and body, a
	// duration string. Default "10s".
	ReadTimeout conf.Duration `toml:"read_timeout"`
	// WriteTimeout bounds the time from the end of the request headers to
	// the end of the response, a duration string. Default "15s". It must
	// exceed the Kafka publish timeout (kafka.timeout, 5s by default) plus
	// the Redis lookups of a keys or mids push and the time to read the
	// body: otherwise a push that Kafka accepted late loses its response
	// and the caller sees a connection error for a published message.
	WriteTimeout conf.Duration `toml:"write_timeout"`
	// IdleTimeout is how long an idle keep-alive connection stays open, a
	// duration string. Default "60s".
	IdleTimeout conf.Duration `toml:"idle_timeout"`
	// MaxHeaderBytes bounds the request line and headers, in bytes; the
	// query string, which carries the keys or mids of a push, counts
	// against it. Default 65536. Must be 1024..16777216.
	MaxHeaderBytes int `toml:"max_header_bytes"`
	// Tokens are bearer tokens of full scope: a request to any push,
	// online or /goim/nodes/instances endpoint must carry
	// "Authorization: Bearer <token>" with one of them (or a read token,
	// below, for all but the push endpoints). /goim/nodes/weighted, which
	// clients call, stays public. Each token must be at least 16 bytes of
	// visible ASCII (no spaces). The full-scope tokens are the union of
	// this list, the lines of TokensFile and the GOIM_HTTP_TOKENS
	// variable, so several tokens, from several places, allow rotation
	// (that variable adds to this list rather than replacing it as other
	// GOIM_ variables replace their key, see conf.ApplyEnv). Default none.
	Tokens []string `toml:"tokens" env:"GOIM_HTTP_TOKENS"`
	// TokensFile is a file of more full-scope tokens, one per line; blank
	// lines and lines starting with "#" are ignored. Read at start (and
	// by -check-config). Default "" (none).
	TokensFile string `toml:"tokens_file"`
	// ReadTokens are bearer tokens of read scope: the online endpoints and
	// /goim/nodes/instances accept them; a push endpoint answers them
	// HTTP 403 (-403). Same rules as Tokens; unioned with the lines of
	// ReadTokensFile and the GOIM_HTTP_READ_TOKENS variable (which adds
	// to the list, as GOIM_HTTP_TOKENS does). A token may not have both
	// scopes. Default none.
	ReadTokens []string `toml:"read_tokens" env:"GOIM_HTTP_READ_TOKENS"`
	// ReadTokensFile is a file of more read-scope tokens, as TokensFile.
	// Default "" (none).
	ReadTokensFile string `toml:"read_tokens_file"`
	// AllowAnonymous lets logic start with no credential at all (no token
	// from any source): every endpoint is then open to anyone who reaches
	// Bind, which logic logs as a warning at start. For development only
	// (the all-in-one's config). Without it, and without a credential,
	// logic refuses to start. When credentials are configured they are
	// required whatever this says. Default false.
	AllowAnonymous bool `toml:"allow_anonymous"`
	// MaxKeys is the most keys one /goim/push/keys request may name
	// (after duplicates are dropped); more is rejected with -400. Each
	// key costs a Redis lookup. Default 1000, at most 100000.
	MaxKeys int `toml:"max_keys"`
	// MaxMids is the most user ids one /goim/push/mids request may name
	// (after duplicates are dropped); more is rejected with -400. Each
	// user costs a Redis lookup. Default 1000, at most 100000.
	MaxMids int `toml:"max_mids"`
	// TrustedProxies are the IPs and CIDRs ("10.0.0.0/8") of reverse
	// proxies whose X-Forwarded-For and X-Real-IP headers give the client
	// IP for /goim/nodes/weighted. Default none: the client IP is the peer
	// address and those headers are ignored.
	TrustedProxies []string `toml:"trusted_proxies"`
}

// DefaultConfig returns the defaults of every Config field.
func DefaultConfig() Config {
	return Config{
		Bind:              ":3111",
		MaxBody:           4096,
		ReadHeaderTimeout: conf.Duration(5 * time.Second),
		ReadTimeout:       conf.Duration(10 * time.Second),
		WriteTimeout:      conf.Duration(15 * time.Second),
		IdleTimeout:       conf.Duration(60 * time.Second),
		MaxHeaderBytes:    64 << 10,
		MaxKeys:           DefaultMaxKeys,
		MaxMids:           DefaultMaxMids,
	}
}

// Validate records c's problems in p, with key paths relative to p's
// section (call it with p.Sub("http")).
func (c Config) Validate(p *conf.Problems) {
	if p.HostPort("bind", c.Bind) {
		_, port, _ := net.SplitHostPort(c.Bind)
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			p.Add("bind", "port %q of %q must be a number from 0 to 65535", port, c.Bind)
		}
	}
	p.Check(c.MaxBody >= 1 && c.MaxBody <= MaxBodyLimit, "max_body",
		"must be 1..%d bytes, got %d", MaxBodyLimit, c.MaxBody)
	p.Check(c.ReadHeaderTimeout > 0, "read_header_timeout", "must be > 0, got %v", c.ReadHeaderTimeout)
	p.Check(c.ReadTimeout > 0, "read_timeout", "must be > 0, got %v", c.ReadTimeout)
	p.Check(c.WriteTimeout > 0, "write_timeout", "must be > 0, got %v", c.WriteTimeout)
	p.Check(c.IdleTimeout > 0, "idle_timeout", "must be > 0, got %v", c.IdleTimeout)
	p.Check(c.MaxHeaderBytes >= minHeaderBytes && c.MaxHeaderBytes <= maxHeaderBytes, "max_header_bytes",
		"must be %d..%d bytes, got %d", minHeaderBytes, maxHeaderBytes, c.MaxHeaderBytes)
	p.Check(c.MaxKeys >= 1 && c.MaxKeys <= MaxListLimit, "max_keys", "must be 1..%d, got %d", MaxListLimit, c.MaxKeys)
	p.Check(c.MaxMids >= 1 && c.MaxMids <= MaxListLimit, "max_mids", "must be 1..%d, got %d", MaxListLimit, c.MaxMids)
	for _, list := range []struct {
		key    string
		tokens []string
	}{{"tokens", c.Tokens}, {"read_tokens", c.ReadTokens}} {
		for i, tok := range list.tokens {
			if why := checkToken(tok); why != "" {
				p.Add(conf.Index(list.key, i), "%s", why)
			}
		}
	}
	for i, proxy := range c.TrustedProxies {
		if err := checkProxy(proxy); err != nil {
			p.Add(conf.Index("trusted_proxies", i), "%w", err)
		}
	}
}

// checkToken says what is wrong with a bearer token, or "". The token
// itself is never echoed: config errors get logged.
func checkToken(tok string) string {
	switch {
	case tok == "":
		return "must not be empty"
	case len(tok) < MinTokenLen:
		return fmt.Sprintf("must be at least %d bytes, got %d", MinTokenLen, len(tok))
	case strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0:
		return "must be visible ASCII without spaces"
	}
	return ""
}

// Environment variables holding push API tokens, comma- or
// newline-separated.
const (
	// EnvTokens adds full-scope tokens (Config.Tokens).
	EnvTokens = "GOIM_HTTP_TOKENS"
	// EnvReadTokens adds read-scope tokens (Config.ReadTokens).
	EnvReadTokens = "GOIM_HTTP_READ_TOKENS"
)

// ErrNoCredential: no push API token is configured anywhere and
// allow_anonymous is not set, so logic refuses to start.
var ErrNoCredential = errors.New("no push API credential: set http.tokens, http.tokens_file or " + EnvTokens +
	" (or http.allow_anonymous = true, for development only: the push API is then open to anyone)")

// Credentials are the push API's tokens from every source.
type Credentials struct {
	// Full are the full-scope tokens; Read the read-scope ones. Each list
	// is de-duplicated, and no token is in both.
	Full, Read []string
}

// Anonymous reports whether no credential is configured: the API is open.
func (c Credentials) Anonymous() bool { return len(c.Full) == 0 && len(c.Read) == 0 }

// Credentials reads the tokens of every source: the variables
// GOIM_HTTP_TOKENS and GOIM_HTTP_READ_TOKENS, the files tokens_file and
// read_tokens_file, and the lists tokens and read_tokens. It fails when a
// file cannot be read or holds no token, when a token breaks the rules of
// Config.Tokens, when a token has both scopes, and (wrapping
// ErrNoCredential) when there is no token at all and AllowAnonymous is
// not set. Errors name the source, never the token.
func (c Config) Credentials() (Credentials, error) {
	full, errFull := resolveTokens(EnvTokens, os.Getenv(EnvTokens), "http.tokens_file", c.TokensFile, "http.tokens", c.Tokens)
	read, errRead := resolveTokens(EnvReadTokens, os.Getenv(EnvReadTokens), "http.read_tokens_file", c.ReadTokensFile, "http.read_tokens", c.ReadTokens)
	if err := errors.Join(errFull, errRead); err != nil {
		return Credentials{}, err
	}
	isFull := make(map[string]bool, len(full))
	for _, t := range full {
		isFull[t] = true
	}
	for _, t := range read {
		if isFull[t] {
			return Credentials{}, errors.New("http.read_tokens: a read-scope token is also a full-scope token; give each token one scope")
		}
	}
	creds := Credentials{Full: full, Read: read}
	if creds.Anonymous() && !c.AllowAnonymous {
		return Credentials{}, ErrNoCredential
	}
	return creds, nil
}

// resolveTokens returns the union, in order and without repeats, of the
// tokens in envValue (the value of the variable env), the file at path
// (config key fileKey) and inline (config key inlineKey), each checked by
// checkToken. It is secret.ResolveList with errors that say which source
// holds a bad token (and never the token).
func resolveTokens(env, envValue, fileKey, path, inlineKey string, inline []string) ([]string, error) {
	var (
		all  []string
		errs []error
	)
	add := func(where string, tokens []string) {
		for i, tok := range tokens {
			if why := checkToken(tok); why != "" {
				errs = append(errs, fmt.Errorf("%s: token %d %s", where, i+1, why))
				continue
			}
			all = append(all, tok)
		}
	}
	add(env, secret.List(envValue))
	if path != "" {
		lines, err := secret.ReadLines(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", fileKey, err))
		}
		add(fileKey+" "+path, lines)
	}
	add(inlineKey, inline)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return secret.Unique(all), nil
}

// checkProxy accepts what gin's Engine.SetTrustedProxies accepts: an IP, or
// a CIDR when the string holds a '/'.
func checkProxy(s string) error {
	if strings.Contains(s, "/") {
		_, _, err := net.ParseCIDR(s)
		return err
	}
	if net.ParseIP(s) == nil {
		return &net.ParseError{Type: "IP address", Text: s}
	}
	return nil
}
