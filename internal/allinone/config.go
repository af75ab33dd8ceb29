package allinone

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/job"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/rpcauth"
)

// Config is the all-in-one's configuration (configs/goim.toml): the three
// parts it can embed, then a full section per service. Every field says
// its unit and default; Default returns the defaults.
//
// The all-in-one wires the services together and overwrites what the
// sections say about it (see Wire): the Kafka brokers, the Redis address
// and the discovery nodes and env of every service, job's topic (logic's),
// comet's logic address (logic's rpc bind) and the comet ports logic
// hands to clients (comet's first TCP and WebSocket binds). When no
// internal gRPC secret is configured, it gives the three services one it
// generates.
type Config struct {
	// Kafka is the push topic's broker: a real Kafka, or the embedded one.
	Kafka KafkaConfig `toml:"kafka"`
	// Redis holds logic's sessions and online reports: a real Redis, or
	// the embedded one.
	Redis RedisConfig `toml:"redis"`
	// Discovery is where comets register and job and logic find them: real
	// bilibili/discovery nodes, or the embedded server.
	Discovery DiscoveryConfig `toml:"discovery"`
	// Logic is logic's configuration, as in configs/logic.toml.
	Logic logic.Config `toml:"logic"`
	// Job is job's configuration, as in configs/job.toml.
	Job job.Config `toml:"job"`
	// Comet is comet's configuration, as in configs/comet.toml.
	Comet comet.Config `toml:"comet"`
	// ReadyTimeout is how long start-up waits for every service to report
	// ready (job has joined the consumer group and sees the comet) before
	// it prints the addresses anyway, with a warning. Default "30s".
	ReadyTimeout conf.Duration `toml:"ready_timeout"`
	// ShutdownTimeout bounds each step of the shutdown (logic, job, comet).
	// Default "10s".
	ShutdownTimeout conf.Duration `toml:"shutdown_timeout"`
}

// KafkaConfig is the [kafka] section.
type KafkaConfig struct {
	// Brokers of a real Kafka, "host:port". Empty starts the embedded
	// broker (kfake, the Kafka protocol in process, nothing on disk).
	// Default [].
	Brokers []string `toml:"brokers"`
	// Port of the embedded broker, which listens on 127.0.0.1. Default
	// 9092.
	Port int `toml:"port"`
	// Partitions of the push topic the embedded broker creates. Default 4.
	Partitions int `toml:"partitions"`
}

// RedisConfig is the [redis] section.
type RedisConfig struct {
	// Addr of a real Redis, "host:port". Empty starts the embedded one
	// (miniredis, the Redis protocol in process). Default "".
	Addr string `toml:"addr"`
	// Listen is the embedded Redis's address. Default "127.0.0.1:6380"
	// (not 6379, where a real Redis often runs).
	Listen string `toml:"listen"`
}

// DiscoveryConfig is the [discovery] section.
type DiscoveryConfig struct {
	// Nodes of real bilibili/discovery servers, "host:port". Empty starts
	// the embedded server (bilibili/discovery's own, in process). Default [].
	Nodes []string `toml:"nodes"`
	// Listen is the embedded server's address, with a fixed port (the
	// server registers its own address). Default "127.0.0.1:7171".
	Listen string `toml:"listen"`
	// Env is the discovery env of the whole cluster: the embedded server
	// registers itself there (where goim v2's naming client looks for
	// discovery nodes, so v2 processes of the same env can share it), and
	// logic, job and comet register and look there (Wire overwrites their
	// [discovery] env). Default "dev".
	Env string `toml:"env"`
}

// Default returns the built-in configuration: every service's defaults
// with every listener on loopback.
func Default() Config {
	lc := logic.Default()
	lc.HTTP.Bind = "127.0.0.1:3111"
	lc.RPC.Bind = "127.0.0.1:3119"
	cc := comet.Default()
	cc.TCP.Bind = []string{"127.0.0.1:3101"}
	cc.WebSocket.Bind = []string{"127.0.0.1:3102"}
	cc.RPC.Bind = "127.0.0.1:3109"
	return Config{
		Kafka:           KafkaConfig{Port: 9092, Partitions: 4},
		Redis:           RedisConfig{Listen: "127.0.0.1:6380"},
		Discovery:       DiscoveryConfig{Listen: "127.0.0.1:7171", Env: "dev"},
		Logic:           lc,
		Job:             job.Default(),
		Comet:           cc,
		ReadyTimeout:    conf.Duration(30 * time.Second),
		ShutdownTimeout: conf.Duration(10 * time.Second),
	}
}

// Load reads the file at path over the defaults, wires the services
// together (Wire) and validates the result.
func Load(path string) (Config, error) {
	c, err := Read(path)
	if err != nil {
		return Config{}, err
	}
	c.Wire()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Read reads the file at path over the defaults, strictly (unknown keys
// are errors), without wiring or validating: for callers that change the
// result before Wire and Validate.
func Read(path string) (Config, error) {
	c := Default()
	if err := conf.Load(path, &c); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Wire points the services at each other and at the Kafka, Redis and
// discovery the all-in-one uses (the embedded addresses when no real one
// is given). It overwrites the sections' own values for these keys and is
// idempotent; call it again after changing Kafka, Redis or Discovery.
//
// When no internal gRPC secret is configured (GOIM_RPC_SECRET unset and
// no secret_file nor secret in code in [logic.rpc], [comet.rpc] or
// [job.rpc]), Wire generates a random one and gives it to all three
// (rpcauth.Config.Secrets): their gRPC is authenticated like a
// production cluster's, with a secret that lives only in this process.
// Otherwise every section keeps its own (set it in all three).
func (c *Config) Wire() {
	c.wireSecret()

	brokers := c.Kafka.Brokers
	if len(brokers) == 0 {
		brokers = []string{"127.0.0.1:" + strconv.Itoa(c.Kafka.Port)}
	}
	c.Logic.Kafka.Brokers = brokers
	c.Job.Kafka.Brokers = brokers
	c.Job.Kafka.Topic = c.Logic.Kafka.Topic

	c.Logic.Redis.Addr = c.Redis.Addr
	if c.Logic.Redis.Addr == "" {
		c.Logic.Redis.Addr = c.Redis.Listen
	}

	nodes := c.Discovery.Nodes
	if len(nodes) == 0 {
		nodes = []string{c.Discovery.Listen}
	}
	c.Logic.Discovery.Nodes = nodes
	c.Job.Discovery.Nodes = nodes
	c.Comet.Discovery.Nodes = nodes
	c.Logic.Discovery.Env = c.Discovery.Env
	c.Job.Discovery.Env = c.Discovery.Env
	c.Comet.Discovery.Env = c.Discovery.Env
	c.Job.Comets = nil // comets come from discovery

	c.Comet.Logic.Addrs = []string{dialable(c.Logic.RPC.Bind)}
	c.Job.Logic.Addrs = []string{dialable(c.Logic.RPC.Bind)} // job's reports of deferred deliveries
	if p := firstPort(c.Comet.TCP.Bind); p > 0 {
		c.Logic.Node.TCPPort = p
	}
	if p := firstPort(c.Comet.WebSocket.Bind); p > 0 {
		c.Logic.Node.WSPort = p
	}
	if p := firstPort(c.Comet.WebSocket.TLSBind); p > 0 {
		c.Logic.Node.WSSPort = p
	}
}

// Validate reports every problem of c: its own keys, then each service's
// (prefixed with the section).
func (c Config) Validate() error {
	var p conf.Problems
	k := p.Sub("kafka")
	k.HostPorts("brokers", c.Kafka.Brokers) // none: the embedded broker
	if len(c.Kafka.Brokers) == 0 {
		k.Check(c.Kafka.Port > 0 && c.Kafka.Port < 65536, "port", "must be 1..65535 for the embedded broker, got %d", c.Kafka.Port)
		k.Check(c.Kafka.Partitions > 0 && c.Kafka.Partitions <= 1024, "partitions", "must be 1..1024, got %d", c.Kafka.Partitions)
	}
	if c.Redis.Addr == "" {
		p.Sub("redis").Check(hasPort(c.Redis.Listen), "listen", "must be host:port for the embedded Redis, got %q", c.Redis.Listen)
		p.Sub("logic").Sub("redis").Check(!c.Logic.Redis.Cluster, "cluster",
			"the embedded Redis is a single Redis: set [redis] addr (or -redis) to a cluster node to use cluster mode")
	}
	p.Sub("discovery").Check(strings.TrimSpace(c.Discovery.Env) != "", "env", "must not be empty")
	if len(c.Discovery.Nodes) == 0 {
		p.Sub("discovery").Check(hasPort(c.Discovery.Listen), "listen",
			"must be host:port with a fixed port for the embedded discovery, got %q", c.Discovery.Listen)
	}
	// The services find each other through these, so they need fixed ports.
	p.Sub("logic").Sub("rpc").Check(hasPort(c.Logic.RPC.Bind), "bind",
		"must have a fixed port in the all-in-one (comet dials it), got %q", c.Logic.RPC.Bind)
	cm := p.Sub("comet")
	cm.Sub("tcp").Check(firstPort(c.Comet.TCP.Bind) > 0 || len(c.Comet.TCP.Bind) == 0, "bind",
		"the first address must have a fixed port in the all-in-one (logic hands it to clients), got %q", c.Comet.TCP.Bind)
	cm.Sub("websocket").Check(firstPort(c.Comet.WebSocket.Bind) > 0 || len(c.Comet.WebSocket.Bind) == 0, "bind",
		"the first address must have a fixed port in the all-in-one (logic hands it to clients), got %q", c.Comet.WebSocket.Bind)
	p.Check(c.ReadyTimeout > 0, "ready_timeout", "must be > 0, got %v", c.ReadyTimeout)
	p.Check(c.ShutdownTimeout > 0, "shutdown_timeout", "must be > 0, got %v", c.ShutdownTimeout)
	errs := []error{p.Err()}
	for _, s := range []struct {
		name string
		err  error
	}{{"logic", c.Logic.Validate()}, {"job", c.Job.Validate()}, {"comet", c.Comet.Validate()}} {
		if s.err != nil {
			errs = append(errs, fmt.Errorf("[%s] %w", s.name, s.err))
		}
	}
	return errors.Join(errs...)
}

// CheckFiles reads the credentials and opens and parses every key,
// certificate and secret file the three services' sections name
// (logic.CheckFiles, comet.CheckFiles, job.CheckFiles), for -check-config.
// With infraOnly none of the services runs, so nothing is checked.
// warnings are logic's (an open push API).
func (c Config) CheckFiles(infraOnly bool) (warnings []string, err error) {
	if infraOnly {
		return nil, nil
	}
	lw, lerr := logic.CheckFiles(c.Logic)
	for _, w := range lw {
		warnings = append(warnings, "[logic] "+w)
	}
	var errs []error
	for _, s := range []struct {
		name string
		err  error
	}{{"logic", lerr}, {"job", job.CheckFiles(c.Job)}, {"comet", comet.CheckFiles(c.Comet)}} {
		if s.err != nil {
			errs = append(errs, fmt.Errorf("[%s] %w", s.name, s.err))
		}
	}
	return warnings, errors.Join(errs...)
}

// wireSecret gives the services one generated rpc secret when none is
// configured (see Wire).
func (c *Config) wireSecret() {
	if strings.TrimSpace(os.Getenv(rpcauth.EnvSecret)) != "" {
		return
	}
	sections := []*rpcauth.Config{&c.Logic.RPC.Config, &c.Comet.RPC.Config, &c.Job.RPC}
	for _, r := range sections {
		if r.SecretFile != "" || len(r.Secrets) > 0 {
			return
		}
	}
	secret, err := rpcauth.Generate()
	if err != nil {
		return // Validate reports the missing secret
	}
	for _, r := range sections {
		r.Secrets = []string{secret}
	}
}

// hasPort reports whether addr is host:port with a non-zero port.
func hasPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return err == nil && n > 0 && n < 65536
}

// firstPort is the port of binds[0], or 0.
func firstPort(binds []string) int {
	if len(binds) == 0 {
		return 0
	}
	_, port, err := net.SplitHostPort(binds[0])
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}

// dialable turns a bind address into one to dial: an empty or unspecified
// host becomes 127.0.0.1.
func dialable(bind string) string {
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return bind
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
