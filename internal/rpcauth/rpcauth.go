// Package rpcauth authenticates goim's internal gRPC calls (comet to
// logic, job to comet) with a shared secret.
//
// Every service has an [rpc] section with secret_file and insecure
// (Config). The secret file holds one secret per line ("#" comments): the
// first line is the secret this service sends, every line is a secret it
// accepts, so a secret is rotated by adding the new one as a second line
// everywhere, then moving it first, then removing the old one. The
// variable GOIM_RPC_SECRET (entries separated by commas or newlines, same
// rule) wins over the file. Each secret is at least MinSecretLen bytes of
// printable ASCII without spaces.
//
// A client sends the secret on every call as the gRPC metadata
// "authorization: Bearer <secret>" (Keys.DialOptions). A server checks it
// (Keys.ServerOptions): the presented value is hashed with SHA-256 and
// compared in constant time with the hash of every accepted secret, all of
// them, so neither the time taken nor the order of the list tells how
// close a guess was. A call without a valid secret is counted and answered
// codes.Unauthenticated; with insecure = true it is counted and served.
//
// Without a secret and without insecure = true a service refuses to start
// (Config.Validate, Config.Load). The secret rides in clear on the private
// network (no TLS between the services): it keeps out whoever can reach
// the gRPC ports but cannot read the traffic; see docs/operations.md.
package rpcauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/ratelog"
	"github.com/goim/goim/internal/secret"
)

// EnvSecret is the variable that holds the secrets, comma or newline
// separated; when set and not blank it wins over secret_file.
const EnvSecret = "GOIM_RPC_SECRET"

// MinSecretLen is the shortest secret accepted, in bytes: 32 random bytes
// (or 32 hex digits and more) cannot be guessed over the network.
const MinSecretLen = 32

// maxValues bounds the authorization values of one call that are checked;
// a client sends one.
const maxValues = 4

// warnEvery is the least time between two warnings about refused calls.
const warnEvery = 10 * time.Second

const (
	headerKey = "authorization" // gRPC metadata keys are lower case
	scheme    = "Bearer "
	// refusedMsg is the message of the Unauthenticated status a server
	// answers a call without a valid secret (see Refused).
	refusedMsg = "rpcauth: missing or invalid rpc secret"
)

// ErrNoSecret: no secret is configured and insecure is false.
var ErrNoSecret = errors.New("rpcauth: no internal gRPC secret configured")

// Config is the credential part of a service's [rpc] section. Services
// embed it, so its keys sit next to the section's others.
type Config struct {
	// SecretFile holds the internal gRPC secrets, one per line ("#"
	// comments): the first is sent on every call, all are accepted. Each
	// at least 32 bytes. The variable GOIM_RPC_SECRET (a comma or newline
	// separated list, same rule) wins over it. Default "" (none).
	SecretFile string `toml:"secret_file"`
	// Insecure serves calls that carry no valid secret (they are still
	// counted; a configured secret is still sent). Without a secret and
	// without insecure = true the service refuses to start. For
	// development and for the first step of a rolling upgrade to
	// authenticated gRPC. Default false.
	Insecure bool `toml:"insecure"`
	// Secrets, when not empty, are the secrets (first sent, all accepted)
	// and replace the variable and the file. Not a configuration key: set
	// in code by the all-in-one (a secret it generates) and by tests.
	Secrets []string `toml:"-"`
}

// Validate records in p (the [rpc] section's collector) a missing secret:
// none in code, no secret_file, GOIM_RPC_SECRET unset or blank, and
// insecure false. The secrets themselves are read and checked by Load.
func (c Config) Validate(p *conf.Problems) {
	if c.Insecure || len(c.Secrets) > 0 || c.SecretFile != "" || strings.TrimSpace(os.Getenv(EnvSecret)) != "" {
		return
	}
	p.Add("secret_file", "no internal gRPC secret: set secret_file or %s (each secret at least %d bytes), "+
		"or insecure = true for development", EnvSecret, MinSecretLen)
}

// Keys are the loaded secrets of a service: the one it sends and the
// hashes of those it accepts.
type Keys struct {
	send     string              // "" when nothing is configured
	accept   [][sha256.Size]byte // SHA-256 of every accepted secret
	insecure bool
	source   secret.Source
}

// Load reads the secrets by the package's precedence (Secrets in code,
// then GOIM_RPC_SECRET, then secret_file) and checks each. With no secret
// it returns ErrNoSecret unless insecure is set. Errors name the source,
// never a secret.
func (c Config) Load() (*Keys, error) {
	var list []string
	src := secret.SourceNone
	switch env := os.Getenv(EnvSecret); {
	case len(c.Secrets) > 0:
		list, src = c.Secrets, secret.SourceCode
	case strings.TrimSpace(env) != "":
		list, src = secret.List(env), secret.SourceEnv
	case c.SecretFile != "":
		l, err := secret.ReadLines(c.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("rpc.secret_file: %w", err)
		}
		list, src = l, secret.SourceFile
	}
	where := map[secret.Source]string{
		secret.SourceCode: "rpc secret",
		secret.SourceEnv:  EnvSecret,
		secret.SourceFile: "rpc.secret_file " + c.SecretFile,
	}[src]
	k := &Keys{insecure: c.Insecure, source: src}
	seen := make(map[string]bool, len(list))
	for i, s := range list {
		if err := checkSecret(s); err != nil {
			return nil, fmt.Errorf("rpcauth: %s, entry %d: %w", where, i+1, err)
		}
		if seen[s] {
			continue
		}
		seen[s] = true
		k.accept = append(k.accept, sha256.Sum256([]byte(s)))
	}
	if len(list) > 0 {
		k.send = list[0]
	}
	if k.send == "" && !c.Insecure {
		return nil, fmt.Errorf("%w: set rpc.secret_file or %s, or rpc.insecure = true for development", ErrNoSecret, EnvSecret)
	}
	return k, nil
}

// checkSecret reports why s cannot be a secret.
func checkSecret(s string) error {
	if len(s) < MinSecretLen {
		return fmt.Errorf("the secret has %d bytes, at least %d needed", len(s), MinSecretLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Errorf("byte %d is not printable ASCII (spaces and control characters cannot travel in gRPC metadata)", i)
		}
	}
	return nil
}

// Generate returns a new random secret: 32 random bytes as 64 hex digits.
func Generate() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("rpcauth: generate: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Insecure reports whether calls without a valid secret are served.
func (k *Keys) Insecure() bool { return k.insecure }

// Sends reports whether a secret is sent on every call.
func (k *Keys) Sends() bool { return k.send != "" }

// Accepted is the number of distinct secrets accepted.
func (k *Keys) Accepted() int { return len(k.accept) }

// Source says where the secrets came from, for the start-up log.
func (k *Keys) Source() secret.Source { return k.source }

// Log writes one start-up line for service: where the secrets came from
// and how many are accepted (never a secret), at Warn when calls without
// a valid secret are served.
func (k *Keys) Log(log *slog.Logger, service string) {
	switch {
	case k.insecure && k.send == "":
		log.Warn(service + ": rpc.insecure = true and no secret: internal gRPC is NOT authenticated; anyone who reaches the gRPC port can call it (development only)")
	case k.insecure:
		log.Warn(service+": rpc.insecure = true: calls without a valid secret are served (and counted); set insecure = false once every client sends the secret",
			"secret_from", string(k.source), "accepted", len(k.accept))
	default:
		log.Info(service+": internal gRPC authenticated", "secret_from", string(k.source), "accepted", len(k.accept))
	}
}

// Credentials returns the per-call credentials that send the secret, or
// nil when there is none to send.
func (k *Keys) Credentials() credentials.PerRPCCredentials {
	if k.send == "" {
		return nil
	}
	return bearer{md: map[string]string{headerKey: scheme + k.send}}
}

// DialOptions returns the client options that send the secret on every
// call (none when there is no secret).
func (k *Keys) DialOptions() []grpc.DialOption {
	if c := k.Credentials(); c != nil {
		return []grpc.DialOption{grpc.WithPerRPCCredentials(c)}
	}
	return nil
}

// bearer sends "authorization: Bearer <secret>". The services talk plain
// gRPC on the private network, so it does not require transport security.
type bearer struct{ md map[string]string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return b.md, nil // gRPC only reads the map
}

func (bearer) RequireTransportSecurity() bool { return false }

// NewCounter registers on reg and returns the counter of calls without a
// valid secret: goim_<subsystem>_rpc_unauthenticated_total.
func NewCounter(reg prometheus.Registerer, subsystem string) (prometheus.Counter, error) {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "goim", Subsystem: subsystem, Name: "rpc_unauthenticated_total",
		Help: "Internal gRPC calls that carried no valid rpc secret: answered Unauthenticated, or served when rpc.insecure = true.",
	})
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("rpcauth: register metrics: %w", err)
	}
	return c, nil
}

// ServerOptions returns the server options that check every call, unary
// and streaming: a call without a valid secret is counted in unauth
// (which may be nil) and, unless insecure, answered Unauthenticated
// before its handler runs. Refusals are logged at most once per 10 s.
// With neither secret nor insecure (impossible after Load) every call is
// refused. They chain after the server's own interceptor, if any.
func (k *Keys) ServerOptions(unauth prometheus.Counter, log *slog.Logger) []grpc.ServerOption {
	g := k.guard(unauth, log)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := g.check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := g.check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

// UnaryServerInterceptor is the unary half of ServerOptions.
func (k *Keys) UnaryServerInterceptor(unauth prometheus.Counter, log *slog.Logger) grpc.UnaryServerInterceptor {
	g := k.guard(unauth, log)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := g.check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

func (k *Keys) guard(unauth prometheus.Counter, log *slog.Logger) *guard {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &guard{k: k, unauth: unauth, log: log, warns: ratelog.New(1, warnEvery)}
}

// guard checks the calls of one server.
type guard struct {
	k      *Keys
	unauth prometheus.Counter // may be nil
	log    *slog.Logger
	warns  *ratelog.Limiter // one warning per warnEvery
}

// check returns nil when the call may run: it carries an accepted secret,
// or the server is insecure. Otherwise it counts the call and returns
// codes.Unauthenticated.
func (g *guard) check(ctx context.Context, method string) error {
	if g.k.insecure && len(g.k.accept) == 0 {
		return nil // nothing to check against: every call is served
	}
	reason := "missing"
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if vals := md.Get(headerKey); len(vals) > 0 {
			if g.k.valid(vals) {
				return nil
			}
			reason = "invalid"
		}
	}
	if g.unauth != nil {
		g.unauth.Inc()
	}
	g.warn(ctx, method, reason)
	if g.k.insecure {
		return nil
	}
	return status.Error(codes.Unauthenticated, refusedMsg)
}

// Refused reports whether err is a server's refusal of the call's secret
// (not an Unauthenticated the service itself answered, such as logic
// refusing a client's token): the caller's secret is wrong or missing.
func Refused(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unauthenticated && st.Message() == refusedMsg
}

// valid reports whether one of vals is "Bearer <s>" with s an accepted
// secret. Every accepted hash is compared, whatever matched earlier.
func (k *Keys) valid(vals []string) bool {
	ok := 0
	for _, v := range vals[:min(len(vals), maxValues)] {
		if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
			continue
		}
		h := sha256.Sum256([]byte(v[len(scheme):]))
		for i := range k.accept {
			ok |= subtle.ConstantTimeCompare(h[:], k.accept[i][:])
		}
	}
	return ok == 1
}

// warn logs a call without a valid secret, at most one line per
// warnEvery; the line counts the calls held back before it (suppressed).
func (g *guard) warn(ctx context.Context, method, reason string) {
	msg := "rpc call refused: missing or invalid rpc secret"
	if g.k.insecure {
		msg = "rpc call without a valid secret served (rpc.insecure = true)"
	}
	ok, n := g.warns.Allow(msg)
	if !ok {
		return
	}
	from := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		from = p.Addr.String()
	}
	g.log.Warn(msg, "method", method, "remote", from, "reason", reason, "suppressed", n)
}
