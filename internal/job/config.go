package job

import (
	"os"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/job/cometpool"
	"github.com/goim/goim/internal/kafkasec"
	"github.com/goim/goim/internal/rpcauth"
)

// Config is job's configuration (configs/job.toml). Every field says its
// unit and default; Default returns the defaults.
type Config struct {
	// Host names this job instance in discovery. Default: the OS hostname.
	Host string `toml:"host"`
	// Kafka is the push topic and the consumer group.
	Kafka KafkaConfig `toml:"kafka"`
	// Room is the batching of room pushes.
	Room RoomConfig `toml:"room"`
	// Comet is the client pool of comets.
	Comet cometpool.Config `toml:"comet"`
	// Comets lists comets by hand, server id -> gRPC "host:port", for a
	// cluster without discovery. Used only when discovery.nodes is empty.
	// Default none.
	Comets map[string]string `toml:"comets"`
	// CometZone, when set, keeps only the comets of this discovery zone.
	// Default "": every zone (a push for a comet in another zone would
	// otherwise be lost).
	CometZone string `toml:"comet_zone"`
	// RPC is the secret job sends on every call to a comet, and to logic.
	RPC rpcauth.Config `toml:"rpc"`
	// Logic is job's link to logic, over which it reports the deliveries it
	// gave up on while their targets have the push in a stream, so that
	// their receipts say "deferred".
	Logic LogicConfig `toml:"logic"`
	// Admin is the metrics, pprof and health listener.
	Admin admin.Config `toml:"admin"`
	// Discovery is bilibili/discovery: job follows goim.comet there and
	// registers as goim.job. With no nodes, comets come from Comets.
	Discovery discovery.Config `toml:"discovery"`
	// ShutdownTimeout bounds a graceful shutdown: flushing room batches,
	// in-flight comet calls, the final commit. Default "10s".
	ShutdownTimeout conf.Duration `toml:"shutdown_timeout"`
}

// KafkaConfig is the [kafka] section.
type KafkaConfig struct {
	// Brokers are the bootstrap brokers, "host:port".
	// Default ["127.0.0.1:9092"].
	Brokers []string `toml:"brokers"`
	// Topic is logic's push topic. Default "goim-push-topic".
	Topic string `toml:"topic"`
	// Group is the consumer group; job processes of one group share the
	// topic's partitions. Default "goim-push-group-job".
	Group string `toml:"group"`
	// Version is the Kafka protocol version, at most the oldest broker's;
	// >= "0.10.1.0" (message timestamps, for max_age). Default "2.1.0".
	Version string `toml:"version"`
	// InitialOffset is where a group with no committed offset starts:
	// "oldest" (every push still in the topic, those older than max_age
	// counted as expired and skipped) or "newest" (only pushes published
	// after the group first joined; goim v2's choice, which silently drops
	// what was published before the first job started). Default "oldest".
	InitialOffset string `toml:"initial_offset"`
	// MaxAge skips pushes older than this (by their Kafka timestamp)
	// instead of delivering them late: counted in goim_job_expired_total.
	// It bounds what a job outage replays: pushes are live notifications.
	// "0s" delivers everything. Default "5m".
	MaxAge conf.Duration `toml:"max_age"`
	// SessionTimeout is the group session timeout: a job silent for
	// longer loses its partitions to the others. Default "10s".
	SessionTimeout conf.Duration `toml:"session_timeout"`
	// RebalanceTimeout is how long a rebalance waits for members to hand
	// back their partitions (finish their in-flight pushes and commit).
	// Default "30s".
	RebalanceTimeout conf.Duration `toml:"rebalance_timeout"`
	// CommitInterval is how often finished offsets are committed. A job
	// killed without a graceful stop redelivers at most the pushes of
	// about this long plus those in flight. Default "1s".
	CommitInterval conf.Duration `toml:"commit_interval"`
	// MaxInflight bounds the pushes of one partition dispatched but not
	// finished (about 40 bytes each); at the bound job stops reading that
	// partition until the oldest finishes. A push finishes within
	// comet.retry_for, so keep it above the partition's push rate times
	// retry_for, or a hung comet slows the partition's other pushes.
	// Default 100000.
	MaxInflight int `toml:"max_inflight"`
	// The keys tls, tls_ca_file, tls_cert_file, tls_key_file,
	// tls_server_name, sasl_mechanism, sasl_user and sasl_password_file:
	// TLS and SASL to the brokers (managed Kafka services), as logic's
	// [kafka] has them. Default: neither.
	kafkasec.Config
}

// RoomConfig is the [room] section. A room's pushes are collected in one
// open batch at a time. The batch is sent at once when the room is idle:
// no batch of it is in flight and its previous batch left linger ago or
// more. Otherwise it is sent when the room becomes idle, when it reaches
// max_frames or max_bytes, or at the latest after window (or at the end
// of linger, if that is later), whichever comes first. So a quiet room
// gets each push at once, and a busy room gets at most one batch per
// linger, sized by its rate: its members each get one write per batch
// instead of one per push.
type RoomConfig struct {
	// Window is the longest a push waits in a batch while the room's
	// previous batch is in flight. Default "5ms".
	Window conf.Duration `toml:"window"`
	// Linger is the least time between two batches of one room, 0..1s:
	// a push to a room that had a batch less than linger ago waits for
	// the rest of it, so a busy room's comet writes each member once per
	// linger at most. It adds up to linger to the latency of pushes to
	// rooms busier than one push per linger, and nothing to quieter
	// rooms. 0 sends as soon as the previous batch is no longer in
	// flight. Default "100ms".
	Linger conf.Duration `toml:"linger"`
	// MaxFrames is the most pushes in one batch. Default 64.
	MaxFrames int `toml:"max_frames"`
	// MaxBytes is the most bytes of frames in one batch (a single larger
	// push is sent alone). Default 65536.
	MaxBytes int `toml:"max_bytes"`
}

// LogicConfig is the [logic] section.
type LogicConfig struct {
	// Enabled turns the reports of deferred deliveries to logic on; off,
	// such a push's receipts stay "pending" (job still counts it in
	// goim_job_deferred_total). Default true.
	Enabled bool `toml:"enabled"`
	// Addrs lists logic gRPC addresses (host:port), balanced round robin.
	// Empty: logic instances come from discovery (app goim.logic), as the
	// comets find them. Default ["127.0.0.1:3119"].
	Addrs []string `toml:"addrs"`
	// Timeout bounds every call to logic. Default "3s".
	Timeout conf.Duration `toml:"timeout"`
}

// Initial offsets.
const (
	OffsetOldest = "oldest"
	OffsetNewest = "newest"
)

// Default returns the built-in configuration.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		Host: host,
		Kafka: KafkaConfig{
			Brokers:          []string{"127.0.0.1:9092"},
			Topic:            "goim-push-topic",
			Group:            "goim-push-group-job",
			Version:          "2.1.0",
			InitialOffset:    OffsetOldest,
			MaxAge:           conf.Duration(5 * time.Minute),
			SessionTimeout:   conf.Duration(10 * time.Second),
			RebalanceTimeout: conf.Duration(30 * time.Second),
			CommitInterval:   conf.Duration(time.Second),
			MaxInflight:      100000,
		},
		Room:            RoomConfig{Window: conf.Duration(5 * time.Millisecond), Linger: conf.Duration(100 * time.Millisecond), MaxFrames: 64, MaxBytes: 64 << 10},
		Comet:           cometpool.DefaultConfig(),
		Logic:           LogicConfig{Enabled: true, Addrs: []string{"127.0.0.1:3119"}, Timeout: conf.Duration(3 * time.Second)},
		Admin:           adminDefault(),
		Discovery:       discovery.DefaultConfig(),
		ShutdownTimeout: conf.Duration(10 * time.Second),
	}
}

func adminDefault() admin.Config {
	c := admin.DefaultConfig()
	c.Addr = "127.0.0.1:3114"
	return c
}

// Load reads path over the defaults and validates the result.
func Load(path string) (Config, error) { return conf.LoadValid(path, Default()) }

// Validate reports every problem of c, each with its key path.
func (c Config) Validate() error {
	var p conf.Problems
	p.Check(c.Host != "", "host", "must not be empty (no OS hostname either)")
	c.Kafka.Validate(p.Sub("kafka"))

	r := p.Sub("room")
	r.Check(c.Room.Window > 0, "window", "must be > 0, got %v", c.Room.Window)
	r.Check(c.Room.Linger >= 0 && c.Room.Linger <= conf.Duration(time.Second), "linger", "must be 0..1s, got %v", c.Room.Linger)
	r.Check(c.Room.MaxFrames > 0, "max_frames", "must be > 0, got %d", c.Room.MaxFrames)
	r.Check(c.Room.MaxBytes > 0 && c.Room.MaxBytes <= 8<<20, "max_bytes", "must be 1..8388608, got %d", c.Room.MaxBytes)

	c.Comet.Validate(p.Sub("comet"))
	for host, a := range c.Comets {
		p.Check(host != "", "comets."+host, "the server id must not be empty")
		p.HostPort("comets."+host, a)
	}
	if len(c.Discovery.Nodes) > 0 {
		c.Discovery.Validate(p.Sub("discovery"))
	} else {
		p.Check(len(c.Comets) > 0, "comets", "list the comets (server id = \"host:port\") when discovery.nodes is empty")
	}
	c.RPC.Validate(p.Sub("rpc"))
	if c.Logic.Enabled {
		l := p.Sub("logic")
		l.Check(len(c.Logic.Addrs) > 0 || len(c.Discovery.Nodes) > 0, "addrs",
			"must list at least one logic address when discovery.nodes is empty (or set enabled = false)")
		l.HostPorts("addrs", c.Logic.Addrs)
		l.Check(c.Logic.Timeout > 0, "timeout", "must be > 0, got %v", c.Logic.Timeout)
	}
	c.Admin.Validate(p.Sub("admin"))
	p.Check(c.ShutdownTimeout > 0, "shutdown_timeout", "must be > 0, got %v", c.ShutdownTimeout)
	return p.Err()
}

// Validate records every problem of the [kafka] section in k, with key
// paths relative to it. It reads the files the section names (CA,
// certificate, key, SASL password file).
func (c KafkaConfig) Validate(k *conf.Problems) {
	k.Brokers("brokers", c.Brokers)
	k.Check(c.Topic != "", "topic", "must not be empty")
	k.Check(c.Group != "", "group", "must not be empty")
	if v, err := sarama.ParseKafkaVersion(c.Version); err != nil {
		k.Add("version", "%q is not a Kafka version: %v", c.Version, err)
	} else {
		k.Check(v.IsAtLeast(sarama.V0_10_1_0), "version", "must be >= 0.10.1.0 (message timestamps), got %q", c.Version)
	}
	k.Check(slices.Contains([]string{OffsetOldest, OffsetNewest}, c.InitialOffset), "initial_offset",
		"must be %q or %q, got %q", OffsetOldest, OffsetNewest, c.InitialOffset)
	k.Check(c.MaxAge >= 0, "max_age", "must be >= 0 (0 = no limit), got %v", c.MaxAge)
	k.Check(c.SessionTimeout.D() >= time.Second, "session_timeout", "must be >= 1s, got %v", c.SessionTimeout)
	k.Check(c.RebalanceTimeout.D() >= time.Second, "rebalance_timeout", "must be >= 1s, got %v", c.RebalanceTimeout)
	k.Check(c.CommitInterval.D() >= 10*time.Millisecond, "commit_interval", "must be >= 10ms, got %v", c.CommitInterval)
	k.Check(c.MaxInflight > 0, "max_inflight", "must be > 0, got %d", c.MaxInflight)
	c.Config.Validate(k)
}
