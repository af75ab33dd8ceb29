package discovery

import "net"

// Advertise is the address a service registers for others to dial:
// configured when set, else bound (a listener's address) when it names a
// host, else bound's port on this host's first non-loopback IPv4 address
// (or 127.0.0.1).
func Advertise(configured string, bound net.Addr) string {
	if configured != "" {
		return configured
	}
	host, port, _ := net.SplitHostPort(bound.String())
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return bound.String()
	}
	return net.JoinHostPort(hostIP(), port)
}

// hostIP returns the first non-loopback IPv4 address of an up interface,
// or 127.0.0.1.
func hostIP() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return "127.0.0.1"
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
