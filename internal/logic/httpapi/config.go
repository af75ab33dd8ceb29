package httpapi

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/goim/goim/internal/conf"
)

// Limits of Config values.
const (
	// MaxBodyLimit is the largest Config.MaxBody accepted: 16 MiB.
	MaxBodyLimit = 16 << 20
	// MinTokenLen is the shortest bearer token accepted, in bytes.
	MinTokenLen = 16
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
	// Tokens are the accepted bearer tokens. When non-empty, the push and
	// online endpoints require "Authorization: Bearer <one of them>"; the
	// nodes endpoints, which clients call, stay public. Each must be at
	// least 16 bytes of visible ASCII (no spaces). Several tokens allow
	// rotation. Default none: no authentication, so bind to a private
	// network.
	Tokens []string `toml:"tokens"`
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
	}
}

// Validate records c's problems in p, with key paths relative to p's
// section (call it with p.Sub("http")).
func (c Config) Validate(p *conf.Problems) {
	if _, port, err := net.SplitHostPort(c.Bind); err != nil {
		p.Add("bind", "%w", err)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		p.Add("bind", "port %q of %q must be a number from 0 to 65535", port, c.Bind)
	}
	p.Check(c.MaxBody >= 1 && c.MaxBody <= MaxBodyLimit, "max_body",
		"must be 1..%d bytes, got %d", MaxBodyLimit, c.MaxBody)
	p.Check(c.ReadHeaderTimeout > 0, "read_header_timeout", "must be > 0, got %v", c.ReadHeaderTimeout)
	p.Check(c.ReadTimeout > 0, "read_timeout", "must be > 0, got %v", c.ReadTimeout)
	p.Check(c.WriteTimeout > 0, "write_timeout", "must be > 0, got %v", c.WriteTimeout)
	p.Check(c.IdleTimeout > 0, "idle_timeout", "must be > 0, got %v", c.IdleTimeout)
	p.Check(c.MaxHeaderBytes >= minHeaderBytes && c.MaxHeaderBytes <= maxHeaderBytes, "max_header_bytes",
		"must be %d..%d bytes, got %d", minHeaderBytes, maxHeaderBytes, c.MaxHeaderBytes)
	for i, tok := range c.Tokens {
		switch {
		case tok == "":
			p.Add(conf.Index("tokens", i), "must not be empty")
		case len(tok) < MinTokenLen:
			p.Add(conf.Index("tokens", i), "must be at least %d bytes, got %d", MinTokenLen, len(tok))
		case strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0:
			// The token itself is never echoed: config errors get logged.
			p.Add(conf.Index("tokens", i), "must be visible ASCII without spaces")
		}
	}
	for i, proxy := range c.TrustedProxies {
		if err := checkProxy(proxy); err != nil {
			p.Add(conf.Index("trusted_proxies", i), "%w", err)
		}
	}
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
