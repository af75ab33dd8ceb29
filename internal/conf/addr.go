package conf

import (
	"errors"
	"net"
)

// HostPort records a problem at path unless a is "host:port" with a
// non-empty port (the host may be empty: ":3101" listens on every
// address). It reports whether a was valid.
func (p *Problems) HostPort(path, a string) bool {
	_, port, err := net.SplitHostPort(a)
	if err == nil && port == "" {
		err = errEmptyPort
	}
	if err != nil {
		p.Add(path, "%q is not host:port: %v", a, err)
		return false
	}
	return true
}

// HostPorts checks every entry of list with HostPort, at path[i].
func (p *Problems) HostPorts(path string, list []string) {
	for i, a := range list {
		p.HostPort(Index(path, i), a)
	}
}

// Brokers checks a Kafka bootstrap list: at least one broker, each
// "host:port".
func (p *Problems) Brokers(path string, list []string) {
	if p.Check(len(list) > 0, path, `must list at least one broker "host:port"`) {
		p.HostPorts(path, list)
	}
}

var errEmptyPort = errors.New("empty port")
