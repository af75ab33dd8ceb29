package logic

import (
	"math"
	"os"
	"time"

	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/logic/httpapi"
	"github.com/goim/goim/internal/logic/receipts"
	"github.com/goim/goim/internal/rpcauth"
)

// Config is logic's configuration (configs/logic.toml). Every field says
// its unit and default; Default returns the defaults.
type Config struct {
	// Host names this logic instance in discovery. Default: the OS
	// hostname.
	Host string `toml:"host"`
	// HTTP is the push, online and nodes API.
	HTTP httpapi.Config `toml:"http"`
	// RPC is the gRPC service comets call.
	RPC RPCConfig `toml:"rpc"`
	// Auth says how connection tokens are verified.
	Auth AuthConfig `toml:"auth"`
	// Node is what /goim/nodes/weighted tells clients.
	Node NodeConfig `toml:"node"`
	// Backoff is the reconnect hint /goim/nodes/weighted gives clients.
	Backoff BackoffConfig `toml:"backoff"`
	// Online says how comets' reports become cluster totals.
	Online OnlineConfig `toml:"online"`
	// Redis holds the session routing and the comets' online reports.
	Redis dao.RedisConfig `toml:"redis"`
	// Kafka receives every push.
	Kafka dao.KafkaConfig `toml:"kafka"`
	// Stream is the reliable delivery streams (per user, key and room).
	Stream StreamConfig `toml:"stream"`
	// Receipts is the delivery receipts of reliable connections.
	Receipts receipts.Config `toml:"receipts"`
	// Admin is the metrics, pprof and health listener.
	Admin admin.Config `toml:"admin"`
	// Discovery is bilibili/discovery: logic registers as goim.logic and
	// follows goim.comet. With no nodes logic does not register and knows
	// comets only from their online reports (no addresses for
	// /goim/nodes/weighted then, see NodeConfig.HostDomain).
	Discovery discovery.Config `toml:"discovery"`
	// ShutdownTimeout bounds a graceful shutdown (in-flight pushes and
	// RPCs). Default "10s".
	ShutdownTimeout conf.Duration `toml:"shutdown_timeout"`
}

// RPCConfig is the [rpc] section.
type RPCConfig struct {
	// Bind is the gRPC listen address comets dial. Default ":3119".
	Bind string `toml:"bind"`
	// Advertise is the host:port registered in discovery for comets.
	// Default: Bind's port on the first non-loopback IPv4 address (or
	// 127.0.0.1) when Bind has no host.
	Advertise string `toml:"advertise"`
	// Weight is this instance's weight in discovery. Default 10.
	Weight int `toml:"weight"`
	// Config holds secret_file and insecure: the secret comets must send
	// (and, with several lines, the secrets accepted during a rotation).
	rpcauth.Config
}

// NodeConfig is the [node] section: how clients reach comets.
type NodeConfig struct {
	// DefaultDomain is handed out when no comet is available (or none has
	// an address for the platform). Default "127.0.0.1".
	DefaultDomain string `toml:"default_domain"`
	// HostDomain, when set, makes web clients get "<comet host><host_domain>"
	// (for example ".goim.io" gives "comet-1.goim.io": a name a TLS
	// certificate can cover) instead of the comet's addresses. Default "".
	HostDomain string `toml:"host_domain"`
	// TCPPort, WSPort and WSSPort are the comet ports clients dial.
	// Defaults 3101, 3102, 3103.
	TCPPort int `toml:"tcp_port"`
	WSPort  int `toml:"ws_port"`
	WSSPort int `toml:"wss_port"`
	// Heartbeat is the period at which clients should heartbeat, whole
	// seconds, 1s..1h. Default "4m": goim v2's, which its clients and mobile
	// SDKs are built for. A shorter period finds dead connections sooner
	// (a comet closes one after Heartbeat x HeartbeatMax) at the cost of
	// more wake-ups of every mobile client's radio, and of more frames for
	// comets.
	Heartbeat conf.Duration `toml:"heartbeat"`
	// HeartbeatMax is how many heartbeat periods a client may stay silent:
	// a comet closes a connection silent for Heartbeat x HeartbeatMax (the
	// session timeout logic gives comets at auth), 1..100. Default 2
	// (goim v2's): one heartbeat may be lost or late by up to a period.
	HeartbeatMax int `toml:"heartbeat_max"`
	// MaxNodes caps the entries in a nodes answer. Default 5.
	MaxNodes int `toml:"max_nodes"`
}

// BackoffConfig is the [backoff] section: reconnect hints for clients
// (logic does not use them itself).
type BackoffConfig struct {
	// MaxDelay is the longest wait between reconnects, seconds. Default 300.
	MaxDelay int `toml:"max_delay"`
	// BaseDelay is the first wait, seconds. Default 3.
	BaseDelay int `toml:"base_delay"`
	// Factor multiplies the wait after each failure. Default 1.8.
	Factor float64 `toml:"factor"`
	// Jitter randomises each wait by this fraction. Default 0.3.
	Jitter float64 `toml:"jitter"`
}

// OnlineConfig is the [online] section.
type OnlineConfig struct {
	// Refresh is how often logic re-reads every comet's report from Redis
	// to compute the cluster totals (room counts, connections) it serves.
	// Online figures lag comets by up to comet's report_interval plus
	// Refresh. Default "5s".
	Refresh conf.Duration `toml:"refresh"`
}

// Default returns the built-in configuration.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		Host: host,
		HTTP: httpapi.DefaultConfig(),
		RPC:  RPCConfig{Bind: ":3119", Weight: 10},
		Auth: DefaultAuth(),
		Node: NodeConfig{
			DefaultDomain: "127.0.0.1",
			TCPPort:       3101,
			WSPort:        3102,
			WSSPort:       3103,
			Heartbeat:     conf.Duration(4 * time.Minute),
			HeartbeatMax:  2,
			MaxNodes:      5,
		},
		Backoff:         BackoffConfig{MaxDelay: 300, BaseDelay: 3, Factor: 1.8, Jitter: 0.3},
		Online:          OnlineConfig{Refresh: conf.Duration(5 * time.Second)},
		Redis:           dao.DefaultRedisConfig(),
		Kafka:           dao.DefaultKafkaConfig(),
		Stream:          DefaultStream(),
		Receipts:        receipts.DefaultConfig(),
		Admin:           adminDefault(),
		Discovery:       discovery.DefaultConfig(),
		ShutdownTimeout: conf.Duration(10 * time.Second),
	}
}

func adminDefault() admin.Config {
	c := admin.DefaultConfig()
	c.Addr = "127.0.0.1:3112"
	return c
}

// Load reads path over the defaults and validates the result.
func Load(path string) (Config, error) { return conf.LoadValid(path, Default()) }

// Validate reports every problem of c, each with its key path.
func (c Config) Validate() error {
	var p conf.Problems
	p.Check(c.Host != "", "host", "must not be empty (no OS hostname either)")
	c.HTTP.Validate(p.Sub("http"))
	r := p.Sub("rpc")
	r.HostPort("bind", c.RPC.Bind)
	if c.RPC.Advertise != "" {
		r.HostPort("advertise", c.RPC.Advertise)
	}
	r.Check(c.RPC.Weight > 0, "weight", "must be > 0, got %d", c.RPC.Weight)
	c.RPC.Config.Validate(r)
	c.Auth.Validate(p.Sub("auth"))
	c.Stream.Validate(p.Sub("stream"))
	c.Receipts.Validate(p.Sub("receipts"))

	n := p.Sub("node")
	n.Check(c.Node.DefaultDomain != "", "default_domain", "must not be empty")
	for _, port := range []struct {
		key string
		v   int
	}{{"tcp_port", c.Node.TCPPort}, {"ws_port", c.Node.WSPort}, {"wss_port", c.Node.WSSPort}} {
		n.Check(port.v >= 0 && port.v <= 65535, port.key, "must be 0..65535, got %d", port.v)
	}
	n.Check(c.Node.Heartbeat.D() >= time.Second && c.Node.Heartbeat.D()%time.Second == 0, "heartbeat",
		"must be whole seconds >= 1s, got %v", c.Node.Heartbeat)
	n.Check(c.Node.HeartbeatMax >= 1 && c.Node.HeartbeatMax <= 100, "heartbeat_max", "must be 1..100, got %d", c.Node.HeartbeatMax)
	n.Check(c.Node.Heartbeat.D() <= time.Hour, "heartbeat", "must be <= 1h, got %v", c.Node.Heartbeat)
	n.Check(c.Node.MaxNodes >= 1 && c.Node.MaxNodes <= 100, "max_nodes", "must be 1..100, got %d", c.Node.MaxNodes)

	b := p.Sub("backoff")
	b.Check(c.Backoff.BaseDelay >= 0, "base_delay", "must be >= 0, got %d", c.Backoff.BaseDelay)
	b.Check(c.Backoff.MaxDelay >= c.Backoff.BaseDelay, "max_delay", "must be >= base_delay (%d), got %d", c.Backoff.BaseDelay, c.Backoff.MaxDelay)
	b.Check(c.Backoff.MaxDelay <= math.MaxInt32, "max_delay", "must fit in int32, got %d", c.Backoff.MaxDelay)
	b.Check(c.Backoff.Factor >= 1 && c.Backoff.Factor <= 100, "factor", "must be 1..100, got %v", c.Backoff.Factor)
	b.Check(c.Backoff.Jitter >= 0 && c.Backoff.Jitter <= 1, "jitter", "must be 0..1, got %v", c.Backoff.Jitter)

	p.Check(c.Online.Refresh.D() >= 100*time.Millisecond, "online.refresh", "must be >= 100ms, got %v", c.Online.Refresh)
	c.Redis.Validate(p.Sub("redis"))
	c.Kafka.Validate(p.Sub("kafka"))
	p.Check(c.HTTP.WriteTimeout.D() > c.Kafka.Timeout.D(), "http.write_timeout",
		"must exceed kafka.timeout (%v): a push answers only after Kafka acknowledged it; got %v", c.Kafka.Timeout, c.HTTP.WriteTimeout)
	c.Admin.Validate(p.Sub("admin"))
	if len(c.Discovery.Nodes) > 0 {
		c.Discovery.Validate(p.Sub("discovery"))
	}
	p.Check(c.ShutdownTimeout > 0, "shutdown_timeout", "must be > 0, got %v", c.ShutdownTimeout)
	return p.Err()
}
