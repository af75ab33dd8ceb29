package logic

import (
	"testing"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
)

// TestConfigFile checks configs/logic.toml: it loads, validates, equals the
// built-in defaults except for the token key and the push API token file
// it names (production configs keep signed tokens and push API
// credentials on) and its discovery node (the shipped files form a
// cluster), and lists every option the code has.
func TestConfigFile(t *testing.T) {
	const path = "../../configs/logic.toml"
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Auth.Insecure || got.RPC.Insecure {
		t.Fatal("the production config must not set auth.insecure or rpc.insecure")
	}
	want := Default()
	want.Auth.HMACKeyFile = "/etc/goim/jwt-hmac.key"
	want.HTTP.TokensFile = "/etc/goim/http-tokens"
	want.RPC.SecretFile = "/etc/goim/rpc.secret"
	want.Discovery.Nodes = []string{"127.0.0.1:7171"}
	got.Host = want.Host // machine-specific default, documented commented out
	testkit.ConfigFile(t, path, &got, &want, "host")
}

func TestConfigValidate(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	cases := []struct {
		name  string
		edit  func(*Config)
		paths []string // every problem expected, by key path
	}{
		{name: "insecure defaults", edit: func(c *Config) { c.Auth.Insecure = true }},
		{name: "no token key", edit: func(*Config) {}, paths: []string{"auth"}},
		{name: "no rpc secret", edit: func(c *Config) {
			c.Auth.Insecure = true
			c.RPC.Secrets = nil
		}, paths: []string{"rpc.secret_file"}},
		{name: "rpc secret file", edit: func(c *Config) {
			c.Auth.Insecure = true
			c.RPC.Secrets = nil
			c.RPC.SecretFile = "/etc/goim/rpc.secret"
		}},
		{name: "rpc insecure", edit: func(c *Config) {
			c.Auth.Insecure = true
			c.RPC.Secrets = nil
			c.RPC.Insecure = true
		}},
		{name: "addresses", edit: func(c *Config) {
			c.Auth.Insecure = true
			c.RPC.Bind = "x"
			c.RPC.Advertise = "y"
			c.HTTP.Bind = "z"
		}, paths: []string{"http.bind", "rpc.bind", "rpc.advertise"}},
		{name: "node and backoff", edit: func(c *Config) {
			c.Auth.Insecure = true
			c.Node.DefaultDomain = ""
			c.Node.TCPPort = 70000
			c.Node.Heartbeat = conf.Duration(1500_000_000)
			c.Node.HeartbeatMax = 0
			c.Node.MaxNodes = 0
			c.Backoff.MaxDelay = 1
			c.Backoff.Factor = 0.5
			c.Backoff.Jitter = 2
		}, paths: []string{"node.default_domain", "node.tcp_port", "node.heartbeat", "node.heartbeat_max", "node.max_nodes",
			"backoff.max_delay", "backoff.factor", "backoff.jitter"}},
		{name: "sections", edit: func(c *Config) {
			c.Auth.Insecure = true
			c.Online.Refresh = 0
			c.Redis.Addr = "nope"
			c.Kafka.Brokers = nil
			c.Admin.Addr = "x"
			c.Discovery.Nodes = []string{"http://d:7171"}
			c.ShutdownTimeout = 0
		}, paths: []string{"online.refresh", "redis.addr", "kafka.brokers", "admin.addr", "discovery.nodes[0]", "shutdown_timeout"}},
		{name: "push answers after kafka", edit: func(c *Config) {
			c.Auth.Insecure = true
			c.Kafka.Timeout = c.HTTP.WriteTimeout
		}, paths: []string{"http.write_timeout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Host = "logic-test"
			c.RPC.Secrets = []string{testRPCSecret}
			tc.edit(&c)
			testkit.WantProblems(t, c.Validate(), tc.paths)
		})
	}
}
