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
