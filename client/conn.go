package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/goim/goim/api/protocol"
)

// Transport is how a client reaches a comet.
type Transport string

// The transports a comet listens on.
const (
	TCP Transport = "tcp" // raw TCP
	TLS Transport = "tls" // TCP over TLS
	WS  Transport = "ws"  // WebSocket
	WSS Transport = "wss" // WebSocket over TLS
)

// secure reports whether the transport runs over TLS.
func (t Transport) secure() bool { return t == TLS || t == WSS }

// websocket reports whether the transport is a WebSocket one.
func (t Transport) websocket() bool { return t == WS || t == WSS }

// Auth is the body of the auth frame (op 7), goim v2's JSON plus token:
// with insecure auth logic trusts Mid and Key; otherwise it verifies Token
// and takes the user from it.
type Auth struct {
	Mid      int64   `json:"mid"`             // user id; 0 anonymous
	Key      string  `json:"key"`             // connection key asked for; empty lets logic pick
	RoomID   string  `json:"room_id"`         // room to join, "type://id"; empty joins none
	Platform string  `json:"platform"`        // "web", "android", "ios", ...
	Accepts  []int32 `json:"accepts"`         // ops received for key, user and broadcast pushes
	Token    string  `json:"token,omitempty"` // signed credential (secure auth)
	// Reliable opts the connection in to reliable delivery: pushes arrive
	// as op-18 envelopes (protocol.DecodeEnvelope), op 20 reports the
	// streams, op 19 (Conn.Ack) acknowledges. A Client sets it from
	// Config.Reliable.
	Reliable bool `json:"reliable,omitempty"`
	// Since is the last position seen in each stream, for a reliable
	// connection that recovers what it missed. A Client sets it from its
	// positions at each connect.
	Since *protocol.Since `json:"since,omitempty"`
}

// Frame is one frame received: an op-9 batch arrives as its inner frames.
type Frame struct {
	Op, Seq int32
	// Body aliases the connection's read buffer: valid only during the
	// ReadFrames callback that received it (copy it to keep it).
	Body []byte
}

// DialOptions tune Dial. The zero value dials raw TCP with the defaults.
type DialOptions struct {
	// Transport is TCP (the default, also for ""), TLS, WS or WSS.
	Transport Transport
	// Path is the WebSocket path, default "/sub"; it may carry a query
	// ("/sub?x=1").
	Path string
	// TLSConfig configures TLS and WSS. nil uses the system roots; a
	// config without ServerName gets the host of the address dialed.
	TLSConfig *tls.Config
	// NetDial dials the TCP connection; default a net.Dialer.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Header holds extra WebSocket upgrade request headers (Origin, say).
	Header http.Header
	// HandshakeTimeout bounds the dial, TLS handshake, WebSocket upgrade
	// and the wait for the auth reply together. Default 10s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds each write (frames, heartbeats, pongs, the close
	// frame). Default 10s.
	WriteTimeout time.Duration
	// MaxBody is the largest frame body (and WebSocket message, less its
	// 16-byte header) accepted from the comet: a larger one is a
	// *ProtocolError. Default 16 MiB; the comet may send frames larger
	// than the 4096-byte limit it applies to clients.
	MaxBody int
	// ReadBufferSize is the size of the connection's one read buffer,
	// default 4096 (at least 16). A frame larger than it gets a body of
	// its own; a WebSocket op-9 batch is streamed through it whatever its
	// size.
	ReadBufferSize int
}

// Defaults and bounds of DialOptions.
const (
	defaultHandshakeTimeout = 10 * time.Second
	defaultWriteTimeout     = 10 * time.Second
	defaultMaxBody          = 16 << 20
	defaultReadBufferSize   = 4096
	maxReadBufferSize       = 16 << 20
	closeWait               = time.Second // bound on writing the WebSocket close frame
)

// withDefaults fills the defaults in and checks the transport.
func (o DialOptions) withDefaults() (DialOptions, error) {
	switch o.Transport {
	case "":
		o.Transport = TCP
	case TCP, TLS, WS, WSS:
	default:
		return o, fmt.Errorf("unknown transport %q", o.Transport)
	}
	if o.Path == "" {
		o.Path = "/sub"
	}
	if o.NetDial == nil {
		var d net.Dialer
		o.NetDial = d.DialContext
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = defaultHandshakeTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.MaxBody <= 0 {
		o.MaxBody = defaultMaxBody
	}
	o.MaxBody = min(o.MaxBody, protocol.MaxPackLen-protocol.HeaderSize)
	if o.ReadBufferSize <= 0 {
		o.ReadBufferSize = defaultReadBufferSize
	}
	o.ReadBufferSize = min(max(o.ReadBufferSize, 16), maxReadBufferSize)
	return o, nil
}

// Conn is one authenticated connection to a comet, without reconnect. It
// starts no goroutine: the caller reads with ReadFrames (one reader at a
// time) and may write from any goroutine. Its footprint is the struct,
// one read buffer of DialOptions.ReadBufferSize, and the socket.
type Conn struct {
	nc       net.Conn
	br       *bufio.Reader
	ws       *wsReader // nil on TCP and TLS
	maxBody  int
	wtimeout time.Duration
	reply    []byte
	key      string
	pending  []Frame // frames that followed the auth reply in its message

	wmu    sync.Mutex // serialises writes
	seq    int32      // last heartbeat seq; wmu guards it
	closed atomic.Bool
}

// Dial connects to the comet at addr ("host:port"), sends auth as the
// auth frame (op 7) and returns once the auth reply (op 8) arrived, all
// within opts.HandshakeTimeout and ctx. Errors: *DialError (dial, TLS,
// WebSocket upgrade), *AuthError (the connection failed or closed before
// the auth reply: auth refused, say); either wraps ctx.Err() when ctx
// ended the handshake.
func Dial(ctx context.Context, addr string, auth Auth, opts DialOptions) (*Conn, error) {
	body, err := json.Marshal(auth)
	if err != nil { // cannot happen: every field marshals
		return nil, &DialError{Addr: addr, Err: err}
	}
	return DialBody(ctx, addr, body, opts)
}

// DialBody is Dial with the auth frame's body as is: goim v2 JSON a
// caller built, or a malformed body to test the comet with.
func DialBody(ctx context.Context, addr string, body []byte, opts DialOptions) (*Conn, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, &DialError{Addr: addr, Err: err}
	}
	if len(body) > protocol.MaxPackLen-protocol.HeaderSize {
		return nil, &AuthError{Addr: addr, Err: fmt.Errorf("%w: auth body of %d bytes", protocol.ErrBodyTooLarge, len(body))}
	}
	deadline := time.Now().Add(o.HandshakeTimeout)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	nc, err := o.NetDial(hctx, "tcp", addr)
	if err != nil {
		return nil, &DialError{Addr: addr, Err: withCtx(ctx, err)}
	}
	_ = nc.SetDeadline(deadline)
	// ctx ending cuts the handshake short instead of waiting out its
	// timeout.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c, err := handshake(hctx, nc, addr, body, o)
	if err == nil && !stop() {
		err = &AuthError{Addr: addr, Err: ctx.Err()} // the deadline may be in the past
	}
	if err != nil {
		_ = nc.Close()
		switch e := err.(type) {
		case *DialError:
			e.Err = withCtx(ctx, e.Err)
		case *AuthError:
			e.Err = withCtx(ctx, e.Err)
		}
		return nil, err
	}
	_ = c.nc.SetDeadline(time.Time{})
	return c, nil
}

// withCtx adds ctx's error to err when ctx ended and err does not say so.
func withCtx(ctx context.Context, err error) error {
	if ce := ctx.Err(); ce != nil && !errors.Is(err, ce) {
		return fmt.Errorf("%w: %w", ce, err)
	}
	return err
}

// handshake runs TLS, the WebSocket upgrade and auth on nc.
func handshake(ctx context.Context, nc net.Conn, addr string, body []byte, o DialOptions) (*Conn, error) {
	if o.Transport.secure() {
		cfg := o.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, &DialError{Addr: addr, Err: err}
			}
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, &DialError{Addr: addr, Err: fmt.Errorf("tls: %w", err)}
		}
		nc = tc
	}
	var rd io.Reader = nc
	if o.Transport.websocket() {
		u := &url.URL{Scheme: string(o.Transport), Host: addr}
		u.Path, u.RawQuery, _ = strings.Cut(o.Path, "?")
		d := ws.Dialer{}
		if len(o.Header) > 0 {
			d.Header = ws.HandshakeHeaderHTTP(o.Header)
		}
		br, _, err := d.Upgrade(nc, u)
		if err != nil {
			return nil, &DialError{Addr: addr, Err: fmt.Errorf("websocket upgrade: %w", err)}
		}
		if br != nil { // bytes the server sent right after its answer
			extra, _ := br.Peek(br.Buffered())
			rd = io.MultiReader(bytes.NewReader(bytes.Clone(extra)), nc)
			ws.PutReader(br)
		}
	}
	c := &Conn{nc: nc, maxBody: o.MaxBody, wtimeout: o.WriteTimeout}
	c.br = bufio.NewReaderSize(rd, o.ReadBufferSize)
	if o.Transport.websocket() {
		c.ws = &wsReader{br: c.br, maxBody: o.MaxBody, pong: c.pong}
	}
	if err := c.WriteFrame(protocol.OpAuth, 1, body); err != nil {
		return nil, &AuthError{Addr: addr, Err: err}
	}
	got := false
	for !got {
		var perr error
		err := c.read(func(f Frame) {
			switch {
			case got:
				c.pending = append(c.pending, Frame{Op: f.Op, Seq: f.Seq, Body: bytes.Clone(f.Body)})
			case f.Op != protocol.OpAuthReply:
				if perr == nil {
					perr = protoErr("first frame has op %d, not the auth reply (8)", f.Op)
				}
			default:
				got = true
				if len(f.Body) > 0 {
					c.reply = bytes.Clone(f.Body)
				}
			}
		})
		if err == nil {
			err = perr
		}
		if err != nil {
			return nil, &AuthError{Addr: addr, Err: c.readErr(err)}
		}
	}
	if len(c.reply) > 0 {
		var r struct {
			Key string `json:"key"`
		}
		if json.Unmarshal(c.reply, &r) == nil {
			c.key = r.Key
		}
	}
	return c, nil
}

// AuthReply returns the auth reply's body: empty normally, {"key":"..."}
// when logic's auth.reply_key is on. The caller must not modify it.
func (c *Conn) AuthReply() []byte { return c.reply }

// Key returns the connection key of the auth reply's body ("" when the
// reply carries none; the key asked for in Auth is then in use, or one
// logic picked that the client cannot know).
func (c *Conn) Key() string { return c.key }

// ReadFrames reads the next transport unit, a TCP frame or a WebSocket
// message, and calls fn for each frame in it (an op-9 batch's inner
// frames in order, streamed through the read buffer); Frame.Body is valid
// only during the call. WebSocket pings are answered and pongs skipped on
// the way. Errors: *CloseError for a WebSocket close frame,
// *ProtocolError for a malformed frame or message, ErrClosed after Close,
// else the network error (io.EOF when the comet closed the connection).
// Not safe for concurrent use with itself; fn must not call ReadFrames.
func (c *Conn) ReadFrames(fn func(Frame)) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if len(c.pending) > 0 {
		for _, f := range c.pending {
			fn(f)
		}
		c.pending = nil
		return nil
	}
	if err := c.read(fn); err != nil {
		return c.readErr(err)
	}
	return nil
}

// read reads one unit.
func (c *Conn) read(fn func(Frame)) error {
	if c.ws != nil {
		return c.ws.read(fn)
	}
	return readTCP(c.br, c.maxBody, fn)
}

// readErr types a read error.
func (c *Conn) readErr(err error) error {
	var ce *CloseError
	switch {
	case c.closed.Load():
		// Whatever the read saw (net.ErrClosed, or on TLS the comet's
		// close_notify answering ours: io.EOF), Close ended it.
		return ErrClosed
	case errors.As(err, &ce):
		return err
	case isProtocolErr(err):
		return &ProtocolError{Err: err}
	}
	return err
}

// WriteFrame sends one frame (op, seq, body): as is on TCP and TLS, as
// one masked binary message on WebSocket. Safe for concurrent use;
// ErrClosed after Close.
func (c *Conn) WriteFrame(op, seq int32, body []byte) error {
	if len(body) > protocol.MaxPackLen-protocol.HeaderSize-14 {
		return fmt.Errorf("client: write: %w: %d bytes", protocol.ErrBodyTooLarge, len(body))
	}
	var buf [256]byte
	frame := protocol.AppendFrame(buf[:0], protocol.Version, op, seq, body)
	if c.ws != nil {
		var wbuf [256 + 14]byte
		frame = appendWSClientFrame(wbuf[:0], wsBinary, frame)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(frame)
}

// writeLocked writes b with the write deadline; wmu is held.
func (c *Conn) writeLocked(b []byte) error {
	if c.closed.Load() {
		return ErrClosed
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.wtimeout))
	if _, err := c.nc.Write(b); err != nil {
		if c.closed.Load() && errors.Is(err, net.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("client: write: %w", err)
	}
	return nil
}

// Heartbeat sends a heartbeat (op 2) with the next sequence number; the
// comet answers op 3 whose 4-byte body is the room's online count. Safe
// for concurrent use.
func (c *Conn) Heartbeat() error {
	var buf [protocol.HeaderSize + 14]byte
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.seq++
	frame := protocol.AppendFrame(buf[:0], protocol.Version, protocol.OpHeartbeat, c.seq, nil)
	if c.ws != nil {
		var wbuf [protocol.HeaderSize + 14]byte
		frame = appendWSClientFrame(wbuf[:0], wsBinary, frame)
	}
	return c.writeLocked(frame)
}

// pong answers a WebSocket ping.
func (c *Conn) pong(payload []byte) error {
	var buf [14 + 125]byte
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(appendWSClientFrame(buf[:0], wsPong, payload))
}

// SetReadDeadline sets the deadline of ReadFrames (see net.Conn); a read
// past it returns an error for which os.ErrDeadlineExceeded is true.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// NetConn returns the underlying connection (a *tls.Conn for TLS and
// WSS), for tests that write raw bytes. Writing to it concurrently with
// WriteFrame interleaves bytes; reading from it bypasses the read buffer.
func (c *Conn) NetConn() net.Conn { return c.nc }

// LocalAddr returns the local address of the connection.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the comet's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Close closes the connection; on WebSocket it first sends a close frame
// with status 1000 (waiting at most a second for the write; skipped when
// another write is in progress, which the close then interrupts). A
// blocked ReadFrames returns ErrClosed, and so do later calls. A second
// Close returns ErrClosed.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return ErrClosed
	}
	// Bounds the close frame's write and TLS's close_notify alike.
	_ = c.nc.SetWriteDeadline(time.Now().Add(min(closeWait, c.wtimeout)))
	if c.ws != nil && c.wmu.TryLock() {
		var buf [14 + 2]byte
		_, _ = c.nc.Write(appendWSClientFrame(buf[:0], wsClose, []byte{0x03, 0xe8}))
		c.wmu.Unlock()
	}
	if err := c.nc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("client: close: %w", err)
	}
	return nil
}
