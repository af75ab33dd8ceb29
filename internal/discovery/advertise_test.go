package discovery

import (
	"net"
	"strings"
	"testing"
)

func TestAdvertise(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 3109}
	if got := Advertise("comet.example:9000", bound); got != "comet.example:9000" {
		t.Errorf("configured: %q", got)
	}
	if got := Advertise("", bound); got != "127.0.0.2:3109" {
		t.Errorf("bound to a host: %q", got)
	}
	got := Advertise("", &net.TCPAddr{IP: net.IPv4zero, Port: 3109})
	host, port, err := net.SplitHostPort(got)
	if err != nil || port != "3109" || net.ParseIP(host) == nil || net.ParseIP(host).IsUnspecified() || strings.Contains(host, ":") {
		t.Errorf("bound to every interface: %q, want an IPv4 of this host with port 3109", got)
	}
}
