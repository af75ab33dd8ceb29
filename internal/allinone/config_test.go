package allinone

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/rpcauth"
)

// TestWire checks that Wire points every service at the same Kafka, Redis
// and discovery (embedded or real), gives job logic's topic and comet
// logic's address, and tells logic the comet's ports.
func TestWire(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	c := Default()
	c.Logic.Kafka.Topic = "my-topic"
	c.Logic.RPC.Bind = ":4119"
	c.Comet.TCP.Bind = []string{"127.0.0.1:4101", "127.0.0.1:4201"}
	c.Comet.WebSocket.Bind = []string{"127.0.0.1:4102"}
	c.Comet.WebSocket.TLSBind = []string{"127.0.0.1:4103"}
	c.Job.Comets = map[string]string{"x": "127.0.0.1:1"}
	c.Wire()
	embedded := []string{"127.0.0.1:9092"}
	if !slices.Equal(c.Logic.Kafka.Brokers, embedded) || !slices.Equal(c.Job.Kafka.Brokers, embedded) {
		t.Errorf("brokers: logic %v, job %v, want %v", c.Logic.Kafka.Brokers, c.Job.Kafka.Brokers, embedded)
	}
	if c.Job.Kafka.Topic != "my-topic" {
		t.Errorf("job topic %q, want logic's", c.Job.Kafka.Topic)
	}
	if c.Logic.Redis.Addr != "127.0.0.1:6380" {
		t.Errorf("redis %q, want the embedded one's", c.Logic.Redis.Addr)
	}
	for name, nodes := range map[string][]string{"logic": c.Logic.Discovery.Nodes, "job": c.Job.Discovery.Nodes, "comet": c.Comet.Discovery.Nodes} {
		if !slices.Equal(nodes, []string{"127.0.0.1:7171"}) {
			t.Errorf("%s discovery nodes %v, want the embedded server", name, nodes)
		}
	}
	for name, env := range map[string]string{"logic": c.Logic.Discovery.Env, "job": c.Job.Discovery.Env, "comet": c.Comet.Discovery.Env} {
		if env != "dev" {
			t.Errorf("%s discovery env %q, want [discovery] env's default dev", name, env)
		}
	}
	if c.Job.Comets != nil {
		t.Errorf("job comets %v, want none (discovery)", c.Job.Comets)
	}
	if !slices.Equal(c.Comet.Logic.Addrs, []string{"127.0.0.1:4119"}) {
		t.Errorf("comet's logic %v, want logic's rpc bind made dialable", c.Comet.Logic.Addrs)
	}
	if !slices.Equal(c.Job.Logic.Addrs, []string{"127.0.0.1:4119"}) {
		t.Errorf("job's logic %v, want logic's rpc bind made dialable", c.Job.Logic.Addrs)
	}
	if n := c.Logic.Node; n.TCPPort != 4101 || n.WSPort != 4102 || n.WSSPort != 4103 {
		t.Errorf("logic node ports %d %d %d, want the comet's first binds", n.TCPPort, n.WSPort, n.WSSPort)
	}

	secret := c.Logic.RPC.Secrets
	if len(secret) != 1 || !slices.Equal(c.Comet.RPC.Secrets, secret) || !slices.Equal(c.Job.RPC.Secrets, secret) {
		t.Errorf("rpc secrets: logic %d, comet %d, job %d; want one generated secret shared by all three",
			len(c.Logic.RPC.Secrets), len(c.Comet.RPC.Secrets), len(c.Job.RPC.Secrets))
	}

	c.Kafka.Brokers = []string{"k1:9092", "k2:9092"}
	c.Redis.Addr = "r:6379"
	c.Discovery.Nodes = []string{"d:7171"}
	c.Discovery.Env = "v2-prod"
	c.Wire()
	if !slices.Equal(c.Job.Kafka.Brokers, c.Kafka.Brokers) || c.Logic.Redis.Addr != "r:6379" ||
		!slices.Equal(c.Comet.Discovery.Nodes, []string{"d:7171"}) || c.Job.Discovery.Env != "v2-prod" {
		t.Errorf("real parts not wired: %v %q %v", c.Job.Kafka.Brokers, c.Logic.Redis.Addr, c.Comet.Discovery.Nodes)
	}
	if !slices.Equal(c.Logic.RPC.Secrets, secret) || !slices.Equal(c.Job.RPC.Secrets, secret) {
		t.Error("a second Wire changed the generated rpc secret")
	}
}

// TestWireSecret: a generated rpc secret differs per Config (per
// process); a configured one, in a file or in the environment, is kept
// and nothing is generated.
func TestWireSecret(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	a, b := Default(), Default()
	a.Wire()
	b.Wire()
	if len(a.Logic.RPC.Secrets) != 1 || slices.Equal(a.Logic.RPC.Secrets, b.Logic.RPC.Secrets) {
		t.Fatalf("generated secrets %d, equal %v; want one, different each time",
			len(a.Logic.RPC.Secrets), slices.Equal(a.Logic.RPC.Secrets, b.Logic.RPC.Secrets))
	}
	c := Default()
	c.Comet.RPC.SecretFile = "/etc/goim/rpc.secret"
	c.Wire()
	if c.Logic.RPC.Secrets != nil || c.Comet.RPC.Secrets != nil || c.Job.RPC.Secrets != nil {
		t.Fatal("a secret was generated although [comet.rpc] names a secret file")
	}
	t.Setenv(rpcauth.EnvSecret, strings.Repeat("e", 32))
	c = Default()
	c.Wire()
	if c.Logic.RPC.Secrets != nil {
		t.Fatal("a secret was generated although GOIM_RPC_SECRET is set")
	}
}

// TestValidate checks that the all-in-one's own problems and each
// service's come back with their key paths.
func TestValidate(t *testing.T) {
	ok := Default()
	ok.Logic.Auth.Insecure = true
	ok.Wire()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults with insecure auth: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"embedded ports", func(c *Config) {
			c.Kafka.Port, c.Kafka.Partitions, c.Redis.Listen, c.Discovery.Listen = 0, 0, "nowhere", "127.0.0.1:0"
			c.Discovery.Env = " "
		}, []string{"kafka.port", "kafka.partitions", "redis.listen", "discovery.env", "discovery.listen"}},
		{"real parts skip the embedded checks", func(c *Config) {
			c.Kafka.Port, c.Redis.Listen, c.Discovery.Listen = 0, "", ""
			c.Kafka.Brokers, c.Redis.Addr, c.Discovery.Nodes = []string{"bad"}, "r:6379", []string{"d:7171"}
		}, []string{"kafka.brokers[0]"}},
		{"services find each other by fixed ports", func(c *Config) {
			c.Logic.RPC.Bind = "127.0.0.1:0"
			c.Comet.TCP.Bind = []string{"127.0.0.1:0"}
		}, []string{"logic.rpc.bind", "comet.tcp.bind"}},
		{"a service's own problem is prefixed", func(c *Config) {
			c.Logic.Auth.Insecure = false
			c.Job.Kafka.Group = ""
		}, []string{"[logic] ", "auth", "[job] ", "kafka.group"}},
		{"timeouts", func(c *Config) { c.ReadyTimeout, c.ShutdownTimeout = 0, -1 }, []string{"ready_timeout", "shutdown_timeout"}},
		{"the embedded Redis is no cluster", func(c *Config) { c.Logic.Redis.Cluster = true }, []string{"logic.redis.cluster"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			c.Wire()
			err := c.Validate()
			if err == nil {
				t.Fatalf("no error, want %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestLoad checks that Load wires and validates, and that unknown keys,
// also inside a service's section, are errors.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := Load(write("ok.toml", "[redis]\naddr = \"10.0.0.1:6379\"\n[logic.auth]\ninsecure = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Logic.Redis.Addr != "10.0.0.1:6379" {
		t.Errorf("not wired: logic redis %q", c.Logic.Redis.Addr)
	}
	if _, err := Load(write("unknown.toml", "[logic.auth]\ninsecure = true\nbogus = 1\n")); !errors.Is(err, conf.ErrUnknownKey) {
		t.Errorf("unknown key: %v, want ErrUnknownKey", err)
	}
	if _, err := Load(write("invalid.toml", "[kafka]\npartitions = 0\n[logic.auth]\ninsecure = true\n")); err == nil ||
		!strings.Contains(err.Error(), "kafka.partitions") {
		t.Errorf("invalid: %v, want kafka.partitions named", err)
	}
}

// TestEnvSections: the all-in-one reads its own keys' variables
// (GOIM_REDIS_ADDR) and its service sections' under the section's name
// (GOIM_LOGIC_HTTP_BIND, GOIM_COMET_TCP_BIND, GOIM_JOB_KAFKA_GROUP); Wire
// then points the services at the Redis the variable named.
func TestEnvSections(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	t.Setenv("GOIM_REDIS_ADDR", "10.0.0.6:6379")
	t.Setenv("GOIM_LOGIC_HTTP_BIND", "127.0.0.1:4111")
	t.Setenv("GOIM_COMET_TCP_BIND", "127.0.0.1:4101,127.0.0.1:4201")
	t.Setenv("GOIM_JOB_KAFKA_GROUP", "env-group")
	t.Setenv("GOIM_HTTP_BIND", "127.0.0.1:5111") // a standalone logic's variable: no key of the all-in-one
	c, err := Load("../../configs/goim.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.Addr != "10.0.0.6:6379" || c.Logic.Redis.Addr != "10.0.0.6:6379" || c.Logic.HTTP.Bind != "127.0.0.1:4111" ||
		!slices.Equal(c.Comet.TCP.Bind, []string{"127.0.0.1:4101", "127.0.0.1:4201"}) || c.Job.Kafka.Group != "env-group" ||
		c.Logic.Node.TCPPort != 4101 {
		t.Errorf("redis %q (logic %q), logic http %q, comet tcp %q, job group %q, logic node.tcp_port %d",
			c.Redis.Addr, c.Logic.Redis.Addr, c.Logic.HTTP.Bind, c.Comet.TCP.Bind, c.Job.Kafka.Group, c.Logic.Node.TCPPort)
	}
	t.Setenv("GOIM_COMET_PROTOCOL_SESSION_RENEW", "often")
	if _, err := Load("../../configs/goim.toml"); !errors.Is(err, conf.ErrEnv) || !strings.Contains(err.Error(), "GOIM_COMET_PROTOCOL_SESSION_RENEW (key comet.protocol.session_renew)") {
		t.Errorf("bad variable: %v, want an error naming it and its key", err)
	}
}
