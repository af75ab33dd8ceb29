package logic

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/logic/httpapi"
)

func TestOnlineTotals(t *testing.T) {
	o := newOnline(time.Minute)
	now := time.Now()
	o.replace(map[string]dao.OnlineReport{
		"a": {Server: "a", Rooms: map[string]int32{"live://1": 5, "live://2": 1, "chat://1": 9}, ConnCount: 15, IPCount: 10, Updated: now},
		"b": {Server: "b", Rooms: map[string]int32{"live://1": 2, "live://3": 1, "bad": 4}, ConnCount: 7, IPCount: 7, Draining: true, Updated: now},
	})
	if got, want := o.top("live", 10), []httpapi.RoomCount{{RoomID: "1", Count: 7}, {RoomID: "2", Count: 1}, {RoomID: "3", Count: 1}}; !slices.Equal(got, want) {
		t.Fatalf("top = %v, want %v", got, want)
	}
	if got := o.top("live", 1); len(got) != 1 || got[0].RoomID != "1" {
		t.Fatalf("top limit 1 = %v", got)
	}
	if got := o.top("liv", 10); len(got) != 0 { // exact type match, not a prefix (goim v2 matched a string prefix)
		t.Fatalf("top of a type prefix = %v", got)
	}
	if got := o.room("live", []string{"1", "9"}); !maps.Equal(got, map[string]int32{"1": 7, "9": 0}) {
		t.Fatalf("room = %v", got)
	}
	if c, i := o.total(); c != 22 || i != 17 { // draining comets' clients still count
		t.Fatalf("total = %d, %d", c, i)
	}

	// A report received directly: this comet's share is replaced in the
	// counts answered, and its load applies at once.
	all := o.report(&logicpb.OnlineReq{Server: "a", RoomCount: map[string]int32{"live://1": 1, "live://4": 2, "live://5": 0}, ConnCount: 3})
	if want := map[string]int32{"live://1": 3, "live://4": 2}; !maps.Equal(all, want) {
		t.Fatalf("report answer = %v, want %v", all, want)
	}
	if c, _ := o.total(); c != 10 {
		t.Fatalf("total after report = %d, want 10", c)
	}
	// A refresh read before that report does not undo it.
	o.replace(map[string]dao.OnlineReport{"a": {Server: "a", ConnCount: 15, Updated: now}})
	if r, _ := o.get("a"); r.ConnCount != 3 {
		t.Fatalf("refresh replaced a newer report: %+v", r)
	}
	// Reports past the TTL go when a refresh fails.
	o.expire(time.Now().Add(2 * time.Minute))
	if o.count() != 0 {
		t.Fatalf("%d reports survive expiry", o.count())
	}
}

// TestBalancerSpreadsByWeight: between reports, clients are spread in
// proportion to the comets' weights, never all to one.
func TestBalancerSpreadsByWeight(t *testing.T) {
	b := newBalancer()
	first := map[string]int{}
	for range 600 {
		c := []candidate{{host: "a", weight: 10}, {host: "b", weight: 30}, {host: "c", weight: 10, conns: 100}}
		b.order(c)
		first[c[0].host]++
	}
	// c starts 100 connections behind; a and b fill up 1:3 until c's load
	// is reached, then all three share 1:3:1.
	if first["a"] != 140 || first["b"] != 420 || first["c"] != 40 {
		t.Fatalf("first choices %v", first)
	}
	t.Logf("first choices %v", first)
	b.reset()
	c := []candidate{{host: "a", weight: 10, conns: 5}, {host: "b", weight: 10, conns: 1}}
	b.order(c)
	if c[0].host != "b" {
		t.Fatalf("after reset, least loaded first: %v", c)
	}
}

// TestCometMetaParse: the comets' metadata is read with discovery's
// rules: a count missing, malformed or negative (or zero, for the weight)
// takes its default; empty addresses are dropped.
func TestCometMetaParse(t *testing.T) {
	cases := []struct {
		in   string
		def  int64
		want int64
	}{
		{in: "", def: 10, want: 10},
		{in: "x", def: 10, want: 10},
		{in: "-3", def: 10, want: 10},
		{in: "0", def: 10, want: 10},
		{in: "0", def: 0, want: 0},
		{in: " 25 ", def: 10, want: 25},
	}
	for _, tc := range cases {
		// The weight defaults to 10, the connection count to 0.
		m := discovery.ParseCometMeta(map[string]string{"weight": tc.in, "conn_count": tc.in})
		got := m.ConnCount
		if tc.def == discovery.DefaultCometWeight {
			got = m.Weight
		}
		if got != tc.want {
			t.Errorf("metadata %q (default %d) = %d, want %d", tc.in, tc.def, got, tc.want)
		}
	}
	if got := discovery.ParseCometMeta(map[string]string{"addrs": " 1.2.3.4, ,5.6.7.8,"}).Addrs; !slices.Equal(got, []string{"1.2.3.4", "5.6.7.8"}) {
		t.Errorf("addrs = %v", got)
	}
}

// TestNodes covers the nodes answer from discovery instances and reports:
// missing metadata takes defaults, draining comets are left out, web
// clients get host names with a host domain, and the list is capped.
func TestNodes(t *testing.T) {
	cfg := Default()
	cfg.Node.MaxNodes = 3
	s := &Service{cfg: cfg, online: newOnline(time.Minute), nodes: newBalancer()}
	ins := []discovery.Instance{
		{Hostname: "c1", Metadata: map[string]string{"addrs": "10.0.0.1,10.0.0.2", "weight": "10", "conn_count": "0"}},
		{Hostname: "c2", Metadata: map[string]string{"addrs": "10.0.0.3"}}, // no weight, no counts: defaults
		{Hostname: "c3", Metadata: map[string]string{"addrs": "10.0.0.4", "offline": "true"}},
		{Hostname: "c4", Metadata: map[string]string{"addrs": "10.0.0.5"}},
	}
	s.comets = func() []discovery.Instance { return ins }
	// c4 reports draining (fresher than its metadata); c2 is busy.
	s.online.report(&logicpb.OnlineReq{Server: "c4", Draining: true})
	s.online.report(&logicpb.OnlineReq{Server: "c2", ConnCount: 50})
	r := s.Nodes("ios", "")
	if want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}; !slices.Equal(r.Nodes, want) {
		t.Fatalf("nodes %v, want %v", r.Nodes, want)
	}
	if r.Domain != "127.0.0.1" || r.TcpPort != 3101 || r.WsPort != 3102 || r.WssPort != 3103 || r.Heartbeat != 240 || r.HeartbeatMax != 2 ||
		r.Backoff.MaxDelay != 300 || r.Backoff.BaseDelay != 3 || r.Backoff.Factor != 1.8 || r.Backoff.Jitter != 0.3 {
		t.Fatalf("reply %+v", r)
	}
	s.cfg.Node.HostDomain = ".goim.io"
	if r := s.Nodes("web", ""); !slices.Contains(r.Nodes, "c1.goim.io") || !slices.Contains(r.Nodes, "c2.goim.io") || len(r.Nodes) != 2 {
		t.Fatalf("web nodes %v", r.Nodes)
	}
	got := s.Instances()
	if len(got) != 4 || got[1].Metadata["weight"] != "10" || got[1].Metadata["conn_count"] != "50" || got[3].Metadata["offline"] != "true" {
		t.Fatalf("instances %+v", got)
	}
	// Nothing available: the default domain.
	ins = nil
	if r := s.Nodes("ios", ""); !slices.Equal(r.Nodes, []string{"127.0.0.1"}) {
		t.Fatalf("no comets: %v", r.Nodes)
	}
}

// TestNodesWithoutDiscovery: comets known only from reports have no
// addresses; web clients still get host names with a host domain.
func TestNodesWithoutDiscovery(t *testing.T) {
	cfg := Default()
	cfg.Node.HostDomain = ".example.com"
	s := &Service{cfg: cfg, online: newOnline(time.Minute), nodes: newBalancer()}
	for i := range 3 {
		s.online.report(&logicpb.OnlineReq{Server: fmt.Sprintf("c%d", i), ConnCount: int64(i), Draining: i == 0})
	}
	if r := s.Nodes("web", ""); !slices.Equal(r.Nodes, []string{"c1.example.com", "c2.example.com"}) {
		t.Fatalf("web nodes %v", r.Nodes)
	}
	if r := s.Nodes("android", ""); !slices.Equal(r.Nodes, []string{"127.0.0.1"}) {
		t.Fatalf("android nodes %v", r.Nodes)
	}
	if got := s.Instances(); len(got) != 3 || got[0].AppID != discovery.AppComet || got[0].Metadata["offline"] != "true" {
		t.Fatalf("instances %+v", got)
	}
}

// TestComets covers /goim/online/comets' view: with discovery, registered
// comets take load and draining state from their reports (discovery's
// metadata without one) and comets that report without being registered
// are listed too; without discovery, the reporting comets only.
func TestComets(t *testing.T) {
	s := &Service{cfg: Default(), online: newOnline(time.Minute), nodes: newBalancer()}
	s.online.report(&logicpb.OnlineReq{Server: "c2", ConnCount: 7, IpCount: 2, Draining: true})
	s.online.report(&logicpb.OnlineReq{Server: "c0", ConnCount: 1, IpCount: 1})

	got, withDiscovery := s.Comets()
	if withDiscovery || len(got) != 2 || got[0].Hostname != "c0" || got[1].Hostname != "c2" {
		t.Fatalf("without discovery: %v %+v", withDiscovery, got)
	}
	if c := got[1]; !c.Draining || c.ConnCount != 7 || c.IPCount != 2 || c.Weight != discovery.DefaultCometWeight ||
		c.Registered || !c.Reported || c.ReportAge < 0 || c.ReportAge > time.Minute || c.Addrs != nil {
		t.Fatalf("without discovery, c2: %+v", c)
	}

	ins := []discovery.Instance{
		{Hostname: "c3", Region: "sh", Zone: "sh001", Addrs: []string{"grpc://10.0.0.3:3109"},
			Metadata: map[string]string{"addrs": "10.0.0.3,10.0.1.3", "weight": "20", "conn_count": "9", "offline": "true"}},
		{Hostname: "c2", Addrs: []string{"grpc://10.0.0.2:3109"}, Metadata: map[string]string{"addrs": "10.0.0.2", "conn_count": "100"}},
	}
	s.comets = func() []discovery.Instance { return ins }
	got, withDiscovery = s.Comets()
	if !withDiscovery || len(got) != 3 {
		t.Fatalf("with discovery: %v %+v", withDiscovery, got)
	}
	c0, c2, c3 := got[0], got[1], got[2]
	if c0.Hostname != "c0" || c0.Registered || !c0.Reported || c0.ConnCount != 1 {
		t.Errorf("reporting, not registered: %+v", c0)
	}
	if c2.Hostname != "c2" || !c2.Registered || !c2.Reported || c2.ConnCount != 7 || !c2.Draining ||
		!slices.Equal(c2.Addrs, []string{"10.0.0.2"}) || !slices.Equal(c2.RPCAddrs, []string{"grpc://10.0.0.2:3109"}) {
		t.Errorf("registered and reporting (the report wins): %+v", c2)
	}
	if c3.Hostname != "c3" || !c3.Registered || c3.Reported || c3.ReportAge != 0 || c3.ConnCount != 9 || !c3.Draining ||
		c3.Weight != 20 || c3.Region != "sh" || c3.Zone != "sh001" || !slices.Equal(c3.Addrs, []string{"10.0.0.3", "10.0.1.3"}) {
		t.Errorf("registered, no report (discovery's metadata): %+v", c3)
	}
	// The answer is a copy: changing it leaves discovery's instances alone.
	c3.RPCAddrs[0] = "x"
	if ins[0].Addrs[0] != "grpc://10.0.0.3:3109" {
		t.Errorf("Comets shares its slices with discovery's instances")
	}
}

// TestCometsEndpoint: /goim/online/comets on a running logic (no
// discovery) lists a comet from its gRPC report, with the report's load,
// draining state and age; it needs a token.
func TestCometsEndpoint(t *testing.T) {
	e := startLogic(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.rpc.RenewOnline(ctx, &logicpb.OnlineReq{Server: "comet-a", ConnCount: 3, IpCount: 2, Draining: true,
		RoomCount: map[string]int32{"live://1": 3}}); err != nil {
		t.Fatal(err)
	}
	status, body := e.do(http.MethodGet, "/goim/online/comets", nil)
	var got struct {
		Code int `json:"code"`
		Data struct {
			Discovery bool `json:"discovery"`
			Comets    []struct {
				Hostname    string   `json:"hostname"`
				Addrs       []string `json:"addrs"`
				Weight      int64    `json:"weight"`
				ConnCount   int64    `json:"conn_count"`
				IPCount     int64    `json:"ip_count"`
				Draining    bool     `json:"draining"`
				Registered  bool     `json:"registered"`
				ReportAgeMS *int64   `json:"report_age_ms"`
			} `json:"comets"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &got); status != http.StatusOK || err != nil || got.Code != 0 {
		t.Fatalf("GET /goim/online/comets: %d %s (%v)", status, body, err)
	}
	if got.Data.Discovery || len(got.Data.Comets) != 1 {
		t.Fatalf("comets: %s", body)
	}
	c := got.Data.Comets[0]
	if c.Hostname != "comet-a" || c.ConnCount != 3 || c.IPCount != 2 || !c.Draining || c.Registered || c.Weight != discovery.DefaultCometWeight ||
		c.Addrs == nil || len(c.Addrs) != 0 || c.ReportAgeMS == nil || *c.ReportAgeMS < 0 || *c.ReportAgeMS > 5000 {
		t.Fatalf("comet: %s", body)
	}
	if status, body := e.do(http.MethodGet, "/goim/online/comets", nil, "Authorization", ""); status != http.StatusUnauthorized {
		t.Fatalf("without a token: %d %s", status, body)
	}
}
