package logic

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/logic/httpapi"
)

// balancer orders comets for /goim/nodes/weighted: least loaded relative
// to its weight first. Between two reports of a comet it counts the
// clients it has sent there, so a burst of clients spreads over the comets
// in proportion to their weights instead of all going to the one that was
// emptiest at the last report.
//
// /goim/nodes/weighted is public, so anyone can make logic count a
// client that never connects. That state is bounded three ways:
//   - in size: assigned has an entry only for a comet logic knows (from
//     discovery or a live report), never for anything a caller names;
//   - in time: a comet's count is forgotten at its next report and every
//     count at each online refresh (every online.refresh, 5 s);
//   - in value: a comet's count stops at max(minAssignCap, its reported
//     connections) (assignCap). So anonymous calls can at most double a
//     comet's apparent load (plus minAssignCap) until the next report,
//     not bury the real counts under millions of phantom clients; a real
//     burst larger than that goes by the reported counts alone, as
//     without the balancer.
type balancer struct {
	mu       sync.Mutex
	assigned map[string]int64 // clients sent to a comet since its last report, at most assignCap; guarded by mu
}

// minAssignCap is the least number of clients counted against a comet
// between two of its reports, however few connections it reported.
const minAssignCap = 1000

// assignCap is the most clients counted against a comet that reported
// conns connections, between two of its reports.
func assignCap(conns int64) int64 { return max(minAssignCap, conns) }

func newBalancer() *balancer { return &balancer{assigned: map[string]int64{}} }

// reported forgets what was sent to server: its report counts them now.
func (b *balancer) reported(server string) {
	b.mu.Lock()
	delete(b.assigned, server)
	b.mu.Unlock()
}

// reset forgets every assignment (after a refresh from Redis).
func (b *balancer) reset() {
	b.mu.Lock()
	clear(b.assigned)
	b.mu.Unlock()
}

// candidate is a comet a client may be sent to.
type candidate struct {
	host   string
	addrs  []string // public addresses, no port
	weight int64
	conns  int64
}

// order sorts cands best first and counts one client for the first.
func (b *balancer) order(cands []candidate) {
	b.mu.Lock()
	defer b.mu.Unlock()
	load := func(c candidate) float64 { return float64(c.conns+b.assigned[c.host]) / float64(c.weight) }
	slices.SortFunc(cands, func(x, y candidate) int {
		if c := cmp.Compare(load(x), load(y)); c != 0 {
			return c
		}
		if c := cmp.Compare(y.weight, x.weight); c != 0 {
			return c
		}
		return strings.Compare(x.host, y.host)
	})
	if len(cands) > 0 && b.assigned[cands[0].host] < assignCap(cands[0].conns) {
		b.assigned[cands[0].host]++
	}
}

// cometInfo is what logic knows of one comet: its discovery instance
// (Hostname only, without discovery) and its metadata, with the load and
// draining state of its latest report, if live.
type cometInfo struct {
	ins  discovery.Instance
	meta discovery.CometMeta
}

// cometView lists the comets: from discovery when configured (membership
// and addresses), overlaid with the live reports (load and draining state,
// fresher than discovery's metadata). Without discovery the comets are
// those with a live report. A metadata field that is missing or does not
// parse takes its default (discovery.ParseCometMeta) rather than
// excluding the comet.
func (s *Service) cometView() []cometInfo {
	var out []cometInfo
	if s.comets != nil {
		for _, ins := range s.comets() {
			c := cometInfo{ins: ins, meta: discovery.ParseCometMeta(ins.Metadata)}
			if r, ok := s.online.get(ins.Hostname); ok {
				c.meta.ConnCount, c.meta.IPCount, c.meta.Offline = r.ConnCount, r.IPCount, r.Draining
			}
			out = append(out, c)
		}
		return out
	}
	for _, r := range s.online.reports() {
		out = append(out, cometInfo{
			ins: discovery.Instance{AppID: discovery.AppComet, Hostname: r.Server},
			meta: discovery.CometMeta{
				Weight:    discovery.DefaultCometWeight,
				ConnCount: r.ConnCount,
				IPCount:   r.IPCount,
				Offline:   r.Draining,
			},
		})
	}
	return out
}

// Nodes answers /goim/nodes/weighted (and the Nodes RPC): where a client
// of platform should connect, best first, at most node.max_nodes entries.
// Draining comets are left out. A "web" client gets "<host><host_domain>"
// names when node.host_domain is set; other platforms, and web without a
// host domain, get the comets' public addresses. With no entry, the answer
// is node.default_domain. clientIP is accepted for region-aware selection
// later; it does not change the answer yet.
func (s *Service) Nodes(platform, _ string) *logicpb.NodesReply {
	n := s.cfg.Node
	var cands []candidate
	for _, c := range s.cometView() {
		if !c.meta.Offline {
			cands = append(cands, candidate{host: c.ins.Hostname, addrs: c.meta.Addrs, weight: c.meta.Weight, conns: c.meta.ConnCount})
		}
	}
	s.nodes.order(cands)
	var nodes []string
	for _, c := range cands {
		entries := c.addrs
		if platform == "web" && n.HostDomain != "" {
			entries = []string{c.host + n.HostDomain}
		}
		for _, e := range entries {
			if len(nodes) < n.MaxNodes && !slices.Contains(nodes, e) {
				nodes = append(nodes, e)
			}
		}
	}
	if len(nodes) == 0 {
		nodes = []string{n.DefaultDomain}
	}
	b := s.cfg.Backoff
	return &logicpb.NodesReply{
		Domain:       n.DefaultDomain,
		TcpPort:      int32(n.TCPPort),
		WsPort:       int32(n.WSPort),
		WssPort:      int32(n.WSSPort),
		Heartbeat:    int32(n.Heartbeat.D().Seconds()),
		HeartbeatMax: int32(n.HeartbeatMax),
		Nodes:        nodes,
		Backoff: &logicpb.Backoff{
			MaxDelay:  int32(b.MaxDelay),
			BaseDelay: int32(b.BaseDelay),
			Factor:    float32(b.Factor),
			Jitter:    float32(b.Jitter),
		},
	}
}

// Instances answers /goim/nodes/instances: the comets from discovery, with
// conn_count, ip_count and offline taken from their latest reports when
// they have one. Without discovery it lists the comets with a live report
// (hostname and metadata only).
func (s *Service) Instances() []discovery.Instance {
	view := s.cometView()
	out := make([]discovery.Instance, 0, len(view))
	for _, c := range view {
		ins := c.ins
		md := make(map[string]string, len(ins.Metadata)+5)
		maps.Copy(md, ins.Metadata)
		md["conn_count"] = strconv.FormatInt(c.meta.ConnCount, 10)
		md["ip_count"] = strconv.FormatInt(c.meta.IPCount, 10)
		md["offline"] = strconv.FormatBool(c.meta.Offline)
		if _, ok := md["weight"]; !ok {
			md["weight"] = strconv.FormatInt(c.meta.Weight, 10)
		}
		if _, ok := md["addrs"]; !ok {
			md["addrs"] = ""
		}
		ins.Metadata = md
		if ins.Addrs == nil {
			ins.Addrs = []string{}
		}
		out = append(out, ins)
	}
	return out
}

// Comets answers /goim/online/comets: every comet of cometView (discovery's
// when configured, else those reporting), plus, with discovery, the comets
// that report but are not registered (Registered false: a comet whose
// registration failed or has not reached discovery yet still holds
// clients). Load and draining state come from the latest report when
// there is one, else from discovery's metadata; ReportAge is measured on
// logic's clock. Sorted by hostname.
func (s *Service) Comets() ([]httpapi.Comet, bool) {
	now := time.Now()
	var out []httpapi.Comet
	seen := make(map[string]bool)
	for _, c := range s.cometView() {
		seen[c.ins.Hostname] = true
		e := httpapi.Comet{
			Hostname:   c.ins.Hostname,
			Region:     c.ins.Region,
			Zone:       c.ins.Zone,
			Addrs:      slices.Clone(c.meta.Addrs),
			RPCAddrs:   slices.Clone(c.ins.Addrs),
			Weight:     c.meta.Weight,
			ConnCount:  c.meta.ConnCount,
			IPCount:    c.meta.IPCount,
			Draining:   c.meta.Offline,
			Registered: s.comets != nil,
		}
		if r, ok := s.online.get(c.ins.Hostname); ok {
			e.Reported, e.ReportAge = true, max(now.Sub(r.Updated), 0)
		}
		out = append(out, e)
	}
	if s.comets != nil {
		for _, r := range s.online.reports() {
			if seen[r.Server] {
				continue
			}
			out = append(out, httpapi.Comet{
				Hostname:  r.Server,
				Weight:    discovery.DefaultCometWeight,
				ConnCount: r.ConnCount,
				IPCount:   r.IPCount,
				Draining:  r.Draining,
				Reported:  true,
				ReportAge: max(now.Sub(r.Updated), 0),
			})
		}
	}
	slices.SortFunc(out, func(a, b httpapi.Comet) int { return strings.Compare(a.Hostname, b.Hostname) })
	return out, s.comets != nil
}
