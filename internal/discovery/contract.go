package discovery

import (
	"strconv"
	"strings"

	"github.com/goim/goim/internal/conf"
)

// The services' app ids in discovery (goim v2's, so a v2 job or logic and
// ours can share a discovery cluster).
const (
	AppComet = "goim.comet"
	AppLogic = "goim.logic"
	AppJob   = "goim.job"
)

// Address schemes of an instance's Addrs.
const (
	SchemeGRPC = "grpc://"
	SchemeHTTP = "http://"
)

// GRPCAddr is the address entry of a gRPC listener at hostport.
func GRPCAddr(hostport string) string { return SchemeGRPC + hostport }

// HTTPAddr is the address entry of an HTTP listener at hostport.
func HTTPAddr(hostport string) string { return SchemeHTTP + hostport }

// GRPC returns the host:port of the instance's first gRPC address, and
// false when it has none.
func (ins Instance) GRPC() (string, bool) {
	for _, a := range ins.Addrs {
		if hp, ok := strings.CutPrefix(a, SchemeGRPC); ok {
			return hp, true
		}
	}
	return "", false
}

// DefaultCometWeight is a comet's weight when its metadata gives none.
const DefaultCometWeight = 10

// CometMeta is what a comet publishes in its instance metadata: what
// logic needs to hand out comets to clients (goim v2's keys).
type CometMeta struct {
	Weight    int64    // share of new clients relative to other comets, > 0
	Offline   bool     // draining: give it no new clients
	Addrs     []string // public addresses clients dial (host or host:port)
	ConnCount int64    // open connections
	IPCount   int64    // distinct client IPs
}

// Metadata keys of CometMeta.
const (
	metaWeight    = "weight"
	metaOffline   = "offline"
	metaAddrs     = "addrs"
	metaConnCount = "conn_count"
	metaIPCount   = "ip_count"
)

// Metadata encodes m as instance metadata.
func (m CometMeta) Metadata() map[string]string {
	return map[string]string{
		metaWeight:    strconv.FormatInt(m.Weight, 10),
		metaOffline:   strconv.FormatBool(m.Offline),
		metaAddrs:     strings.Join(m.Addrs, ","),
		metaConnCount: strconv.FormatInt(m.ConnCount, 10),
		metaIPCount:   strconv.FormatInt(m.IPCount, 10),
	}
}

// ParseCometMeta reads a comet's instance metadata. A field that is
// missing or does not parse takes its default (weight
// DefaultCometWeight, online, no addresses, 0 connections and IPs) rather
// than excluding the comet; empty entries of addrs are dropped.
func ParseCometMeta(md map[string]string) CometMeta {
	return CometMeta{
		Weight:    parseCount(md[metaWeight], DefaultCometWeight),
		Offline:   md[metaOffline] == "true",
		Addrs:     conf.SplitList(md[metaAddrs]),
		ConnCount: parseCount(md[metaConnCount], 0),
		IPCount:   parseCount(md[metaIPCount], 0),
	}
}

// parseCount parses a count that is never negative, and zero only where
// def is zero; anything else is def.
func parseCount(v string, def int64) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 || (n == 0 && def > 0) {
		return def
	}
	return n
}
