package comet

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/goim/goim/internal/conf"
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
	nilEmpty(reflect.ValueOf(&got).Elem())
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("configs/comet.toml differs from Default():\n got %+v\nwant %+v", got, want)
	}
	var file map[string]any
	md, err := toml.DecodeFile(path, &file)
	if err != nil {
		t.Fatal(err)
	}
	var inFile []string
	for _, k := range md.Keys() {
		inFile = append(inFile, k.String())
	}
	enc, err := toml.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var all map[string]any
	md, err = toml.Decode(string(enc), &all)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range md.Keys() {
		if k.String() == "host" { // machine-specific default, documented commented out
			continue
		}
		if !slices.Contains(inFile, k.String()) {
			t.Errorf("configs/comet.toml does not list %s", k)
		}
	}
}

// nilEmpty sets every empty slice in v to nil: "[]" in a file means the
// same as an absent list.
func nilEmpty(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				nilEmpty(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Config)
		paths []string // every problem expected, by key path
	}{
		{name: "defaults", edit: func(*Config) {}},
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
			tc.edit(&c)
			err := c.Validate()
			if len(tc.paths) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, conf.ErrInvalid) {
				t.Fatalf("error %v does not wrap conf.ErrInvalid", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.paths) {
				t.Fatalf("%d problems, want %d:\n%v", len(lines), len(tc.paths), err)
			}
			for i, p := range tc.paths {
				if !strings.Contains(lines[i], p) {
					t.Errorf("problem %d is %q, want it about %s", i, lines[i], p)
				}
			}
		})
	}
}
