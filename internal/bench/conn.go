package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/client"
	"github.com/golang-jwt/jwt/v5"
)

// link is one established connection: a *client.Conn (tcp, ws) or an
// *sseConn (sse).
type link interface {
	ReadFrames(fn func(client.Frame)) error
	Heartbeat() error
	Close() error
}

// conn is one client connection: about 150 bytes, its link (the client
// package's Conn, some 200 bytes, and its read buffer) and its reader
// goroutine's stack.
type conn struct {
	o    *Conns
	idx  int // global index
	mid  int64
	key  string
	room string

	// l is replaced by a reconnect: the reader goroutine, the only writer,
	// sets it under mu; other goroutines read it under mu.
	mu sync.Mutex
	l  link

	up         int64        // first auth reply received, Unix ns
	down       atomic.Int64 // ended without the tool closing it (and not back yet), Unix ns
	closing    atomic.Bool  // the tool is closing it
	reconnects atomic.Int32 // times it came back after a drop (reconnect mode)

	recv recvLog
}

// open dials connection i, authenticates it and starts its reader. A
// failure is counted by phase and kind.
func (c *Conns) open(ctx context.Context, i int) {
	cfg := &c.cfg
	idx := cfg.First + i
	cn := &conn{o: c, idx: idx, mid: cfg.MidStart + int64(idx)}
	if cfg.MidCount > 0 {
		cn.mid = cfg.MidStart + int64(idx%cfg.MidCount)
	}
	if cfg.KeyPrefix != "" {
		cn.key = cfg.KeyPrefix + strconv.Itoa(idx)
	}
	if len(cfg.Rooms) > 0 {
		cn.room = cfg.Rooms[i%len(cfg.Rooms)]
	}
	start := time.Now()
	phase, err := cn.handshake(ctx, cfg.Addrs[i%len(cfg.Addrs)], c.source(i))
	if err != nil {
		c.failed.Add(1)
		c.countErr(phase, err)
		return
	}
	now := time.Now()
	cn.up = now.UnixNano()
	c.handshake.Record(now.Sub(start).Nanoseconds())
	for cur := c.opened.Load(); cn.up > cur && !c.opened.CompareAndSwap(cur, cn.up); cur = c.opened.Load() {
	}
	c.mu.Lock()
	closed := c.end.Load() != 0
	if !closed {
		c.conns = append(c.conns, cn)
		c.alive.Add(1)
		c.wg.Go(cn.readLoop)
	}
	c.mu.Unlock()
	if closed {
		cn.closeLink()
	}
}

// source is the local address of connection i, nil for the kernel's choice.
func (c *Conns) source(i int) net.Addr {
	if len(c.cfg.Src) == 0 {
		return nil
	}
	return &net.TCPAddr{IP: c.cfg.Src[i%len(c.cfg.Src)].AsSlice()}
}

// netDialError marks a failure of the TCP dial itself, so the phase of a
// *client.DialError (dial or upgrade) can be told.
type netDialError struct{ err error }

func (e *netDialError) Error() string { return e.err.Error() }
func (e *netDialError) Unwrap() error { return e.err }

// dialPhase is the phase a handshake error happened in.
func dialPhase(err error) string {
	switch {
	case errors.As(err, new(*netDialError)):
		return phaseDial
	case errors.As(err, new(*client.DialError)):
		return phaseUpgrade
	}
	return phaseAuth
}

// handshake dials, upgrades (WebSocket) or sends the SSE request,
// authenticates and waits for the auth reply, all within the handshake
// timeout, and makes the connection cn's link. It returns the phase an
// error happened in. A failed handshake leaves nothing open.
func (cn *conn) handshake(ctx context.Context, addr string, src net.Addr) (string, error) {
	c := cn.o
	cfg := &c.cfg
	opts := c.dialOpts
	opts.NetDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: src}
		if src != nil {
			d.Control = bindNoPort
		}
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, &netDialError{err: err}
		}
		return &countConn{Conn: nc, n: &c.reads}, nil
	}
	var l link
	if cfg.Transport == TransportSSE {
		target, err := cn.sseTarget(cfg)
		if err != nil {
			return phaseAuth, err
		}
		s, err := dialSSE(ctx, addr, target, opts)
		if err != nil {
			return dialPhase(err), err
		}
		l = s
	} else {
		body, err := cn.authBody(cfg)
		if err != nil {
			return phaseAuth, err
		}
		cc, err := client.DialBody(ctx, addr, body, opts)
		if err != nil {
			return dialPhase(err), err
		}
		if cfg.Reliable {
			l = &relLink{Conn: cc}
		} else {
			l = cc
		}
	}
	cn.mu.Lock()
	cn.l = l
	cn.mu.Unlock()
	return "", nil
}

// readLoop records what arrives until the connection ends. What one read
// brought (many frames when the server batches) is tallied locally and
// added to the shared counters once per read: thousands of readers adding
// to the same counters per frame made the tool, not the server, the
// bottleneck of big-room runs.
func (cn *conn) readLoop() {
	c := cn.o
	var t tally
	fn := func(f client.Frame) {
		if t.now == 0 {
			t.now = time.Now().UnixNano() // one clock reading per read
		}
		c.onFrame(cn, f.Op, f.Body, &t)
	}
	for {
		t.rl, _ = cn.l.(*relLink) // this goroutine is the only writer of cn.l
		err := readFrames(cn.l, fn)
		c.flush(&t)
		if err == nil {
			continue
		}
		c.alive.Add(-1)
		_ = cn.l.Close()
		if cn.closing.Load() {
			return
		}
		down := time.Now()
		cn.down.Store(down.UnixNano())
		c.dropped.Add(1)
		c.countErr(phaseRead, err)
		if !c.cfg.Reconnect || !cn.reconnect(down) {
			return
		}
		c.alive.Add(1)
	}
}

// readFrames calls l's ReadFrames through its concrete type: fn, and the
// tally it updates, then stay on the reader's stack instead of costing
// every connection some 150 bytes of heap (a call through the interface
// would make them escape).
func readFrames(l link, fn func(client.Frame)) error {
	switch l := l.(type) {
	case *client.Conn:
		return l.ReadFrames(fn)
	case *relLink:
		return l.Conn.ReadFrames(fn)
	case *sseConn:
		return l.ReadFrames(fn)
	}
	return fmt.Errorf("bench: unknown link %T", l)
}

// link returns the connection's current link (nil before the first
// handshake succeeded); any goroutine may call it.
func (cn *conn) link() link {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.l
}

// closeLink closes the connection's link; any goroutine may call it.
func (cn *conn) closeLink() {
	if l := cn.link(); l != nil {
		_ = l.Close()
	}
}

// tally is what one read brought, before it is added to the Conns.
type tally struct {
	now                                         int64 // when the read returned, Unix ns
	frames, delivered, dups, late, foreign, hbs uint64
	latency                                     []int64 // ns, of the delivered frames
	stream                                      []byte  // the last stream name seen and its id
	streamID                                    int32
	rl                                          *relLink // the link read, if reliable
	rel                                         relTally
}

// flush adds t to the shared counters and resets it.
func (c *Conns) flush(t *tally) {
	if t.frames > 0 {
		c.frames.Add(t.frames)
	}
	if t.delivered > 0 {
		c.delivered.Add(t.delivered)
		c.latency.RecordAll(t.latency)
	}
	if t.dups > 0 {
		c.dups.Add(t.dups)
	}
	if t.late > 0 {
		c.late.Add(t.late)
	}
	if t.foreign > 0 {
		c.foreign.Add(t.foreign)
	}
	if t.hbs > 0 {
		c.hbReplies.Add(t.hbs)
	}
	if t.rl != nil {
		c.rel.add(&t.rel)
	}
	t.now, t.frames, t.delivered, t.dups, t.late, t.foreign, t.hbs = 0, 0, 0, 0, 0, 0, 0
	t.latency = t.latency[:0]
}

// onFrame tallies one frame a connection received; a reliable
// connection's envelope is checked and its inner frame tallied.
func (c *Conns) onFrame(cn *conn, op int32, body []byte, t *tally) {
	wrapped := false
	if t.rl != nil && (op == protocol.OpMessage || op == protocol.OpStreams) {
		var ok bool
		if op, body, ok = c.unwrap(t.rl, op, body, &t.rel); !ok {
			return
		}
		wrapped = true
	}
	switch op {
	case protocol.OpHeartbeatReply:
		t.hbs++
		return
	case protocol.OpAuthReply, protocol.OpChangeRoomReply, protocol.OpSubReply, protocol.OpUnsubReply:
		return
	}
	t.frames++
	if t.rl != nil && !wrapped {
		t.rel.plain++ // a reliable connection gets every push in an envelope
	}
	b, err := ParseBody(body)
	if err != nil || string(b.Run) != c.cfg.Run {
		t.foreign++
		return
	}
	id := t.streamID
	if t.stream == nil || string(t.stream) != string(b.Stream) {
		var ok bool
		if id, ok = c.streams.id(b.Stream); !ok {
			t.foreign++
			return
		}
		t.stream, t.streamID = append(t.stream[:0], b.Stream...), id
	}
	dup, late, after := cn.recv.add(id, b.Seq)
	if dup {
		t.dups++
		return
	}
	t.delivered++
	t.latency = append(t.latency, t.now-b.Sent)
	if late {
		t.late++
		c.noteLate(lateKey{stream: id, seq: b.Seq, after: after})
	}
}

// heartbeat sends an op-2 heartbeat (the heartbeat loop skips
// connections that are down, so the link is there).
func (cn *conn) heartbeat() error {
	l := cn.link()
	if l == nil {
		return client.ErrClosed
	}
	return l.Heartbeat()
}

// countConn counts the reads of a connection's socket (the handshake's
// too: the auth reply, and the WebSocket upgrade's answer): frames per
// read shows how much the server batches its writes.
type countConn struct {
	net.Conn
	n *atomic.Uint64
}

func (c *countConn) Read(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Read(p)
}

// tokenClaims are the claims of a connection token: logic's, with the
// rooms claim listing the rooms the connection may join.
type tokenClaims struct {
	jwt.RegisteredClaims
	Rooms []string `json:"rooms,omitempty"`
}

// authBody is the connection's auth frame body: goim v2's plain JSON, or
// with cfg.HMACKey a signed token in place of mid and key, whose rooms
// claim allows the connection's room (none without a room).
func (cn *conn) authBody(cfg *ConnsConfig) ([]byte, error) {
	body := protocol.AuthBody{Mid: cn.mid, Key: cn.key, RoomID: cn.room, Platform: cfg.Platform, Accepts: cfg.Accepts, Reliable: cfg.Reliable}
	if len(cfg.HMACKey) > 0 {
		tok, err := cn.token(cfg)
		if err != nil {
			return nil, err
		}
		body.Mid, body.Key, body.Token = 0, "", tok
	}
	return json.Marshal(body)
}

// token is the connection's HS256 token: sub its mid, rooms its room,
// valid for an hour.
func (cn *conn) token(cfg *ConnsConfig) (string, error) {
	now := time.Now()
	claims := tokenClaims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   strconv.FormatInt(cn.mid, 10),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}}
	if cn.room != "" {
		claims.Rooms = []string{cn.room}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(cfg.HMACKey)
}
