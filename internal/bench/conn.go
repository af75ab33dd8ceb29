package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/goim/goim/api/protocol"
	"github.com/golang-jwt/jwt/v5"
)

// conn is one client connection: about 200 bytes plus its read buffer and
// its reader goroutine's stack.
type conn struct {
	o    *Conns
	idx  int // global index
	mid  int64
	key  string
	room string

	// nc is replaced by a reconnect: the reader goroutine, the only
	// writer, sets it under wmu; other goroutines read it under wmu.
	nc net.Conn
	br *bufio.Reader
	ws *wsReader // nil on TCP

	wmu   sync.Mutex // serialises writes: heartbeats, WebSocket pongs
	hbSeq int32      // wmu guards it

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
		if cn.nc != nil {
			_ = cn.nc.Close()
		}
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
		_ = cn.nc.Close()
	}
}

// source is the local address of connection i, nil for the kernel's choice.
func (c *Conns) source(i int) net.Addr {
	if len(c.cfg.Src) == 0 {
		return nil
	}
	return &net.TCPAddr{IP: c.cfg.Src[i%len(c.cfg.Src)].AsSlice()}
}

// handshake dials, upgrades (WebSocket), sends the auth frame and waits
// for the auth reply, all within the handshake timeout. It returns the
// phase an error happened in.
func (cn *conn) handshake(ctx context.Context, addr string, src net.Addr) (string, error) {
	cfg := &cn.o.cfg
	deadline := time.Now().Add(cfg.HandshakeTimeout)
	d := net.Dialer{Deadline: deadline, LocalAddr: src}
	if src != nil {
		d.Control = bindNoPort
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return phaseDial, err
	}
	cn.wmu.Lock()
	cn.nc = nc
	cn.wmu.Unlock()
	_ = nc.SetDeadline(deadline)
	// ctx ending (a signal) cuts a handshake short instead of waiting out
	// its timeout.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var rd io.Reader = nc
	if cfg.Transport == TransportWS {
		u := &url.URL{Scheme: "ws", Host: addr, Path: cfg.WSPath}
		br, _, err := ws.Dialer{}.Upgrade(nc, u)
		if err != nil {
			return phaseUpgrade, err
		}
		if br != nil { // bytes the server sent right after its answer
			extra, _ := br.Peek(br.Buffered())
			rd = io.MultiReader(bytes.NewReader(bytes.Clone(extra)), nc)
			ws.PutReader(br)
		}
	}
	cn.br = bufio.NewReaderSize(countReader{r: rd, n: &cn.o.reads}, cfg.ReadBuffer)
	if cfg.Transport == TransportWS {
		cn.ws = &wsReader{br: cn.br, pong: cn.pong}
	}
	auth, err := cn.authBody(cfg)
	if err != nil {
		return phaseAuth, err
	}
	if err := cn.write(protocol.OpAuth, 1, auth); err != nil {
		return phaseAuth, err
	}
	var first int32 = -1
	var t tally
	err = cn.read(func(op int32, body []byte) {
		if first < 0 {
			first = op
			return
		}
		if t.now == 0 {
			t.now = time.Now().UnixNano()
		}
		cn.o.onFrame(cn, op, body, &t) // a push right behind the reply
	})
	cn.o.flush(&t)
	if err != nil {
		return phaseAuth, err
	}
	if first != protocol.OpAuthReply {
		return phaseAuth, fmt.Errorf("%w: op %d", errAuthReply, first)
	}
	if !stop() { // ctx ended: the deadline may already be in the past
		return phaseAuth, ctx.Err()
	}
	_ = nc.SetDeadline(time.Time{})
	return "", nil
}

// read reads one TCP frame or one WebSocket message.
func (cn *conn) read(fn frameFunc) error {
	if cn.ws != nil {
		return cn.ws.read(fn)
	}
	return readTCP(cn.br, fn)
}

// readLoop records what arrives until the connection ends. What one read
// brought (many frames when the server batches) is tallied locally and
// added to the shared counters once per read: thousands of readers adding
// to the same counters per frame made the tool, not the server, the
// bottleneck of big-room runs.
func (cn *conn) readLoop() {
	c := cn.o
	var t tally
	fn := func(op int32, body []byte) {
		if t.now == 0 {
			t.now = time.Now().UnixNano() // one clock reading per read
		}
		c.onFrame(cn, op, body, &t)
	}
	for {
		err := cn.read(fn)
		c.flush(&t)
		if err == nil {
			continue
		}
		c.alive.Add(-1)
		_ = cn.nc.Close()
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

// closeNC closes the connection's socket; any goroutine may call it.
func (cn *conn) closeNC() {
	cn.wmu.Lock()
	nc := cn.nc
	cn.wmu.Unlock()
	if nc != nil {
		_ = nc.Close()
	}
}

// tally is what one read brought, before it is added to the Conns.
type tally struct {
	now                                         int64 // when the read returned, Unix ns
	frames, delivered, dups, late, foreign, hbs uint64
	latency                                     []int64 // ns, of the delivered frames
	stream                                      []byte  // the last stream name seen and its id
	streamID                                    int32
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
	t.now, t.frames, t.delivered, t.dups, t.late, t.foreign, t.hbs = 0, 0, 0, 0, 0, 0, 0
	t.latency = t.latency[:0]
}

// onFrame tallies one frame a connection received.
func (c *Conns) onFrame(cn *conn, op int32, body []byte, t *tally) {
	switch op {
	case protocol.OpHeartbeatReply:
		t.hbs++
		return
	case protocol.OpAuthReply, protocol.OpChangeRoomReply, protocol.OpSubReply, protocol.OpUnsubReply:
		return
	}
	t.frames++
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

// heartbeat sends an op-2 heartbeat.
func (cn *conn) heartbeat() error {
	cn.wmu.Lock()
	cn.hbSeq++
	seq := cn.hbSeq
	cn.wmu.Unlock()
	return cn.write(protocol.OpHeartbeat, seq, nil)
}

// pong answers a WebSocket ping.
func (cn *conn) pong(payload []byte) error {
	var buf [16 + 125]byte
	return cn.writeRaw(appendWSClientFrame(buf[:0], wsPong, payload))
}

// write sends one goim frame: as is on TCP, as one masked binary message
// on WebSocket.
func (cn *conn) write(op, seq int32, body []byte) error {
	var buf [256]byte
	frame := protocol.AppendFrame(buf[:0], protocol.Version, op, seq, body)
	if cn.ws != nil {
		var wbuf [256 + 14]byte
		frame = appendWSClientFrame(wbuf[:0], wsBinary, frame)
	}
	return cn.writeRaw(frame)
}

// writeRaw writes b with a write deadline, serialised with other writes.
func (cn *conn) writeRaw(b []byte) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	_ = cn.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := cn.nc.Write(b)
	return err
}

// countReader counts the reads of a connection's socket: frames per read
// shows how much the server batches its writes.
type countReader struct {
	r io.Reader
	n *atomic.Uint64
}

func (c countReader) Read(p []byte) (int, error) {
	c.n.Add(1)
	return c.r.Read(p)
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
	body := protocol.AuthBody{Mid: cn.mid, Key: cn.key, RoomID: cn.room, Platform: cfg.Platform, Accepts: cfg.Accepts}
	if len(cfg.HMACKey) > 0 {
		now := time.Now()
		claims := tokenClaims{RegisteredClaims: jwt.RegisteredClaims{
			Subject:   strconv.FormatInt(cn.mid, 10),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		}}
		if cn.room != "" {
			claims.Rooms = []string{cn.room}
		}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(cfg.HMACKey)
		if err != nil {
			return nil, err
		}
		body.Mid, body.Key, body.Token = 0, "", tok
	}
	return json.Marshal(body)
}
