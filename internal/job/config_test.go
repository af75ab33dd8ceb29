package job

import (
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
)

// TestConfigFile checks configs/job.toml: it loads, validates, equals the
// built-in defaults except for the discovery node it names (and logic
// found there), and lists every option the code has.
func TestConfigFile(t *testing.T) {
	const path = "../../configs/job.toml"
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Discovery.Nodes = []string{"127.0.0.1:7171"}
	want.RPC.SecretFile = "/etc/goim/rpc.secret"
	want.Logic.Addrs = []string{}
	got.Host = want.Host // machine-specific default, documented commented out
	testkit.ConfigFile(t, path, &got, &want, "host")
}

func TestConfigValidate(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	static := func(c *Config) { c.Comets = map[string]string{"comet-1": "127.0.0.1:3109"} }
	cases := []struct {
		name  string
		edit  func(*Config)
		paths []string // every problem expected, by key path
	}{
		{name: "static comets", edit: static},
		{name: "no rpc secret", edit: func(c *Config) {
			static(c)
			c.RPC.Secrets = nil
		}, paths: []string{"rpc.secret_file"}},
		{name: "rpc insecure", edit: func(c *Config) {
			static(c)
			c.RPC.Secrets = nil
			c.RPC.Insecure = true
		}},
		{name: "no comets and no discovery", edit: func(*Config) {}, paths: []string{"comets"}},
		{name: "bad static comet", edit: func(c *Config) { c.Comets = map[string]string{"c": "nope"} }, paths: []string{"comets.c"}},
		{name: "kafka", edit: func(c *Config) {
			static(c)
			c.Kafka.Brokers = []string{"x"}
			c.Kafka.Topic = ""
			c.Kafka.Group = ""
			c.Kafka.Version = "0.9.0.0"
			c.Kafka.InitialOffset = "latest"
			c.Kafka.MaxAge = -1
			c.Kafka.SessionTimeout = 0
			c.Kafka.RebalanceTimeout = 0
			c.Kafka.CommitInterval = 0
			c.Kafka.MaxInflight = 0
		}, paths: []string{"kafka.brokers[0]", "kafka.topic", "kafka.group", "kafka.version", "kafka.initial_offset", "kafka.max_age",
			"kafka.session_timeout", "kafka.rebalance_timeout", "kafka.commit_interval", "kafka.max_inflight"}},
		{name: "room and comet", edit: func(c *Config) {
			static(c)
			c.Room.Window = 0
			c.Room.Linger = conf.Duration(time.Second + time.Millisecond)
			c.Room.MaxFrames = 0
			c.Room.MaxBytes = 0
			c.Comet.Shards = 0
		}, paths: []string{"room.window", "room.linger", "room.max_frames", "room.max_bytes", "comet.shards"}},
		{name: "negative linger", edit: func(c *Config) {
			static(c)
			c.Room.Linger = -1
		}, paths: []string{"room.linger"}},
		{name: "linger bounds", edit: func(c *Config) {
			static(c)
			c.Room.Linger = conf.Duration(time.Second)
		}},
		{name: "no linger", edit: func(c *Config) {
			static(c)
			c.Room.Linger = 0
		}},
		{name: "no logic and no discovery", edit: func(c *Config) {
			static(c)
			c.Logic.Addrs = nil
		}, paths: []string{"logic.addrs"}},
		{name: "logic off", edit: func(c *Config) {
			static(c)
			c.Logic = LogicConfig{}
		}},
		{name: "logic from discovery", edit: func(c *Config) {
			c.Discovery.Nodes = []string{"127.0.0.1:7171"}
			c.Logic.Addrs = nil
		}},
		{name: "bad logic", edit: func(c *Config) {
			static(c)
			c.Logic.Addrs = []string{"nope"}
			c.Logic.Timeout = 0
		}, paths: []string{"logic.addrs[0]", "logic.timeout"}},
		{name: "discovery checked when used", edit: func(c *Config) {
			c.Discovery.Nodes = []string{"http://d:7171"}
		}, paths: []string{"discovery.nodes[0]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Host = "job-test"
			c.RPC.Secrets = []string{strings.Repeat("s", 32)}
			tc.edit(&c)
			testkit.WantProblems(t, c.Validate(), tc.paths)
		})
	}
}
