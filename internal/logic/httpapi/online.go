package httpapi

import (
	"github.com/gin-gonic/gin"
)

// The online endpoints answer from the service's in-memory aggregate of the
// comets' reports; they never fail once their parameters are valid.

// onlineTotal is the data of /goim/online/total.
type onlineTotal struct {
	ConnCount int64 `json:"conn_count"`
	IPCount   int64 `json:"ip_count"`
}

func (s *Server) onlineTop(c *gin.Context) int {
	q, err := parseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return s.badRequest(c, err)
	}
	typ, limit, err := parseOnlineTop(q)
	if err != nil {
		return s.badRequest(c, err)
	}
	top := s.svc.OnlineTop(typ, limit)
	if top == nil {
		top = []RoomCount{} // [], never null
	}
	if len(top) > limit { // the service's contract, enforced on the wire
		top = top[:limit]
	}
	return s.ok(c, top)
}

func (s *Server) onlineRoom(c *gin.Context) int {
	q, err := parseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return s.badRequest(c, err)
	}
	typ, rooms, err := parseOnlineRoom(q)
	if err != nil {
		return s.badRequest(c, err)
	}
	counts := s.svc.OnlineRoom(typ, rooms)
	// Exactly the rooms asked for, 0 for unknown ones, whatever the
	// service returned.
	data := make(map[string]int32, len(rooms))
	for _, r := range rooms {
		data[r] = counts[r]
	}
	return s.ok(c, data)
}

func (s *Server) onlineTotal(c *gin.Context) int {
	conns, ips := s.svc.OnlineTotal()
	return s.ok(c, onlineTotal{ConnCount: conns, IPCount: ips})
}

// cometsData is the data of /goim/online/comets.
type cometsData struct {
	// Discovery: logic reads comets from discovery; without it the list
	// has only the comets that report, with no addresses.
	Discovery bool        `json:"discovery"`
	Comets    []cometData `json:"comets"` // never null
}

// cometData is one comet of /goim/online/comets; every field is always
// present.
type cometData struct {
	Hostname   string   `json:"hostname"`
	Region     string   `json:"region"`
	Zone       string   `json:"zone"`
	Addrs      []string `json:"addrs"`     // public addresses clients dial
	RPCAddrs   []string `json:"rpc_addrs"` // registered (grpc://) addresses
	Weight     int64    `json:"weight"`
	ConnCount  int64    `json:"conn_count"`
	IPCount    int64    `json:"ip_count"`
	Draining   bool     `json:"draining"`
	Registered bool     `json:"registered"`
	// ReportAgeMS is the age of the latest report in milliseconds, null
	// when logic holds no live report of the comet.
	ReportAgeMS *int64 `json:"report_age_ms"`
}

// onlineComets serves /goim/online/comets: the comets with their load and
// draining state, from discovery and the online reports.
func (s *Server) onlineComets(c *gin.Context) int {
	comets, withDiscovery := s.svc.Comets()
	data := cometsData{Discovery: withDiscovery, Comets: make([]cometData, 0, len(comets))}
	for _, cm := range comets {
		d := cometData{
			Hostname:   cm.Hostname,
			Region:     cm.Region,
			Zone:       cm.Zone,
			Addrs:      nonNil(cm.Addrs),
			RPCAddrs:   nonNil(cm.RPCAddrs),
			Weight:     cm.Weight,
			ConnCount:  cm.ConnCount,
			IPCount:    cm.IPCount,
			Draining:   cm.Draining,
			Registered: cm.Registered,
		}
		if cm.Reported {
			ms := max(cm.ReportAge.Milliseconds(), 0)
			d.ReportAgeMS = &ms
		}
		data.Comets = append(data.Comets, d)
	}
	return s.ok(c, data)
}

// nonNil returns l, or [] for nil (JSON [] rather than null).
func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
