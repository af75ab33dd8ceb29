package comet

import (
	"testing"

	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
)

// TestConfigFile checks configs/comet.toml: it loads, validates, equals the
// built-in defaults, and lists every option the code has.
func TestConfigFile(t *testing.T) {
	const path = "../../configs/comet.toml"
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.RPC.SecretFile = "/etc/goim/rpc.secret"
	want.Discovery.Nodes = []string{"127.0.0.1:7171"}
	want.Logic.Addrs = nil
	testkit.ConfigFile(t, path, &got, &want, "host")
}

func TestConfigValidate(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	cases := []struct {
		name  string
		edit  func(*Config)
		paths []string // every problem expected, by key path
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "no rpc secret", edit: func(c *Config) { c.RPC.Secrets = nil }, paths: []string{"rpc.secret_file"}},
		{name: "rpc insecure", edit: func(c *Config) {
			c.RPC.Secrets = nil
			c.RPC.Insecure = true
		}},
		{name: "bad addresses", edit: func(c *Config) {
			c.TCP.Bind = []string{":3101", "nohost"}
			c.RPC.Bind = "x"
		}, paths: []string{"tcp.bind[1]", "rpc.bind"}},
		{name: "no listener", edit: func(c *Config) {
			c.TCP.Bind, c.WebSocket.Bind = nil, nil
		}, paths: []string{"no client listener"}},
		{name: "tls without a certificate", edit: func(c *Config) {
			c.WebSocket.TLSBind = []string{":3103"}
		}, paths: []string{"tls.cert_file", "tls.key_file"}},
		{name: "limits and sizes", edit: func(c *Config) {
			c.Protocol.HandshakeTimeout = 0
			c.Protocol.QueueFrames = 0
			c.Protocol.SlowPolicy = "wait"
			c.Bucket.Count = 0
			c.Limits.MaxConns = -1
			c.Node.Weight = 0
		}, paths: []string{"protocol.handshake_timeout", "protocol.queue_frames", "protocol.slow_policy",
			"bucket.count", "limits.max_conns", "node.weight"}},
		{name: "new limits", edit: func(c *Config) {
			c.Limits.PendingAuthPerIP = -1
			c.Limits.FramesPerSecond = -1
			c.Limits.MaxRooms = -1
			c.Limits.AuthRatePerIP = 2e6
			c.Bucket.PacedBroadcasts = 0
		}, paths: []string{"bucket.paced_broadcasts", "limits.auth_rate_per_ip", "limits.pending_auth_per_ip",
			"limits.frames_per_second", "limits.max_rooms"}},
		{name: "limits off", edit: func(c *Config) { c.Limits = LimitsConfig{} }},
		{name: "no logic and no discovery", edit: func(c *Config) {
			c.Logic.Addrs = nil
		}, paths: []string{"logic.addrs"}},
		{name: "discovery checked when used", edit: func(c *Config) {
			c.Discovery.Nodes = []string{"http://d:7171"}
		}, paths: []string{"discovery.nodes[0]"}},
		{name: "websocket path", edit: func(c *Config) {
			c.WebSocket.Path = "sub"
		}, paths: []string{"websocket.path"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.RPC.Secrets = []string{testRPCSecret}
			tc.edit(&c)
			testkit.WantProblems(t, c.Validate(), tc.paths)
		})
	}
}
