package comet

import (
	"os"
	"slices"
	"strings"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/rpcauth"
)

// Config is the comet's configuration (configs/comet.toml). Every field says
// its unit and default; Default returns the defaults.
type Config struct {
	// Host is this comet's server id: logic stores it in the session routing
	// and job finds the comet by it. Default: the OS hostname.
	Host string `toml:"host"`
	// TCP configures the goim TCP listeners.
	TCP TCPConfig `toml:"tcp"`
	// WebSocket configures the WebSocket listeners.
	WebSocket WebSocketConfig `toml:"websocket"`
	// SSE serves Server-Sent Events on the WebSocket listeners.
	SSE SSEConfig `toml:"sse"`
	// TLS holds the certificate for the TLS and WSS listeners.
	TLS TLSConfig `toml:"tls"`
	// Protocol holds per-connection limits and timeouts.
	Protocol ProtocolConfig `toml:"protocol"`
	// Bucket shards the connections.
	Bucket BucketConfig `toml:"bucket"`
	// RPC is the gRPC server job calls.
	RPC RPCConfig `toml:"rpc"`
	// Logic is the client of logic's gRPC service.
	Logic LogicConfig `toml:"logic"`
	// Limits caps what clients may use.
	Limits LimitsConfig `toml:"limits"`
	// Node is what this comet advertises to clients and logic.
	Node NodeConfig `toml:"node"`
	// Drain says how the comet leaves the cluster on SIGTERM or SIGINT.
	Drain DrainConfig `toml:"drain"`
	// Admin is the metrics, pprof and health listener.
	Admin admin.Config `toml:"admin"`
	// Discovery is bilibili/discovery. With no nodes the comet does not
	// register and logic.addrs must be set.
	Discovery discovery.Config `toml:"discovery"`
}

// NodeConfig is the [node] section: the comet's entry in discovery.
type NodeConfig struct {
	// Weight is this comet's share of new clients relative to the others.
	// Default 10.
	Weight int `toml:"weight"`
	// Addrs are the public addresses (IPs or names, no port) clients dial.
	// Default: none (logic then hands out its default domain).
	Addrs []string `toml:"addrs"`
}

// DrainConfig is the [drain] section.
type DrainConfig struct {
	// Window is how long SIGTERM spends closing clients, spread evenly so
	// they reconnect elsewhere gradually. Default "30s".
	Window conf.Duration `toml:"window"`
	// InterruptWindow is the same for SIGINT (Ctrl-C). Default "2s".
	InterruptWindow conf.Duration `toml:"interrupt_window"`
	// Grace bounds what shutdown may take after the window (in-flight
	// calls, deregistration). Default "5s".
	Grace conf.Duration `toml:"grace"`
}

// TCPConfig is the [tcp] section.
type TCPConfig struct {
	// Bind lists plain TCP listen addresses (host:port). Default [":3101"].
	Bind []string `toml:"bind"`
	// TLSBind lists TCP-over-TLS listen addresses. Default none; needs [tls].
	TLSBind []string `toml:"tls_bind"`
	// KeepAlive is the TCP keep-alive probe period of client connections;
	// "0s" keeps Go's default (probes on, every 15 s), a negative value
	// turns them off. Default "0s".
	KeepAlive conf.Duration `toml:"keepalive"`
}

// WebSocketConfig is the [websocket] section.
type WebSocketConfig struct {
	// Bind lists WebSocket listen addresses. Default [":3102"].
	Bind []string `toml:"bind"`
	// TLSBind lists WSS listen addresses. Default none; needs [tls].
	TLSBind []string `toml:"tls_bind"`
	// Path is the upgrade path; a query string is allowed. Default "/sub".
	Path string `toml:"path"`
	// Origins, when not empty, is the list of Origin header values allowed
	// to upgrade (exact match); requests without Origin are allowed.
	// Default empty: any origin.
	Origins []string `toml:"origins"`
}

// SSEConfig is the [sse] section: Server-Sent Events (GET with the auth
// in the query, answered text/event-stream) on the WebSocket and WSS
// listeners, next to the WebSocket path, for browsers without a goim
// client. The same limits, origin check (websocket.origins) and auth
// apply as to WebSocket (docs/protocol.md).
type SSEConfig struct {
	// Path is the SSE request path (a GET with a query string), on the
	// same listeners as websocket.path and different from it; "" turns SSE
	// off. At most 256 bytes. Default "/sse".
	Path string `toml:"path"`
	// Retry is the reconnect delay sent in the stream's first line
	// (retry:), which EventSource waits before reconnecting after the
	// stream ends (a drain, a network error), 100ms..1h. Default "3s".
	Retry conf.Duration `toml:"retry"`
	// RetryJitter spreads Retry per connection by ± that fraction, 0..1,
	// so the EventSources of a drained comet reconnect spread out.
	// Default 0.3.
	RetryJitter float64 `toml:"retry_jitter"`
	// Heartbeat is how often an idle stream gets a comment line (":"),
	// keeping proxies from timing it out and finding dead clients by a
	// failed write, 1s..1h; at most half logic's session timeout (its
	// heartbeat x heartbeat_max) is used. The session is renewed in logic
	// on this cadence as for a heartbeating client
	// (protocol.session_renew). Default "30s".
	Heartbeat conf.Duration `toml:"heartbeat"`
}

// maxSSEPath bounds sse.path.
const maxSSEPath = 256

// TLSConfig is the [tls] section.
type TLSConfig struct {
	// CertFile is a PEM certificate chain. Required when any TLS listener is
	// configured.
	CertFile string `toml:"cert_file"`
	// KeyFile is the PEM private key of CertFile.
	KeyFile string `toml:"key_file"`
}

// ProtocolConfig is the [protocol] section.
type ProtocolConfig struct {
	// HandshakeTimeout covers TLS, the WebSocket upgrade and auth. Default "5s".
	HandshakeTimeout conf.Duration `toml:"handshake_timeout"`
	// MaxBody is the largest body of a frame a client may send, in bytes.
	// Default 4096 (goim v2's limit).
	MaxBody int `toml:"max_body"`
	// WriteTimeout bounds every socket write. Default "10s".
	WriteTimeout conf.Duration `toml:"write_timeout"`
	// QueueFrames bounds the frames waiting to be written to one connection.
	// Default 64.
	QueueFrames int `toml:"queue_frames"`
	// QueueBytes bounds the bytes waiting to be written to one connection.
	// Default 1048576 (1 MiB).
	QueueBytes int `toml:"queue_bytes"`
	// SlowPolicy says what happens when a connection's queue is full:
	// "close" disconnects the slow client, "drop" drops the frame; both are
	// counted. Default "close".
	SlowPolicy string `toml:"slow_policy"`
	// SessionRenew is how often, at most, a connection's session is renewed
	// in logic (on a client heartbeat), jittered by ±10 %. Renewals of a
	// live connection are then at most 1.1 x SessionRenew plus logic's
	// heartbeat x heartbeat_max apart, which must stay below logic's
	// redis.session_ttl. Default "10m".
	SessionRenew conf.Duration `toml:"session_renew"`
}

// BucketConfig is the [bucket] section.
type BucketConfig struct {
	// Count is the number of connection buckets (key hash shards). Default 32.
	Count int `toml:"count"`
	// RoomWorkers is the number of room broadcast workers; one room always
	// goes to the same worker, so its batches stay in order. Default 32.
	RoomWorkers int `toml:"room_workers"`
	// RoomQueue is each room worker's queue length, in batches. Default 1024.
	RoomQueue int `toml:"room_queue"`
	// RoomLingerFactor paces big rooms, 0..100: after a fan-out of a
	// room that took d, the room's next fan-out waits until
	// room_linger_factor × d after it ended (at most room_linger_max),
	// and the pushes that arrive meanwhile go out merged, one write per
	// member. A room's fan-outs then keep its worker busy at most
	// 1/(1+factor) of the time. It trades latency for CPU: a push to a
	// big, busy room waits up to that long. Rooms whose wait would be
	// under 1ms, and rooms quieter than their wait, are never held.
	// 0 turns pacing off. Default 2.
	RoomLingerFactor float64 `toml:"room_linger_factor"`
	// RoomLingerMax bounds a room's wait, 0..2s. Default "250ms".
	RoomLingerMax conf.Duration `toml:"room_linger_max"`
	// RoomGapWait is how long a recoverable room's messages that arrive
	// beyond a missing offset are held for it, 0..10s. Several logic
	// instances pushing to one recoverable room can publish its offsets
	// out of order; the missing push usually follows within job's room
	// linger. A gap still open after room_gap_wait is filled by one read
	// of the room's stream for all its reliable members on this comet.
	// Only reliable members wait; the others get every push as it
	// arrives. 0 reads at once. Default "250ms".
	RoomGapWait conf.Duration `toml:"room_gap_wait"`
	// IOURing sends the fan-outs of rooms of 32 members or more through
	// io_uring on Linux: the members found idle get the frame with one
	// send each, submitted up to 1024 at a time with one system call,
	// instead of one write(2) each. Where io_uring is unavailable (an old
	// kernel, kernel.io_uring_disabled, seccomp) the comet logs it once
	// and writes with write(2). false always writes with write(2).
	// Default true.
	IOURing bool `toml:"io_uring"`
	// BroadcastQueue is the broadcast worker's queue length, in unpaced
	// broadcasts. Default 16.
	BroadcastQueue int `toml:"broadcast_queue"`
	// PacedBroadcasts bounds the paced broadcasts (speed > 0) running at
	// once. Each runs on a goroutine of its own, never on the broadcast
	// worker, so it delays no other push; when this many run, Broadcast
	// answers ResourceExhausted at once. Default 16.
	PacedBroadcasts int `toml:"paced_broadcasts"`
}

// RPCConfig is the [rpc] section.
type RPCConfig struct {
	// Bind is the gRPC listen address job dials. Default ":3109".
	Bind string `toml:"bind"`
	// Advertise is the host:port registered in discovery for job to dial.
	// Default: Bind's port on the first non-loopback IPv4 address (or
	// 127.0.0.1) when Bind has no host.
	Advertise string `toml:"advertise"`
	// Config holds secret_file and insecure: the secret this comet sends
	// to logic and requires of job (with several lines, the secrets
	// accepted during a rotation).
	rpcauth.Config
}

// LogicConfig is the [logic] section.
type LogicConfig struct {
	// Addrs lists logic gRPC addresses (host:port), balanced round robin.
	// Empty: logic instances come from discovery (app goim.logic).
	// Default ["127.0.0.1:3119"].
	Addrs []string `toml:"addrs"`
	// Timeout bounds every call to logic. Default "3s".
	Timeout conf.Duration `toml:"timeout"`
	// ReportInterval is how often room online counts and load go to logic
	// (RenewOnline). Default "5s".
	ReportInterval conf.Duration `toml:"report_interval"`
	// DisconnectRetry is how long a disconnect that failed because logic
	// (or its Redis) was unavailable or too slow keeps being sent again,
	// with a backoff from 0.5 s doubling to 8 s, from its first failure;
	// then it is given up (goim_comet_disconnects_abandoned_total) and the
	// session's routing stays in Redis until it expires. "0s": never sent
	// again. Default "30s".
	DisconnectRetry conf.Duration `toml:"disconnect_retry"`
}

// LimitsConfig is the [limits] section: what one client, one IP or all
// clients together may use. Zero means unlimited for each. The defaults are
// for production: generous for honest clients (NAT gateways put hundreds
// of users behind one address), tight enough that one host cannot take a
// comet's capacity or make logic do unbounded work.
type LimitsConfig struct {
	// MaxConns caps the connections on this comet, authenticated or not;
	// one over it is closed at accept (too_many_conns). At what an idle
	// connection costs (docs/benchmark.md), 200,000 keep a comet within a
	// few GB while leaving the file descriptor limit as the next bound.
	// Default 200000.
	MaxConns int `toml:"max_conns"`
	// MaxConnsPerIP caps the connections from one client IP (IPv6: one
	// /64); one over it is closed at accept (too_many_conns). A carrier
	// or office NAT puts hundreds of users behind one address; 1000 leaves
	// them room while one host takes at most 0.5 % of max_conns.
	// Default 1000.
	MaxConnsPerIP int `toml:"max_conns_per_ip"`
	// AuthRatePerIP caps handshakes (auth frames) per second from one
	// client IP: a token bucket with a burst of the same size (at least
	// 1); a handshake over it is closed (auth_rate). The IP's bucket
	// outlives its connections until it is full again, so connecting,
	// authenticating and closing in a loop is limited too. At 20 a
	// second a NAT of 1000 users reconnects within a minute after a
	// network blip (clients back off anyway), while one host can make
	// logic check at most 20 tokens a second per comet. Default 20.
	AuthRatePerIP float64 `toml:"auth_rate_per_ip"`
	// PendingAuthPerIP caps the handshakes of one client IP waiting for
	// logic's answer at once; one over it is closed (counted as
	// auth_rate). It keeps the connect queue fair: a flood of tokens from
	// one IP while logic is slow holds at most this many of the queue's
	// places, and other clients' handshakes go on. Default 16.
	PendingAuthPerIP int `toml:"pending_auth_per_ip"`
	// FramesPerSecond caps the frames one authenticated client sends per
	// second (any op, WebSocket pings included), counted in 1-second
	// windows; a client over it is closed (frame_rate). A goim client
	// sends a heartbeat every few minutes plus an occasional room
	// change or message; 50 is far above that and bounds the calls to
	// logic one connection can cause (each unknown op is a Receive).
	// Default 50.
	FramesPerSecond int `toml:"frames_per_second"`
	// MaxRooms caps the distinct rooms with members on this comet; a join
	// (op 12 or the auth reply's room) that would create one more is
	// closed (too_many_rooms). Every room goes to logic in each online
	// report: 100,000 rooms of up to 128 bytes keep a report within
	// gRPC's message limit and match the rooms logic keeps per report.
	// Default 100000.
	MaxRooms int `toml:"max_rooms"`
}

// Slow-client policies.
const (
	SlowClose = "close"
	SlowDrop  = "drop"
)

// Default returns the built-in configuration.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		Host:      host,
		TCP:       TCPConfig{Bind: []string{":3101"}},
		WebSocket: WebSocketConfig{Bind: []string{":3102"}, Path: "/sub"},
		SSE:       SSEConfig{Path: "/sse", Retry: conf.Duration(3 * time.Second), RetryJitter: 0.3, Heartbeat: conf.Duration(30 * time.Second)},
		Protocol: ProtocolConfig{
			HandshakeTimeout: conf.Duration(5 * time.Second),
			MaxBody:          protocol.MaxBodySize,
			WriteTimeout:     conf.Duration(10 * time.Second),
			QueueFrames:      64,
			QueueBytes:       1 << 20,
			SlowPolicy:       SlowClose,
			SessionRenew:     conf.Duration(10 * time.Minute),
		},
		Bucket: BucketConfig{Count: 32, RoomWorkers: 32, RoomQueue: 1024, RoomLingerFactor: 2, RoomLingerMax: conf.Duration(250 * time.Millisecond), RoomGapWait: conf.Duration(250 * time.Millisecond), IOURing: true, BroadcastQueue: 16, PacedBroadcasts: 16},
		RPC:    RPCConfig{Bind: ":3109"},
		Logic: LogicConfig{
			Addrs:           []string{"127.0.0.1:3119"},
			Timeout:         conf.Duration(3 * time.Second),
			ReportInterval:  conf.Duration(5 * time.Second),
			DisconnectRetry: conf.Duration(30 * time.Second),
		},
		Limits: LimitsConfig{
			MaxConns:         200000,
			MaxConnsPerIP:    1000,
			AuthRatePerIP:    20,
			PendingAuthPerIP: 16,
			FramesPerSecond:  50,
			MaxRooms:         100000,
		},
		Node: NodeConfig{Weight: 10},
		Drain: DrainConfig{
			Window:          conf.Duration(30 * time.Second),
			InterruptWindow: conf.Duration(2 * time.Second),
			Grace:           conf.Duration(5 * time.Second),
		},
		Admin:     adminDefault(),
		Discovery: discovery.DefaultConfig(),
	}
}

// wsPathOnly is websocket.path without its query string.
func wsPathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

func adminDefault() admin.Config {
	c := admin.DefaultConfig()
	c.Addr = "127.0.0.1:3110"
	return c
}

// Load reads path over the defaults and validates the result.
func Load(path string) (Config, error) { return conf.LoadValid(path, Default()) }

// Validate reports every problem of c, each with its key path.
func (c Config) Validate() error {
	var p conf.Problems
	p.Check(c.Host != "", "host", "must not be empty (no OS hostname either)")
	p.Sub("tcp").HostPorts("bind", c.TCP.Bind)
	p.Sub("tcp").HostPorts("tls_bind", c.TCP.TLSBind)
	p.Sub("websocket").HostPorts("bind", c.WebSocket.Bind)
	p.Sub("websocket").HostPorts("tls_bind", c.WebSocket.TLSBind)
	p.Check(len(c.TCP.Bind)+len(c.TCP.TLSBind)+len(c.WebSocket.Bind)+len(c.WebSocket.TLSBind) > 0,
		"", "no client listener: set tcp.bind, tcp.tls_bind, websocket.bind or websocket.tls_bind")
	p.Check(len(c.WebSocket.Path) > 0 && c.WebSocket.Path[0] == '/', "websocket.path", "must start with /, got %q", c.WebSocket.Path)
	se := p.Sub("sse")
	if c.SSE.Path != "" {
		se.Check(c.SSE.Path[0] == '/' && len(c.SSE.Path) <= maxSSEPath && !strings.ContainsAny(c.SSE.Path, "?# \t\r\n"), "path",
			"must be empty (off) or start with / and hold at most %d bytes without ?, #, spaces or line breaks, got %q", maxSSEPath, c.SSE.Path)
		se.Check(c.SSE.Path != wsPathOnly(c.WebSocket.Path), "path", "must differ from websocket.path, got %q", c.SSE.Path)
	}
	se.Check(c.SSE.Retry.D() >= 100*time.Millisecond && c.SSE.Retry.D() <= time.Hour, "retry", "must be 100ms..1h, got %v", c.SSE.Retry)
	se.Check(c.SSE.RetryJitter >= 0 && c.SSE.RetryJitter <= 1, "retry_jitter", "must be 0..1, got %v", c.SSE.RetryJitter)
	se.Check(c.SSE.Heartbeat.D() >= time.Second && c.SSE.Heartbeat.D() <= time.Hour, "heartbeat", "must be 1s..1h, got %v", c.SSE.Heartbeat)
	if len(c.TCP.TLSBind)+len(c.WebSocket.TLSBind) > 0 {
		p.Check(c.TLS.CertFile != "", "tls.cert_file", "required by the TLS listeners")
		p.Check(c.TLS.KeyFile != "", "tls.key_file", "required by the TLS listeners")
	}

	pr := p.Sub("protocol")
	pr.Check(c.Protocol.HandshakeTimeout > 0, "handshake_timeout", "must be > 0, got %v", c.Protocol.HandshakeTimeout)
	pr.Check(c.Protocol.MaxBody >= 0 && c.Protocol.MaxBody <= 1<<24, "max_body", "must be 0..16777216 bytes, got %d", c.Protocol.MaxBody)
	pr.Check(c.Protocol.WriteTimeout > 0, "write_timeout", "must be > 0, got %v", c.Protocol.WriteTimeout)
	pr.Check(c.Protocol.QueueFrames > 0, "queue_frames", "must be > 0, got %d", c.Protocol.QueueFrames)
	pr.Check(c.Protocol.QueueBytes > 0, "queue_bytes", "must be > 0, got %d", c.Protocol.QueueBytes)
	pr.Check(slices.Contains([]string{SlowClose, SlowDrop}, c.Protocol.SlowPolicy), "slow_policy",
		"must be %q or %q, got %q", SlowClose, SlowDrop, c.Protocol.SlowPolicy)
	pr.Check(c.Protocol.SessionRenew > 0, "session_renew", "must be > 0, got %v", c.Protocol.SessionRenew)

	b := p.Sub("bucket")
	b.Check(c.Bucket.Count > 0, "count", "must be > 0, got %d", c.Bucket.Count)
	b.Check(c.Bucket.RoomWorkers > 0, "room_workers", "must be > 0, got %d", c.Bucket.RoomWorkers)
	b.Check(c.Bucket.RoomQueue > 0, "room_queue", "must be > 0, got %d", c.Bucket.RoomQueue)
	b.Check(c.Bucket.RoomLingerFactor >= 0 && c.Bucket.RoomLingerFactor <= 100, "room_linger_factor", "must be 0..100, got %v", c.Bucket.RoomLingerFactor)
	b.Check(c.Bucket.RoomLingerMax >= 0 && c.Bucket.RoomLingerMax <= conf.Duration(2*time.Second), "room_linger_max", "must be 0..2s, got %v", c.Bucket.RoomLingerMax)
	b.Check(c.Bucket.RoomGapWait >= 0 && c.Bucket.RoomGapWait <= conf.Duration(10*time.Second), "room_gap_wait", "must be 0..10s, got %v", c.Bucket.RoomGapWait)
	b.Check(c.Bucket.BroadcastQueue > 0, "broadcast_queue", "must be > 0, got %d", c.Bucket.BroadcastQueue)
	b.Check(c.Bucket.PacedBroadcasts > 0, "paced_broadcasts", "must be > 0, got %d", c.Bucket.PacedBroadcasts)

	p.HostPort("rpc.bind", c.RPC.Bind)
	if c.RPC.Advertise != "" {
		p.HostPort("rpc.advertise", c.RPC.Advertise)
	}
	c.RPC.Config.Validate(p.Sub("rpc"))
	l := p.Sub("logic")
	l.Check(len(c.Logic.Addrs) > 0 || len(c.Discovery.Nodes) > 0, "addrs",
		"must list at least one logic address when discovery.nodes is empty")
	l.HostPorts("addrs", c.Logic.Addrs)
	l.Check(c.Logic.Timeout > 0, "timeout", "must be > 0, got %v", c.Logic.Timeout)
	l.Check(c.Logic.ReportInterval > 0, "report_interval", "must be > 0, got %v", c.Logic.ReportInterval)
	l.Check(c.Logic.DisconnectRetry >= 0, "disconnect_retry", "must be >= 0 (0 = no retry), got %v", c.Logic.DisconnectRetry)

	li := p.Sub("limits")
	li.Check(c.Limits.MaxConns >= 0, "max_conns", "must be >= 0, got %d", c.Limits.MaxConns)
	li.Check(c.Limits.MaxConnsPerIP >= 0, "max_conns_per_ip", "must be >= 0, got %d", c.Limits.MaxConnsPerIP)
	li.Check(c.Limits.AuthRatePerIP >= 0 && c.Limits.AuthRatePerIP <= 1e6, "auth_rate_per_ip", "must be 0..1000000, got %v", c.Limits.AuthRatePerIP)
	li.Check(c.Limits.PendingAuthPerIP >= 0, "pending_auth_per_ip", "must be >= 0, got %d", c.Limits.PendingAuthPerIP)
	li.Check(c.Limits.FramesPerSecond >= 0 && c.Limits.FramesPerSecond <= 1e6, "frames_per_second", "must be 0..1000000, got %d", c.Limits.FramesPerSecond)
	li.Check(c.Limits.MaxRooms >= 0, "max_rooms", "must be >= 0, got %d", c.Limits.MaxRooms)
	p.Check(c.Node.Weight > 0, "node.weight", "must be > 0, got %d", c.Node.Weight)
	d := p.Sub("drain")
	d.Check(c.Drain.Window >= 0, "window", "must be >= 0, got %v", c.Drain.Window)
	d.Check(c.Drain.InterruptWindow >= 0, "interrupt_window", "must be >= 0, got %v", c.Drain.InterruptWindow)
	d.Check(c.Drain.Grace > 0, "grace", "must be > 0, got %v", c.Drain.Grace)
	c.Admin.Validate(p.Sub("admin"))
	if len(c.Discovery.Nodes) > 0 {
		c.Discovery.Validate(p.Sub("discovery"))
	}
	return p.Err()
}
