// Package httpapi is logic's HTTP API (docs/push-api.md): push, online
// counts and the comet nodes clients connect to, served with gin.
//
// Routes:
//
//	POST /goim/push/keys       ?operation=&keys=        push to connections
//	POST /goim/push/mids       ?operation=&mids=        push to users
//	POST /goim/push/room       ?operation=&type=&room=  push to room type://room
//	POST /goim/push/all        ?operation=&speed=       broadcast
//	GET  /goim/push/status     ?msg_id=                 delivery receipts of a push
//	GET  /goim/online/top      ?type=&limit=            busiest rooms of a type
//	GET  /goim/online/room     ?type=&rooms=            counts of rooms
//	GET  /goim/online/total                             connections and IPs
//	GET  /goim/online/comets                            comets, load, draining
//	GET  /goim/nodes/weighted  ?platform=               where a client connects
//	GET  /goim/nodes/instances                          comets from discovery
//	GET  /nodes/instances                               the same
//	GET  /goim.js                                       the browser client module
//	GET  /console, /console/console.js, /console/console.css   the web console
//
// Every response is the JSON envelope {"code":N,"message":"...","data":...}
// with the codes of errors.go. Push bodies are the message, raw bytes of
// any content type, at most Config.MaxBody bytes; an empty body is
// rejected (-400: a client would receive an empty frame, which is always a
// caller's mistake such as sending the message as a form field).
//
// A request is checked in this order, the first failure answering:
// draining (503), bearer token (401 missing or wrong, 403 a read token on
// a push endpoint), query parameters (400), body (400); only then is the
// service called. So a rejected request never reads its body, and nothing
// is published unless every check passed. The push endpoints need a
// full-scope token; the online endpoints, /goim/push/status and the
// instances endpoints take a read-scope one too. The push, status and
// online endpoints answer 503 while draining; the nodes endpoints keep
// answering while logic drains, and
// /goim/nodes/weighted, which clients call to find a comet, is public.
// With no credential configured (Config.AllowAnonymous) every endpoint is
// open. Endpoints without parameters ignore the query string.
//
// HEAD is not served: /goim/nodes/weighted has a side effect (it counts the
// client against the node it returns) and the online endpoints do the full
// work, so a HEAD gets 405 with "Allow: GET" like any other wrong method.
// A trailing slash is not redirected: "/goim/push/keys/" is 404.
//
// /goim.js is the browser client (package webclient): a static ES module,
// public, served while draining, to GET and HEAD (with an ETag), with
// "Access-Control-Allow-Origin: *" so that pages of other origins import
// it. Like the Pages it is not counted in the endpoint metrics.
//
// The console (package console) is public the same way, to GET and HEAD:
// a static shell of three files that holds no data; the page calls the
// endpoints above with the operator's bearer token.
package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/console"
	"github.com/goim/goim/internal/httpserve"
	"github.com/goim/goim/internal/logging"
	"github.com/goim/goim/internal/ratelog"
	"github.com/goim/goim/internal/webclient"
)

// Deps are the Server's collaborators other than the Service.
type Deps struct {
	// Logger receives the access log (debug level), service errors and
	// panics. Nil discards.
	Logger *slog.Logger
	// Registry receives the goim_logic_http_* metrics. Nil means a private
	// registry nobody scrapes.
	Registry prometheus.Registerer
	// Pages are extra GET pages served beside the API, path -> handler:
	// the all-in-one's browser demo (/demo). They are public, uncounted,
	// and must not start with /goim/ nor be /goim.js (the browser client
	// module, always served).
	Pages map[string]http.Handler
}

// Server is the HTTP API server. Create it with New, then Start it;
// SetDraining and Shutdown stop it.
type Server struct {
	cfg     Config
	svc     Service
	log     *slog.Logger
	metrics *metrics
	engine  *gin.Engine
	srv     *http.Server
	// creds are the accepted tokens (Config.Credentials), hashed;
	// anonymous is set when there is none: every endpoint is open.
	creds     []credential
	anonymous bool

	draining atomic.Bool
	// warns lets one line a second through of each warning that comes at
	// a caller's pace: failed pushes, and net/http's own error log, which
	// clients can trigger.
	warns *ratelog.Limiter

	// http is the listener: Start, Addr, Shutdown, and the request
	// contexts Shutdown cancels when it runs out of time.
	http *httpserve.Server
}

// access says which checks a route's requests pass before its handler.
type access struct {
	need   scope // the credential's scope the route needs
	drains bool  // the route answers 503 while draining
}

var (
	// public routes need no token and are served while draining.
	public = access{}
	// nodesRead routes need a read or full token and are served while
	// draining: /goim/nodes/instances.
	nodesRead = access{need: scopeRead}
	// onlineRead routes need a read or full token and answer 503 while
	// draining: the online endpoints.
	onlineRead = access{need: scopeRead, drains: true}
	// pushFull routes need a full token and answer 503 while draining.
	pushFull = access{need: scopeFull, drains: true}
)

// handler serves one request: it writes the whole response and returns
// the envelope code it wrote.
type handler func(c *gin.Context) int

// ginModeOnce leaves gin's debug mode once per process: in debug mode gin
// prints a warning and every route to stdout. gin keeps the mode in a
// global; it is the only global New touches, and only when it is "debug"
// (gin's default): a "release" or "test" mode is left as it is.
var ginModeOnce sync.Once

// New returns a server, not yet listening, serving svc. It validates cfg,
// reads its credentials (Config.Credentials: the token files and
// variables) and registers the metrics on deps.Registry; it fails when cfg
// is invalid, no credential is configured and anonymous access is not
// allowed (ErrNoCredential), a token source cannot be read, svc is nil, or
// the metrics are already registered there.
func New(cfg Config, svc Service, deps Deps) (*Server, error) {
	var p conf.Problems
	cfg.Validate(&p)
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	if svc == nil {
		return nil, errors.New("httpapi: nil Service")
	}
	creds, err := cfg.Credentials()
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	logger := logging.OrDiscard(deps.Logger)
	m, err := newMetrics(admin.OrPrivate(deps.Registry))
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, svc: svc, log: logger, metrics: m, creds: newCredentials(creds), anonymous: creds.Anonymous(),
		warns: ratelog.New(1, time.Second)}

	ginModeOnce.Do(func() {
		if gin.IsDebugging() {
			gin.SetMode(gin.ReleaseMode)
		}
	})
	e := gin.New()
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = true
	e.UseRawPath = false
	e.UseEscapedPath = false
	e.RemoveExtraSlash = false
	e.TrustedPlatform = ""
	e.ForwardedByClientIP = true
	e.RemoteIPHeaders = []string{"X-Forwarded-For", "X-Real-IP"}
	// With no trusted proxy, ClientIP is the peer address and the headers
	// above are ignored (gin trusts every proxy by default).
	if err := e.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("httpapi: trusted_proxies: %w", err)
	}
	s.engine = e

	s.route(http.MethodPost, "/goim/push/keys", pushFull, s.pushKeys)
	s.route(http.MethodPost, "/goim/push/mids", pushFull, s.pushMids)
	s.route(http.MethodPost, "/goim/push/room", pushFull, s.pushRoom)
	s.route(http.MethodPost, "/goim/push/all", pushFull, s.pushAll)
	s.route(http.MethodGet, "/goim/push/status", onlineRead, s.pushStatus)
	s.route(http.MethodGet, "/goim/online/top", onlineRead, s.onlineTop)
	s.route(http.MethodGet, "/goim/online/room", onlineRead, s.onlineRoom)
	s.route(http.MethodGet, "/goim/online/total", onlineRead, s.onlineTotal)
	s.route(http.MethodGet, "/goim/online/comets", onlineRead, s.onlineComets)
	s.route(http.MethodGet, "/goim/nodes/weighted", public, s.nodesWeighted)
	s.route(http.MethodGet, "/goim/nodes/instances", nodesRead, s.nodesInstances)
	s.route(http.MethodGet, "/nodes/instances", nodesRead, s.nodesInstances)
	js := gin.WrapH(webclient.Handler())
	e.GET(webclient.Path, js)
	e.HEAD(webclient.Path, js)
	// The console's static shell is public like /goim.js: it holds no
	// data, which the page fetches from the endpoints above with the
	// operator's credential.
	con := gin.WrapH(console.Handler())
	for _, path := range console.Paths {
		e.GET(path, con)
		e.HEAD(path, con)
	}
	for path, h := range deps.Pages {
		if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "/goim/") || path == webclient.Path ||
			slices.Contains(console.Paths, path) || h == nil {
			return nil, fmt.Errorf("httpapi: page %q: want a path outside /goim/, not %s or the console's, and a handler", path, webclient.Path)
		}
		e.GET(path, gin.WrapH(h))
	}
	e.NoRoute(s.wrap(nil, public, s.notFound))
	e.NoMethod(s.wrap(nil, public, s.methodNotAllowed))

	s.srv = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout.D(),
		ReadTimeout:       cfg.ReadTimeout.D(),
		WriteTimeout:      cfg.WriteTimeout.D(),
		IdleTimeout:       cfg.IdleTimeout.D(),
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          log.New(&errorLog{s: s}, "", 0),
	}
	s.http = httpserve.New("httpapi", s.srv, logger)
	return s, nil
}

// route registers h at method and path with its metrics.
func (s *Server) route(method, path string, acc access, h handler) {
	codes := []int{CodeOK, CodeBadRequest, CodeServerError}
	if acc.need != scopeNone {
		codes = append(codes, CodeUnauthorized)
	}
	if acc.need == scopeFull {
		codes = append(codes, CodeForbidden)
	}
	s.engine.Handle(method, path, s.wrap(s.metrics.endpoint(path, codes...), acc, h))
}

// wrap turns h into a gin handler that runs acc's checks first, recovers a
// panic, counts the request and writes the access log. m nil means the
// metrics of the request's path, for the 404 and 405 handlers.
func (s *Server) wrap(m *endpointMetrics, acc access, h handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		code := CodeServerError // what a panic leaves
		defer s.finish(c, m, start, &code)
		if acc.drains && s.draining.Load() {
			closeAfter(c.Writer)
			code = s.fail(c, http.StatusServiceUnavailable, CodeServerError, "logic is shutting down")
			return
		}
		if acc.need != scopeNone && !s.anonymous {
			if code = s.authorize(c, acc.need); code != CodeOK {
				return
			}
		}
		code = h(c)
	}
}

// authorize checks the request's credential against need. It answers 401
// (no valid token) or 403 (a read token where a full one is needed), with
// a WWW-Authenticate challenge, counts the failure and returns its code;
// it returns CodeOK, having written nothing, when the credential will do.
func (s *Server) authorize(c *gin.Context, need scope) int {
	got, reason := s.authenticate(c.Request)
	h := c.Writer.Header()
	switch {
	case got >= need:
		return CodeOK
	case got == scopeNone && reason == reasonMissing:
		s.metrics.authMissing.Inc()
		h.Set("WWW-Authenticate", challengeMissing)
		return s.fail(c, http.StatusUnauthorized, CodeUnauthorized, "missing bearer token: send \"Authorization: Bearer <token>\"")
	case got == scopeNone:
		s.metrics.authInvalid.Inc()
		h.Set("WWW-Authenticate", challengeInvalid)
		return s.fail(c, http.StatusUnauthorized, CodeUnauthorized, "invalid bearer token")
	default:
		s.metrics.authForbidden.Inc()
		h.Set("WWW-Authenticate", challengeForbidden)
		return s.fail(c, http.StatusForbidden, CodeForbidden, "the bearer token has read scope only; pushes need a full-scope token")
	}
}

// finish is deferred by every handler: the last-resort panic recovery, the
// metrics and the access log.
func (s *Server) finish(c *gin.Context, m *endpointMetrics, start time.Time, code *int) {
	if r := recover(); r != nil {
		if r == http.ErrAbortHandler {
			panic(r) // net/http's way to abort a response; it handles it
		}
		s.log.Error("httpapi: panic serving request", "method", c.Request.Method,
			"path", c.Request.URL.Path, "panic", r, "stack", string(debug.Stack()))
		if !c.Writer.Written() {
			closeAfter(c.Writer)
			writeBody(c.Writer, http.StatusInternalServerError, internalErrorBody)
		}
		*code = CodeServerError
	}
	d := time.Since(start)
	if m == nil {
		m = s.metrics.lookup(c.Request.URL.Path)
	}
	m.observe(*code, d)
	if s.log.Enabled(c.Request.Context(), slog.LevelDebug) {
		s.log.LogAttrs(c.Request.Context(), slog.LevelDebug, "httpapi: request",
			slog.String("method", c.Request.Method),
			slog.String("path", c.Request.URL.Path),
			slog.Int("status", c.Writer.Status()),
			slog.Int("code", *code),
			slog.Duration("latency", d),
			slog.String("client_ip", c.ClientIP()))
	}
}

// fail writes an error envelope and returns its code.
func (s *Server) fail(c *gin.Context, status, code int, message string) int {
	body, err := encode(code, message, nil)
	if err != nil { // a string cannot fail to encode
		body, code, status = internalErrorBody, CodeServerError, http.StatusInternalServerError
	}
	writeBody(c.Writer, status, body)
	return code
}

// badRequest answers -400 with err's text, a paramError's "<param>: <why>".
func (s *Server) badRequest(c *gin.Context, err error) int {
	return s.fail(c, http.StatusBadRequest, CodeBadRequest, err.Error())
}

// ok answers code 0 with data, or exactly {"code":0,"message":""} when data
// is nil.
func (s *Server) ok(c *gin.Context, data any) int {
	if data == nil {
		writeBody(c.Writer, http.StatusOK, okBody)
		return CodeOK
	}
	body, err := encode(CodeOK, "", data)
	if err != nil {
		s.log.Error("httpapi: encode response", "path", c.Request.URL.Path, "err", err)
		writeBody(c.Writer, http.StatusInternalServerError, internalErrorBody)
		return CodeServerError
	}
	writeBody(c.Writer, http.StatusOK, body)
	return CodeOK
}

func (s *Server) notFound(c *gin.Context) int {
	return s.fail(c, http.StatusNotFound, CodeNotFound,
		"no such endpoint: "+c.Request.Method+" "+c.Request.URL.Path)
}

// methodNotAllowed answers a known path with the wrong method; gin has set
// the Allow header.
func (s *Server) methodNotAllowed(c *gin.Context) int {
	allow := c.Writer.Header().Get("Allow")
	return s.fail(c, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
		"method "+c.Request.Method+" not allowed on "+c.Request.URL.Path+"; use "+strings.ReplaceAll(allow, ", ", " or "))
}

// scopes counts the configured tokens of each scope.
func (s *Server) scopes() (full, read int) {
	for _, c := range s.creds {
		if c.scope == scopeFull {
			full++
		} else {
			read++
		}
	}
	return full, read
}

// errorLog receives net/http's own error lines (a connection it failed
// to serve, a response written twice). Such lines can come once per
// request or connection, and so at a client's pace; they are logged at
// Warn at most once a second, with the count of lines held back since the
// last one.
type errorLog struct{ s *Server }

func (w *errorLog) Write(p []byte) (int, error) {
	const msg = "httpapi: net/http error"
	if ok, suppressed := w.s.warns.Allow(msg); ok {
		w.s.log.LogAttrs(context.Background(), slog.LevelWarn, msg,
			slog.String("line", string(bytes.TrimRight(p, "\n"))), slog.Int64("suppressed", int64(suppressed)))
	}
	return len(p), nil
}

// Anonymous reports whether no credential is configured, so that every
// endpoint is open (Config.AllowAnonymous).
func (s *Server) Anonymous() bool { return s.anonymous }

// Handler returns the API's handler, for tests and benchmarks that skip
// the listener. Its requests still pass every check, metric and log.
func (s *Server) Handler() http.Handler { return s.engine }

// Start opens the listener on Config.Bind and serves on a goroutine that
// Shutdown stops. It fails if the address cannot be bound, if called
// twice, or after Shutdown.
func (s *Server) Start() error {
	full, read := s.scopes()
	if err := s.http.Start(s.cfg.Bind, "anonymous", s.anonymous, "full_tokens", full, "read_tokens", read); err != nil {
		return err
	}
	if s.anonymous {
		s.log.Warn("!!! httpapi: NO CREDENTIAL CONFIGURED (http.allow_anonymous = true): anyone who reaches " +
			s.http.Addr() + " may push to every user and room, broadcast, and read the online counts and comet addresses." +
			" For development only: set http.tokens_file or " + EnvTokens + " in production.")
	}
	return nil
}

// Addr returns the address the server listens on, with the actual port
// when Config.Bind had port 0, or "" before Start.
func (s *Server) Addr() string { return s.http.Addr() }

// SetDraining makes the push and online endpoints answer HTTP 503
// {"code":-500,"message":"logic is shutting down"} from now on, closing the
// connection so that keep-alive callers reconnect, through their load
// balancer, to another logic. The nodes endpoints keep answering. Requests
// already past the check complete. Call it before Shutdown, leaving load
// balancers time to notice; it cannot be undone.
func (s *Server) SetDraining() {
	if !s.draining.Swap(true) {
		s.log.Info("httpapi draining")
	}
}

// Shutdown stops the server: it closes the listener at once, waits for
// in-flight requests (a push waits for its Kafka acknowledgement) and
// closes idle connections. If ctx ends first it cancels the contexts of the
// requests still running, closes every connection, waits for the Serve
// goroutine and returns ctx's error; those handlers return when their
// service call does. It is idempotent: later calls wait for the first one
// and return its result. It may be called without Start.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }
