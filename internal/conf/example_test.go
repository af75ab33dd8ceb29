package conf_test

import (
	"fmt"
	"net"
	"time"

	"github.com/goim/goim/internal/conf"
)

// Config is how a service declares its configuration: every field comment
// gives the unit and the default.
type Config struct {
	// Debug enables verbose logging. Default false.
	Debug bool `toml:"debug"`
	// TCP configures the TCP listeners.
	TCP TCPConfig `toml:"tcp"`
}

// TCPConfig is the [tcp] section.
type TCPConfig struct {
	// Bind lists the listen addresses, host:port. Default [":3101"].
	Bind []string `toml:"bind"`
	// SendBuf is the socket send buffer, in bytes. Default 4096.
	SendBuf int `toml:"sndbuf"`
	// Handshake is how long a client has to authenticate, a duration
	// string. Default "5s".
	Handshake conf.Duration `toml:"handshake"`
}

// Default returns the configuration used for keys absent from the file.
func Default() Config {
	return Config{
		TCP: TCPConfig{
			Bind:      []string{":3101"},
			SendBuf:   4096,
			Handshake: conf.Duration(5 * time.Second),
		},
	}
}

// Load reads the file at path over the defaults and validates the result.
func Load(path string) (Config, error) {
	c := Default()
	if err := conf.Load(path, &c); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Validate reports every problem at once, each with its key path.
func (c Config) Validate() error {
	var p conf.Problems
	c.TCP.validate(p.Sub("tcp"))
	return p.Err()
}

func (c TCPConfig) validate(p *conf.Problems) {
	p.Check(len(c.Bind) > 0, "bind", "must list at least one address")
	for i, addr := range c.Bind {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			p.Add(conf.Index("bind", i), "%w", err)
		}
	}
	p.Check(c.SendBuf > 0, "sndbuf", "must be > 0 bytes, got %d", c.SendBuf)
	p.Check(c.Handshake > 0, "handshake", "must be > 0, got %v", c.Handshake)
}

// A service config: defaults, a strict decode, then Validate. A service's
// Load does the same with conf.Load(path, &c).
func Example() {
	const file = `
[tcp]
bind = [":3101", "localhost"]
handshake = "-1s"
`
	c := Default()
	if err := conf.Decode("comet.toml", file, &c); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("sndbuf:", c.TCP.SendBuf) // absent from the file: default kept
	fmt.Println(c.Validate())

	c = Default()
	fmt.Println(conf.Decode("comet.toml", "[tcp]\nbindd = [\":1\"]\nhandshake = \"250ms\"\n", &c))
	// Output:
	// sndbuf: 4096
	// tcp.bind[1]: address localhost: missing port in address
	// tcp.handshake: must be > 0, got -1s
	// comet.toml: unknown keys: tcp.bindd
}
