package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goim/goim/client"
)

// ConnsConfig is what the conns subcommand opens.
type ConnsConfig struct {
	// Run is the run id: pushes of other runs are counted as foreign.
	Run string
	// N is the number of connections to open.
	N int
	// First is the global index of the first connection, so several
	// conns processes can share one numbering (mids, keys). Default 0.
	First int
	// Transport is "tcp", "ws" or "sse" (Server-Sent Events on the
	// comet's WebSocket listener: receive only, the comet heartbeats).
	Transport string
	// Addrs are comet client addresses ("host:port" of the transport's
	// listener); connection i dials Addrs[i % len].
	Addrs []string
	// WSPath is the WebSocket path. Default "/sub".
	WSPath string
	// SSEPath is the SSE path (the auth goes in its query). Default "/sse".
	SSEPath string
	// Src are local addresses to dial from, round-robin; none lets the
	// kernel choose. Each gives its own ~28,000 source ports per comet.
	Src []netip.Addr
	// DialRate caps new connections per second; 0 means no cap.
	DialRate float64
	// DialConcurrency bounds handshakes in progress.
	DialConcurrency int
	// HandshakeTimeout bounds dial, upgrade and auth of one connection.
	HandshakeTimeout time.Duration
	// Heartbeat is the period of each connection's op-2 heartbeat.
	Heartbeat time.Duration
	// Rooms: connection i joins Rooms[i % len]; none joins no room.
	Rooms []string
	// MidStart and MidCount assign user ids: with MidCount 0, connection
	// i (global index) is user MidStart+i; otherwise MidStart + i%MidCount,
	// so MidCount users share the connections.
	MidStart int64
	MidCount int
	// KeyPrefix, when set, makes connection i ask for key KeyPrefix+i (so
	// keys pushes can name it); empty lets the server choose.
	KeyPrefix string
	// HMACKey, when set, makes every connection authenticate with an
	// HS256 token signed with it (sub = its mid, rooms = its room, valid
	// for an hour), as a
	// logic with auth.hmac_key_file expects, instead of goim v2's plain
	// JSON; logic then chooses the keys (KeyPrefix must be empty).
	HMACKey []byte
	// Accepts are the ops every connection receives for keys, mids and
	// broadcast pushes.
	Accepts []int32
	// Platform goes into the auth body. Default "web".
	Platform string
	// ReadBuffer is each connection's read buffer, bytes: frames larger
	// than it are read into a fresh allocation. Default 1024.
	ReadBuffer int
	// Reconnect makes a connection that the server or the network ends
	// come back as a goim client would, until the tool closes it: it
	// follows the backoff hint and the nodes of logic's
	// /goim/nodes/weighted (reconnect.go). Without it a dropped
	// connection stays down.
	Reconnect bool
	// APIs are logic HTTP base URLs that reconnecting connections ask for
	// nodes, in turn (one failing, the next). Required with Reconnect.
	APIs []string
	// Reliable makes every connection opt in to reliable delivery: pushes
	// arrive in op-18 envelopes, whose stream positions are checked
	// (duplicates, gaps) and whose ids are acked in op-19 frames
	// (reliable.go). Not with SSE, whose connections ignore it.
	Reliable bool
	// AllowRemote permits non-loopback comets, APIs and source addresses.
	AllowRemote bool
}

// Transports.
const (
	TransportTCP = "tcp"
	TransportWS  = "ws"
	TransportSSE = "sse"
)

// maxConns bounds one process's connections (20,000 open files each).
const maxConns = 1 << 20

// maxRecvBody bounds one frame, message or SSE event body the tool
// accepts from a comet: the server may write frames above the 4096-byte
// client limit (docs/protocol.md §5).
const maxRecvBody = 1 << 24

// writeTimeout bounds each write of a connection (auth, heartbeats, pongs).
const writeTimeout = 5 * time.Second

// Validate reports every problem of c, each wrapping ErrUsage.
func (c ConnsConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...)))
	}
	if !ValidRun(c.Run) {
		bad("-run %q: want 1..%d of [A-Za-z0-9_.-]", c.Run, MaxRunLen)
	}
	if c.N < 1 || c.N > maxConns {
		bad("-n %d: want 1..%d", c.N, maxConns)
	}
	if c.First < 0 {
		bad("-first %d: want >= 0", c.First)
	}
	if c.Transport != TransportTCP && c.Transport != TransportWS && c.Transport != TransportSSE {
		bad("-transport %q: want tcp, ws or sse", c.Transport)
	}
	if len(c.Addrs) == 0 {
		bad("no comet address (-addrs or -api)")
	}
	if c.Transport == TransportWS && !validPath(c.WSPath) {
		bad("-ws-path %q: want an absolute path", c.WSPath)
	}
	if c.Transport == TransportSSE && (!validPath(c.SSEPath) || strings.Contains(c.SSEPath, "?")) {
		bad("-sse-path %q: want an absolute path without a query", c.SSEPath)
	}
	if c.DialRate < 0 {
		bad("-dial-rate %v: want >= 0", c.DialRate)
	}
	if c.DialConcurrency < 1 || c.DialConcurrency > 100000 {
		bad("-dial-concurrency %d: want 1..100000", c.DialConcurrency)
	}
	if c.HandshakeTimeout <= 0 {
		bad("-handshake-timeout %v: want > 0", c.HandshakeTimeout)
	}
	if c.Heartbeat < 100*time.Millisecond {
		bad("-heartbeat %v: want >= 100ms", c.Heartbeat)
	}
	if c.MidCount < 0 {
		bad("-mid-count %d: want >= 0", c.MidCount)
	}
	if len(c.HMACKey) > 0 && len(c.HMACKey) < 32 {
		bad("-hmac-key-file: %d bytes, want at least 32 (as logic)", len(c.HMACKey))
	}
	if len(c.HMACKey) > 0 && c.KeyPrefix != "" {
		bad("-key-prefix with -hmac-key-file: with tokens logic chooses the keys")
	}
	if c.KeyPrefix != "" && !ValidStream(KeyStream(c.KeyPrefix+"0")) {
		bad("-key-prefix %q: printable ASCII without spaces", c.KeyPrefix)
	}
	for _, r := range c.Rooms {
		if !ValidStream(RoomStream(r)) {
			bad("room %q: printable ASCII without spaces", r)
		}
	}
	if c.Reconnect && len(c.APIs) == 0 {
		bad("-reconnect needs logic's HTTP URL (-api) to ask for nodes and the backoff hint")
	}
	for _, a := range c.APIs {
		if u, err := url.Parse(a); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("-api %q: want an http:// or https:// base URL", a)
		}
	}
	if c.Reliable && c.Transport == TransportSSE {
		bad("-reliable with -transport sse: SSE connections get no envelopes")
	}
	if c.ReadBuffer < 64 || c.ReadBuffer > 1<<20 {
		bad("-read-buffer %d: want 64..1048576", c.ReadBuffer)
	}
	return errors.Join(errs...)
}

// CheckTargets refuses non-loopback comets and source addresses unless
// AllowRemote is set.
func (c ConnsConfig) CheckTargets(ctx context.Context) error {
	if c.AllowRemote {
		return nil
	}
	for _, a := range c.Addrs {
		if err := checkHostPort(ctx, a); err != nil {
			return fmt.Errorf("comet %w", err)
		}
	}
	for _, a := range c.APIs {
		if err := checkURL(ctx, a); err != nil {
			return fmt.Errorf("api %w", err)
		}
	}
	for _, a := range c.Src {
		if !a.IsLoopback() {
			return fmt.Errorf("source %s: %w", a, ErrRemote)
		}
	}
	return nil
}

// validPath reports whether p is an absolute request path of printable
// ASCII.
func validPath(p string) bool {
	if !strings.HasPrefix(p, "/") || len(p) > 1024 {
		return false
	}
	for i := range len(p) {
		if p[i] <= ' ' || p[i] >= 0x7f {
			return false
		}
	}
	return true
}

// Conns opens and holds client connections and records what they
// receive. Each connection has one reader goroutine and a small read
// buffer; one goroutine sends every connection's heartbeats.
type Conns struct {
	cfg      ConnsConfig
	dialOpts client.DialOptions // NetDial is set per connection
	log      *slog.Logger
	streams  *streamTable

	latency   *Histogram // push sent to received
	handshake *Histogram // dial to auth reply

	// Reconnect mode (reconnect.go). ctx ends at Close.
	ctx               context.Context
	cancel            context.CancelFunc
	nodes             *nodesSource
	reconnects        atomic.Uint64 // connections brought back after a drop
	reconnectAttempts atomic.Uint64
	reconnectTime     *Histogram // drop to the new auth reply
	firstWait         *Histogram // backoff drawn before the first attempt after a drop

	mu    sync.Mutex // guards conns and errs
	conns []*conn
	errs  map[string]uint64

	start     atomic.Int64 // first dial, Unix ns
	opened    atomic.Int64 // last successful handshake
	end       atomic.Int64 // Close, Unix ns
	failed    atomic.Int64
	alive     atomic.Int64
	dropped   atomic.Int64  // drops: connections the server or the network ended
	frames    atomic.Uint64 // push frames, any run
	foreign   atomic.Uint64
	delivered atomic.Uint64 // this run's pushes, duplicates excluded
	dups      atomic.Uint64
	late      atomic.Uint64
	hbSent    atomic.Uint64
	hbReplies atomic.Uint64
	reads     atomic.Uint64 // socket reads, the handshakes' included
	rel       relCounters   // reliable mode

	lateMu       sync.Mutex // guards lates
	lates        map[lateKey]uint32
	lateOverflow atomic.Uint64 // late arrivals beyond maxLateKeys

	stop      chan struct{} // closed by Close: the heartbeat loop ends
	stopOnce  sync.Once
	wg        sync.WaitGroup // readers and the heartbeat loop
	startedHB atomic.Bool
}

// NewConns checks cfg and returns a Conns that has opened nothing yet. A
// nil log discards.
func NewConns(cfg ConnsConfig, log *slog.Logger) (*Conns, error) {
	if cfg.WSPath == "" {
		cfg.WSPath = "/sub"
	}
	if cfg.SSEPath == "" {
		cfg.SSEPath = "/sse"
	}
	if cfg.Platform == "" {
		cfg.Platform = "web"
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = 1024
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conns{
		cfg:           cfg,
		log:           log,
		streams:       newStreamTable(),
		latency:       NewHistogram(),
		handshake:     NewHistogram(),
		reconnectTime: NewHistogram(),
		firstWait:     NewHistogram(),
		errs:          make(map[string]uint64),
		lates:         make(map[lateKey]uint32),
		stop:          make(chan struct{}),
	}
	c.dialOpts = client.DialOptions{
		Transport:        client.TCP,
		Path:             cfg.WSPath,
		HandshakeTimeout: cfg.HandshakeTimeout,
		WriteTimeout:     writeTimeout,
		MaxBody:          maxRecvBody,
		ReadBufferSize:   cfg.ReadBuffer,
	}
	if cfg.Transport == TransportWS {
		c.dialOpts.Transport = client.WS
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if cfg.Reconnect {
		c.nodes = newNodesSource(&c.cfg, func(err error) { c.countErr(phaseNodes, err) })
	}
	return c, nil
}

// Open opens the connections, at most DialConcurrency handshakes at a time
// and DialRate new ones per second, and returns when every one has been
// tried or ctx ends. The open ones stay open, heart-beating and recording,
// until Close.
func (c *Conns) Open(ctx context.Context) {
	// SSE connections send nothing: the comet heartbeats them.
	if c.cfg.Transport != TransportSSE && c.startedHB.CompareAndSwap(false, true) {
		c.wg.Go(c.heartbeatLoop)
		if c.cfg.Reliable {
			c.wg.Go(c.ackLoop)
		}
	}
	jobs := make(chan int)
	var dialers sync.WaitGroup
	for range min(c.cfg.DialConcurrency, c.cfg.N) {
		dialers.Go(func() {
			for i := range jobs {
				c.open(ctx, i)
			}
		})
	}
	start := time.Now()
	c.start.CompareAndSwap(0, start.UnixNano())
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
feed:
	for i := range c.cfg.N {
		if c.cfg.DialRate > 0 {
			due := start.Add(time.Duration(float64(i) / c.cfg.DialRate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					break feed
				case <-timer.C:
				}
			}
		}
		select {
		case <-ctx.Done():
			break feed
		case jobs <- i:
		}
	}
	close(jobs)
	dialers.Wait()
}

// countErr counts an error of phase and logs the first of each kind.
func (c *Conns) countErr(phase string, err error) {
	k := phase + "/" + errKind(err)
	c.mu.Lock()
	c.errs[k]++
	first := c.errs[k] == 1
	c.mu.Unlock()
	if first {
		c.log.Warn("goim-bench: connection error (first of its kind; the rest are counted)", "kind", k, "err", err)
	}
}

// Close closes every connection, as the end of the run (what they would
// have received after now is not expected of them), and waits for the
// readers and the heartbeat loop. It is idempotent.
func (c *Conns) Close() {
	c.stopOnce.Do(func() {
		c.end.Store(time.Now().UnixNano())
		close(c.stop)
		c.cancel()
		c.mu.Lock()
		all := c.conns
		c.mu.Unlock()
		if c.cfg.Reliable {
			c.ackAll(all) // what arrived before the end is acked
		}
		for _, cn := range all {
			cn.closing.Store(true)
			cn.closeLink()
		}
		c.wg.Wait()
		if c.nodes != nil {
			c.nodes.close()
		}
	})
}

// heartbeatLoop sends each connection an op-2 heartbeat once per period:
// every 100 ms it serves one slot of connections (index mod slots), so the
// writes spread evenly instead of 19,000 timers or goroutines.
func (c *Conns) heartbeatLoop() {
	const tick = 100 * time.Millisecond
	slots := max(int(c.cfg.Heartbeat/tick), 1)
	t := time.NewTicker(tick)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		all := c.conns
		c.mu.Unlock()
		for i := n % slots; i < len(all); i += slots {
			cn := all[i]
			if cn.closing.Load() || cn.down.Load() != 0 {
				continue
			}
			if err := cn.heartbeat(); err != nil {
				c.countErr(phaseHeartbeat, err)
				continue
			}
			c.hbSent.Add(1)
		}
	}
}

// connsProgress is what the progress line shows of the connections.
type connsProgress struct {
	alive, failed, dropped int64
	reconnected            uint64
	opened                 int
	delivered, foreign     uint64
	latency                *HistData
}

func (c *Conns) progress() connsProgress {
	c.mu.Lock()
	opened := len(c.conns)
	c.mu.Unlock()
	return connsProgress{
		alive: c.alive.Load(), failed: c.failed.Load(), dropped: c.dropped.Load(), reconnected: c.reconnects.Load(), opened: opened,
		delivered: c.delivered.Load(), foreign: c.foreign.Load(), latency: c.latency.Snapshot(),
	}
}

// Record returns what the connections received so far. It may be called
// while they are open (each connection's log is read under its lock).
func (c *Conns) Record() *ConnsRecord {
	c.mu.Lock()
	all := c.conns
	errs := maps.Clone(c.errs)
	c.mu.Unlock()
	r := &ConnsRecord{
		Run:               c.cfg.Run,
		Transport:         c.cfg.Transport,
		Requested:         c.cfg.N,
		First:             c.cfg.First,
		Accepts:           c.cfg.Accepts,
		Start:             c.start.Load(),
		Opened:            c.opened.Load(),
		End:               c.end.Load(),
		Failed:            int(c.failed.Load()),
		Errors:            errs,
		Frames:            c.frames.Load(),
		Foreign:           c.foreign.Load(),
		HeartbeatsSent:    c.hbSent.Load(),
		HeartbeatReplies:  c.hbReplies.Load(),
		Reads:             c.reads.Load(),
		LateUnclassified:  c.lateOverflow.Load(),
		Handshake:         *c.handshake.Snapshot(),
		Reconnect:         c.cfg.Reconnect,
		Drops:             uint64(c.dropped.Load()),
		Reconnects:        c.reconnects.Load(),
		ReconnectAttempts: c.reconnectAttempts.Load(),
		ReconnectTime:     *c.reconnectTime.Snapshot(),
		FirstWait:         *c.firstWait.Snapshot(),
		Latency:           *c.latency.Snapshot(),
		Conns:             make([]ConnRecord, 0, len(all)),
	}
	if r.Accepts == nil {
		r.Accepts = []int32{}
	}
	if c.cfg.Reliable {
		r.Reliable = c.rel.record()
	}
	c.lateMu.Lock()
	for k, n := range c.lates {
		r.LateArrivals = append(r.LateArrivals, LateArrival{Stream: c.streams.name(k.stream), Seq: k.seq, After: k.after, Count: n})
	}
	c.lateMu.Unlock()
	slices.SortFunc(r.LateArrivals, func(a, b LateArrival) int {
		return cmp.Or(strings.Compare(a.Stream, b.Stream), cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.After, b.After))
	})
	for _, cn := range all {
		cr := ConnRecord{Index: cn.idx, Mid: cn.mid, Key: cn.key, Room: cn.room, Up: cn.up, Down: cn.down.Load(),
			Reconnects: int(cn.reconnects.Load())}
		cn.recv.mu.Lock()
		for _, st := range cn.recv.streams {
			sr := StreamRecv{Stream: c.streams.name(st.id), Ranges: make([][2]uint64, len(st.set.r)), Dup: st.dup, Late: st.late}
			for i, x := range st.set.r {
				sr.Ranges[i] = [2]uint64{x.Lo, x.Hi}
			}
			cr.Streams = append(cr.Streams, sr)
		}
		cn.recv.mu.Unlock()
		r.Conns = append(r.Conns, cr)
	}
	return r
}

// noteLate keeps a late arrival for classification (see evaluate.go).
func (c *Conns) noteLate(k lateKey) {
	c.lateMu.Lock()
	defer c.lateMu.Unlock()
	if _, ok := c.lates[k]; !ok && len(c.lates) >= maxLateKeys {
		c.lateOverflow.Add(1)
		return
	}
	c.lates[k]++
}
