package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goim/goim/api/protocol"
)

// Config configures a reconnecting Client (see Connect).
type Config struct {
	// API is logic's HTTP base URL ("http://host:port"): before each
	// connect attempt the client asks its /goim/nodes/weighted for the
	// comets of Auth.Platform and tries them in the order given. Logic
	// advertises no TLS port: with API set, Transport is TCP, WS or WSS.
	API string
	// Addrs are fixed comet addresses ("host:port"), tried in order,
	// used when API is empty.
	Addrs []string
	// Transport is TCP (the default), TLS, WS or WSS.
	Transport Transport
	// Auth is the auth body of each connect. Its RoomID and Accepts are
	// the client's current room and ops: ChangeRoom, Sub and Unsub
	// update them and a reconnect authenticates with them.
	Auth Auth
	// Token, when set, is called before each connect for a fresh signed
	// token (Auth.Token); an error fails that attempt.
	Token func(ctx context.Context) (string, error)
	// HTTPClient asks logic for the nodes; nil is http.DefaultClient.
	HTTPClient *http.Client
	// Dial are the options of each connection; its Transport is ignored
	// (Transport above wins).
	Dial DialOptions
	// Heartbeat is the heartbeat period. 0 takes the nodes answer's
	// "heartbeat" (with API), else 30s. A connection without a heartbeat
	// reply for a whole period is dropped and reconnected.
	Heartbeat time.Duration
	// Backoff is the reconnect back-off: after a drop or a failed
	// attempt the client waits Backoff.Delay(n, rand) before attempt n
	// (0, 1, 2, ...; n starts over after a connection that got a
	// heartbeat reply). nil takes the latest nodes answer's hint (with
	// API), else DefaultBackoff.
	Backoff *Backoff
	// OnMessage, when set, receives every message, in order, from one
	// goroutine of the client's; Messages is then unused. It may call
	// ChangeRoom, Sub and Unsub (bound them with a ctx: once the buffer
	// is full their reply waits behind it) but not Close, which waits
	// for that goroutine (call go c.Close() instead).
	OnMessage func(Message)
	// OnState, when set, is told every change of state, in order, from
	// the client's connection goroutine: Connecting before each attempt,
	// Connected, Disconnected with the cause (a failed attempt or a
	// dropped connection), Closed last. It must return quickly and must
	// not call Close, ChangeRoom, Sub or Unsub (they wait for that
	// goroutine).
	OnState func(State, error)
	// MessageBuffer is how many received messages wait for OnMessage or
	// a Messages reader before the client stops reading the connection
	// (default 256, at most 1<<20).
	MessageBuffer int
	// Logger logs connects and drops (Debug) and reconnect waits (Info);
	// nil logs nothing.
	Logger *slog.Logger

	// Reliable opts in to reliable delivery (also when Auth.Reliable is
	// set): pushes carry their id (Message.MsgID) and, in a stream, their
	// position; the client tracks the last position in each stream and
	// sends it with every connect so the comet replays what was missed;
	// op-20 reports arrive as Messages with Streams; messages are acked
	// (op 19) unless ManualAck. See Positions and Ack.
	Reliable bool
	// Since is where a reliable client starts in each stream: Positions
	// as persisted by an earlier run (nil: Auth.Since, else nowhere, and
	// the first report says recovered false). Its epochs must be 1 to 16
	// hex digits.
	Since *protocol.Since
	// ManualAck turns a reliable client's automatic acks off: by default
	// each push by user or key (Stream StreamUser or StreamKey; room and
	// broadcast pushes have no receipts and are not acked) is acked once
	// handed over (put in the Messages buffer, or OnMessage returned),
	// batched up to 64 ids or 100ms; with ManualAck the application calls
	// Ack.
	ManualAck bool
}

// Message is one message the comet pushed (an op-9 batch arrives as its
// inner frames, one Message each). Replies the client consumes itself
// (auth, heartbeat, room change, sub and unsub replies) are not messages.
type Message struct {
	Op, Seq int32
	Body    []byte // the receiver's own copy

	// The fields below are set on a reliable client (Config.Reliable)
	// only. A push arrives with its id and, when it is in a stream, its
	// stream (protocol.StreamUser, StreamKey, StreamRoom), the stream's
	// epoch and its offset there (all zero for a push in no stream). An
	// op-20 report (Op protocol.OpStreams, Body its JSON) arrives with
	// Streams set.

	MsgID   string // the push id, 32 hex digits ("" when the comet gave none)
	Stream  int32
	Epoch   uint64
	Offset  uint64
	Streams []StreamState // an op-20 report: one entry per stream
}

// State is the state of a Client's connection.
type State int

// The states of a Client, in the order a connection goes through them.
const (
	Connecting   State = iota // dialing and authenticating
	Connected                 // authenticated, receiving
	Disconnected              // a connect attempt failed or the connection dropped; waiting to reconnect
	Closed                    // Close was called; final
)

// String returns the state's name: "connecting", "connected",
// "disconnected", "closed".
func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case Closed:
		return "closed"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// ErrDisconnected is wrapped by the error of a ChangeRoom, Sub or Unsub
// whose connection dropped before the reply, together with the cause of
// the drop (a *CloseError when the comet closed a WebSocket, say).
var ErrDisconnected = errors.New("client: disconnected")

// ErrHeartbeatTimeout is the cause of a drop when no heartbeat reply
// arrived within a heartbeat period.
var ErrHeartbeatTimeout = errors.New("client: no heartbeat reply within the period")

// Defaults and bounds of Config.
const (
	defaultHeartbeat     = 30 * time.Second
	minHeartbeat         = 10 * time.Millisecond
	defaultMessageBuffer = 256
	maxMessageBuffer     = 1 << 20
	maxClientBody        = 4096 // the largest body a comet takes from a client
	maxOps               = 1024 // the most ops a connection may watch
)

// Client is a connection to goim that reconnects: it keeps one
// authenticated connection to a comet, heartbeats it, and after any drop
// (comet drain or shutdown, network error, missed heartbeat reply) waits
// its back-off and connects again, to the comets logic names then, with
// the current room and ops. Its methods are safe for concurrent use.
type Client struct {
	cfg   Config
	log   *slog.Logger
	ctx   context.Context // ends at Close
	stop  context.CancelFunc
	msgs  chan Message
	done  chan struct{}
	wg    sync.WaitGroup
	first chan struct{} // closed at the first Connected

	mu        sync.Mutex
	auth      Auth // current room and accepts; mu guards it
	conn      *Conn
	drop      func(error) // drops conn with a cause
	addr      string
	up        chan struct{} // closed while connected, replaced at a drop
	pending   map[int32]request
	seq       int32
	last      error // cause of the last failed attempt or drop
	hints     Nodes // latest nodes answer
	haveHints bool
	closed    bool
	closeOnce sync.Once

	rel *reliable // nil unless Config.Reliable
	// handMu is held by a reliable client while a message is handed over
	// (the reader's send to msgs without OnMessage, dispatch's OnMessage
	// call with it) and its ack queued, so that Close's last ack flush
	// sees the ack.
	handMu sync.Mutex
}

// request is a ChangeRoom, Sub or Unsub waiting for its reply.
type request struct {
	reply int32      // the reply op
	apply func()     // run by the reader under mu when the reply comes
	ch    chan error // gets nil on the reply, else the failure
}

// Connect starts a Client and returns once it is connected (the first
// auth reply arrived). Until then it retries with the back-off, asking
// logic for the nodes again before each attempt; when ctx ends first,
// the client is closed and the error wraps ctx.Err() and the last
// attempt's cause (a *NodesError, *DialError or *AuthError). ctx bounds
// only the first connect: the Client lives until Close.
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.MessageBuffer <= 0 {
		cfg.MessageBuffer = defaultMessageBuffer
	}
	cfg.MessageBuffer = min(cfg.MessageBuffer, maxMessageBuffer)
	cfg.Dial.Transport = cfg.Transport
	cfg.Addrs = slices.Clone(cfg.Addrs) // the caller may reuse its slice
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	life, stop := context.WithCancel(context.Background())
	c := &Client{
		cfg: cfg, log: log, ctx: life, stop: stop,
		msgs:    make(chan Message, cfg.MessageBuffer),
		done:    make(chan struct{}),
		first:   make(chan struct{}),
		up:      make(chan struct{}),
		pending: map[int32]request{},
		auth:    cloneAuth(cfg.Auth),
	}
	if cfg.Reliable || cfg.Auth.Reliable {
		since := cfg.Since
		if since == nil {
			since = cfg.Auth.Since
		}
		c.rel = newReliable(since, !cfg.ManualAck)
		c.auth.Reliable, c.auth.Since = true, nil // since is set per connect
	}
	c.wg.Go(c.run)
	if cfg.OnMessage != nil {
		c.wg.Go(c.dispatch)
	}
	if c.rel != nil {
		c.wg.Go(c.ackLoop)
	}
	select {
	case <-c.first:
		return c, nil
	case <-ctx.Done():
		_ = c.Close()
		c.mu.Lock()
		last := c.last
		c.mu.Unlock()
		if last == nil {
			return nil, fmt.Errorf("client: connect: %w", ctx.Err())
		}
		return nil, fmt.Errorf("client: connect: %w (last attempt: %w)", ctx.Err(), last)
	}
}

// check validates the config.
func (cfg Config) check() error {
	switch cfg.Transport {
	case "", TCP, WS, WSS:
	case TLS:
		if cfg.API != "" {
			return errors.New("client: config: logic advertises no TLS port: use Addrs with transport tls")
		}
	default:
		return fmt.Errorf("client: config: unknown transport %q", cfg.Transport)
	}
	if cfg.API == "" && len(cfg.Addrs) == 0 {
		return errors.New("client: config: API or Addrs is required")
	}
	if cfg.Heartbeat < 0 {
		return fmt.Errorf("client: config: negative heartbeat %v", cfg.Heartbeat)
	}
	if (cfg.Since != nil || cfg.Auth.Since != nil) && !cfg.Reliable && !cfg.Auth.Reliable {
		return errors.New("client: config: since without reliable")
	}
	if err := checkSince(cfg.Since); err != nil {
		return err
	}
	if err := checkSince(cfg.Auth.Since); err != nil {
		return err
	}
	return nil
}

// cloneAuth copies a's Accepts.
func cloneAuth(a Auth) Auth {
	a.Accepts = slices.Clone(a.Accepts)
	return a
}

// Messages returns the channel of received messages when Config.OnMessage
// is nil (nil when OnMessage is set). It is closed after Close. It buffers Config.MessageBuffer messages: while it is full the
// client stops reading the connection (the comet's outbound queue fills
// in turn, and the comet drops a client that stays behind for too long by
// its slow-consumer policy; the client then reconnects, and what was
// queued for the old connection is lost). Heartbeat replies are not
// waited for while the client is held up by a full buffer.
func (c *Client) Messages() <-chan Message {
	if c.cfg.OnMessage != nil {
		return nil
	}
	return c.msgs
}

// Done is closed once the client stopped: after Close, every goroutine
// gone.
func (c *Client) Done() <-chan struct{} { return c.done }

// Room returns the current room: Auth.RoomID, then the room of the last
// ChangeRoom that succeeded.
func (c *Client) Room() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.auth.RoomID
}

// Accepts returns the ops currently accepted: Auth.Accepts as changed by
// Sub and Unsub.
func (c *Client) Accepts() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.auth.Accepts)
}

// Addr returns the address of the comet the client is connected to, ""
// when it is not connected.
func (c *Client) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Key returns the connection key of the current connection's auth reply
// (see Conn.Key), "" when not connected.
func (c *Client) Key() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return ""
	}
	return c.conn.Key()
}

// ChangeRoom moves the connection to room ("type://id"; "" leaves the
// room) with op 12 and returns once the comet answered (op 13); later
// reconnects join room. When not connected it first waits for the
// connection. Errors: ErrClosed; ctx's error; an error wrapping
// ErrDisconnected and the cause when the connection dropped before the
// reply (the comet closes a connection asking for a room it refuses:
// a *CloseError "bad_room" or "room_denied" on WebSocket; the client
// then reconnects to its previous room).
func (c *Client) ChangeRoom(ctx context.Context, room string) error {
	if len(room) > maxClientBody {
		return fmt.Errorf("client: change room: room id of %d bytes", len(room))
	}
	return c.request(ctx, protocol.OpChangeRoom, []byte(room), func() {
		c.auth.RoomID = room
		if c.rel != nil {
			c.rel.forgetRoom() // the new room's stream is another one
		}
	})
}

// Sub adds ops to those the connection receives for key, user and
// broadcast pushes (op 14, waiting for op 15); later reconnects accept
// them. Errors as for ChangeRoom; no ops, or more than 1024 accepted in
// all, is an error.
func (c *Client) Sub(ctx context.Context, ops ...int32) error {
	body, err := opsBody(ops)
	if err != nil {
		return err
	}
	c.mu.Lock()
	n := len(union(c.auth.Accepts, ops))
	c.mu.Unlock()
	if n > maxOps {
		return fmt.Errorf("client: sub: %d ops accepted in all, at most %d", n, maxOps)
	}
	return c.request(ctx, protocol.OpSub, body, func() { c.auth.Accepts = union(c.auth.Accepts, ops) })
}

// Unsub removes ops from those the connection receives (op 16, waiting
// for op 17). Errors as for Sub.
func (c *Client) Unsub(ctx context.Context, ops ...int32) error {
	body, err := opsBody(ops)
	if err != nil {
		return err
	}
	return c.request(ctx, protocol.OpUnsub, body, func() {
		c.auth.Accepts = slices.DeleteFunc(c.auth.Accepts, func(op int32) bool { return slices.Contains(ops, op) })
	})
}

// opsBody is the body of op 14 and 16: decimal ops joined by commas.
func opsBody(ops []int32) ([]byte, error) {
	if len(ops) == 0 || len(ops) > maxOps {
		return nil, fmt.Errorf("client: sub/unsub: %d ops (1 to %d)", len(ops), maxOps)
	}
	var b []byte
	for i, op := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(op), 10)
	}
	return b, nil
}

// union returns a with the ops of b it lacks appended (a new slice).
func union(a, b []int32) []int32 {
	out := slices.Clone(a)
	for _, op := range b {
		if !slices.Contains(out, op) {
			out = append(out, op)
		}
	}
	return out
}

// request sends op with body once connected and waits for its reply;
// apply runs under mu when the reply arrives.
func (c *Client) request(ctx context.Context, op int32, body []byte, apply func()) error {
	name := opName(op)
	c.mu.Lock()
	for c.conn == nil {
		if c.closed {
			c.mu.Unlock()
			return ErrClosed
		}
		up := c.up
		c.mu.Unlock()
		select {
		case <-up:
		case <-ctx.Done():
			return fmt.Errorf("client: %s: %w", name, ctx.Err())
		case <-c.ctx.Done():
			return ErrClosed
		}
		c.mu.Lock()
	}
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.seq++
	seq := c.seq
	ch := make(chan error, 1)
	c.pending[seq] = request{reply: op + 1, apply: apply, ch: ch}
	conn, drop := c.conn, c.drop
	c.mu.Unlock()
	if err := conn.WriteFrame(op, seq, body); err != nil {
		c.forget(seq)
		drop(err) // the reader sees the drop and reconnects
		return fmt.Errorf("client: %s: %w: %w", name, ErrDisconnected, err)
	}
	select {
	case err := <-ch:
		if err != nil {
			return fmt.Errorf("client: %s: %w", name, err)
		}
		return nil
	case <-ctx.Done():
		c.forget(seq)
		return fmt.Errorf("client: %s: %w", name, ctx.Err())
	}
}

// forget drops a pending request.
func (c *Client) forget(seq int32) {
	c.mu.Lock()
	delete(c.pending, seq)
	c.mu.Unlock()
}

// opName names a request op in errors.
func opName(op int32) string {
	switch op {
	case protocol.OpChangeRoom:
		return "change room"
	case protocol.OpSub:
		return "sub"
	}
	return "unsub"
}

// Close closes the connection, stops reconnecting and returns once every
// goroutine of the client has exited; Messages is then closed and Done
// too. A reliable client first sends the acks still waiting (each write
// bounded by a second). Pending ChangeRoom, Sub and Unsub calls return ErrClosed, and so
// do later ones. A second Close returns ErrClosed. It must not be called
// from OnMessage or OnState.
func (c *Client) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.mu.Lock()
		c.closed = true
		conn := c.conn
		c.mu.Unlock()
		c.stop()
		if c.rel != nil {
			<-c.rel.done    // the ack loop wrote its last frame
			c.handMu.Lock() // a message being handed over has its ack queued
			if conn != nil {
				_ = conn.ackClosing(c.rel.take)
			}
			c.handMu.Unlock()
		}
		if conn != nil {
			_ = conn.Close()
		}
	})
	if !first {
		<-c.done
		return ErrClosed
	}
	c.wg.Wait()
	close(c.done)
	return nil
}

// dispatch calls OnMessage for each message until Close.
func (c *Client) dispatch() {
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok || c.ctx.Err() != nil {
				return
			}
			if c.rel != nil {
				c.handMu.Lock()
				c.cfg.OnMessage(m)
				c.acked(&m)
				c.handMu.Unlock()
			} else {
				c.cfg.OnMessage(m)
			}
		case <-c.ctx.Done():
			return
		}
	}
}

// setState reports a state change.
func (c *Client) setState(s State, err error) {
	if c.cfg.OnState != nil {
		c.cfg.OnState(s, err)
	}
}

// run connects, serves and reconnects until Close.
func (c *Client) run() {
	defer func() {
		c.failPending(ErrClosed)
		c.setState(Closed, nil)
		close(c.msgs)
	}()
	attempt := 0
	for {
		c.setState(Connecting, nil)
		conn, addr, err := c.connect()
		if c.ctx.Err() != nil {
			if conn != nil {
				_ = conn.Close()
			}
			return
		}
		if err != nil {
			c.log.Debug("goim client: connect failed", "attempt", attempt, "err", err)
			c.dropped(err)
		} else {
			c.log.Debug("goim client: connected", "addr", addr)
			stable, cause := c.serve(conn, addr)
			if c.ctx.Err() != nil {
				return
			}
			c.log.Debug("goim client: dropped", "addr", addr, "err", cause)
			c.dropped(cause)
			if stable {
				attempt = 0
			}
		}
		d := c.backoff().Delay(attempt, rand.Float64())
		attempt++
		c.log.Info("goim client: reconnecting", "in", d, "attempt", attempt, "err", c.lastErr())
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return
		}
	}
}

// dropped records the cause of a failed attempt or a drop and reports it.
func (c *Client) dropped(cause error) {
	c.mu.Lock()
	c.last = cause
	c.mu.Unlock()
	c.setState(Disconnected, cause)
}

// lastErr returns the cause of the last failed attempt or drop.
func (c *Client) lastErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// backoff is the back-off in force: Config.Backoff, else the latest nodes
// answer's hint, else DefaultBackoff.
func (c *Client) backoff() Backoff {
	if c.cfg.Backoff != nil {
		return *c.cfg.Backoff
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.haveHints {
		return c.hints.Backoff
	}
	return DefaultBackoff
}

// heartbeat is the heartbeat period in force.
func (c *Client) heartbeat() time.Duration {
	if c.cfg.Heartbeat > 0 {
		return max(c.cfg.Heartbeat, minHeartbeat)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.haveHints && c.hints.Heartbeat > 0 {
		return max(c.hints.Heartbeat, minHeartbeat)
	}
	return defaultHeartbeat
}

// connect makes one attempt: the nodes (with API), then each address in
// order until one authenticates.
func (c *Client) connect() (*Conn, string, error) {
	ctx := c.ctx
	addrs := c.cfg.Addrs
	if c.cfg.API != "" {
		n, err := FetchNodes(ctx, c.cfg.HTTPClient, c.cfg.API, c.cfg.Auth.Platform)
		if err != nil {
			return nil, "", err
		}
		c.mu.Lock()
		c.hints, c.haveHints = n, true
		c.mu.Unlock()
		if addrs = n.Addrs(c.cfg.Transport); len(addrs) == 0 {
			return nil, "", &NodesError{Status: http.StatusOK, Message: "no " + string(c.cfg.Transport) + " port in the answer"}
		}
	}
	var errs []error
	for _, addr := range addrs {
		c.mu.Lock()
		auth := cloneAuth(c.auth)
		c.mu.Unlock()
		if c.rel != nil {
			auth.Since = c.rel.since()
		}
		if c.cfg.Token != nil {
			tok, err := c.cfg.Token(ctx)
			if err != nil {
				return nil, "", fmt.Errorf("client: token: %w", err)
			}
			auth.Token = tok
		}
		conn, err := Dial(ctx, addr, auth, c.cfg.Dial)
		if err == nil {
			return conn, addr, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 1 {
		return nil, "", errs[0]
	}
	return nil, "", attemptError(errs)
}

// attemptError is the failure of an attempt over several comets: each
// comet's error, in the order tried (errors.Is and errors.As see them
// all).
type attemptError []error

func (e attemptError) Error() string {
	s := "every comet failed: "
	for i, err := range e {
		if i > 0 {
			s += "; "
		}
		s += err.Error()
	}
	return s
}

func (e attemptError) Unwrap() []error { return e }

// serve runs one connection until it drops: it reads on this goroutine
// and heartbeats on another. stable says the connection got a heartbeat
// reply (the back-off starts over after it).
func (c *Client) serve(conn *Conn, addr string) (stable bool, cause error) {
	up := make(chan struct{})
	close(up)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = conn.Close()
		return false, ErrClosed
	}
	var causeMu sync.Mutex
	drop := func(err error) { // the first cause wins
		causeMu.Lock()
		if cause == nil {
			cause = err
		}
		causeMu.Unlock()
		_ = conn.Close()
	}
	c.conn, c.drop, c.addr = conn, drop, addr
	wake := c.up
	c.up = up
	c.mu.Unlock()
	close(wake)
	c.setState(Connected, nil)
	select {
	case <-c.first:
	default:
		close(c.first)
	}

	var hb heartbeatState
	var hwg sync.WaitGroup
	stopHB := make(chan struct{})
	hwg.Go(func() { c.heartbeatLoop(conn, &hb, stopHB, drop) })

	var bad error // a malformed reliable frame
	for {
		err := conn.ReadFrames(func(f Frame) {
			if bad == nil {
				bad = c.receive(f, &hb)
			}
		})
		if err == nil {
			err = bad
		}
		if err != nil {
			drop(err)
			break
		}
	}
	close(stopHB)
	hwg.Wait()

	c.mu.Lock()
	c.conn, c.drop, c.addr = nil, nil, ""
	c.up = make(chan struct{})
	c.mu.Unlock()
	causeMu.Lock()
	defer causeMu.Unlock()
	if c.ctx.Err() != nil {
		c.failPending(ErrClosed)
	} else {
		c.failPending(fmt.Errorf("%w: %w", ErrDisconnected, cause))
	}
	return hb.replies.Load() > 0, cause
}

// heartbeatState is shared by a connection's reader and heartbeat loop.
type heartbeatState struct {
	replies atomic.Int64 // heartbeat replies received
	stalls  atomic.Int64 // times the reader waited for a full buffer
	stalled atomic.Bool  // the reader is waiting for a full buffer now
}

// heartbeatLoop sends a heartbeat now and every period, dropping the
// connection when a period passed without a reply (unless the reader was
// held up by a full message buffer meanwhile) or a write failed.
func (c *Client) heartbeatLoop(conn *Conn, hb *heartbeatState, stop <-chan struct{}, drop func(error)) {
	period := c.heartbeat()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		replies, stalls := hb.replies.Load(), hb.stalls.Load()
		if err := conn.Heartbeat(); err != nil {
			drop(err)
			return
		}
		select {
		case <-t.C:
		case <-stop:
			return
		}
		if hb.replies.Load() == replies && hb.stalls.Load() == stalls && !hb.stalled.Load() {
			drop(ErrHeartbeatTimeout)
			return
		}
	}
}

// receive handles one frame: replies are consumed, anything else is a
// message. An error is a malformed frame that ends the connection.
func (c *Client) receive(f Frame, hb *heartbeatState) error {
	switch f.Op {
	case protocol.OpHeartbeatReply:
		hb.replies.Add(1)
		return nil
	case protocol.OpAuthReply:
		return nil
	case protocol.OpChangeRoomReply, protocol.OpSubReply, protocol.OpUnsubReply:
		c.mu.Lock()
		r, ok := c.pending[f.Seq]
		if ok && r.reply == f.Op {
			delete(c.pending, f.Seq)
			r.apply()
		}
		c.mu.Unlock()
		if ok && r.reply == f.Op {
			r.ch <- nil
		}
		return nil // a late reply to a request given up is dropped
	}
	if c.rel != nil {
		if ok, err := c.receiveReliable(f, hb); ok {
			return err
		}
	}
	c.deliver(Message{Op: f.Op, Seq: f.Seq, Body: bytes.Clone(f.Body)}, hb)
	return nil
}

// deliver puts m in the message buffer, waiting while it is full (until
// Close).
func (c *Client) deliver(m Message, hb *heartbeatState) {
	if c.rel != nil && c.cfg.OnMessage == nil { // with OnMessage, dispatch acks
		c.handMu.Lock()
		defer c.handMu.Unlock()
	}
	select {
	case c.msgs <- m:
		if c.cfg.OnMessage == nil {
			c.acked(&m)
		}
		return
	default:
	}
	hb.stalls.Add(1)
	hb.stalled.Store(true)
	defer hb.stalled.Store(false)
	select {
	case c.msgs <- m:
		if c.cfg.OnMessage == nil {
			c.acked(&m)
		}
	case <-c.ctx.Done():
	}
}

// failPending fails every pending request with err.
func (c *Client) failPending(err error) {
	c.mu.Lock()
	p := c.pending
	c.pending = map[int32]request{}
	c.mu.Unlock()
	for _, r := range p {
		r.ch <- err
	}
}
