package httpapi

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/gin-gonic/gin"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/discovery"
)

// The nodes endpoints are public: clients call /goim/nodes/weighted to pick
// a comet, and they keep answering while logic drains.

// nodesData is the data of /goim/nodes/weighted. Unlike logicpb.NodesReply,
// whose JSON tags say omitempty, every field is always present, in this
// order.
type nodesData struct {
	Domain       string      `json:"domain"`
	TCPPort      int32       `json:"tcp_port"`
	WSPort       int32       `json:"ws_port"`
	WSSPort      int32       `json:"wss_port"`
	Heartbeat    int32       `json:"heartbeat"`     // seconds between client heartbeats
	HeartbeatMax int32       `json:"heartbeat_max"` // missed heartbeats before the server closes
	Nodes        []string    `json:"nodes"`         // never null
	Backoff      backoffData `json:"backoff"`
}

// backoffData is the client reconnect back-off. The floats are printed from
// their float32 value with the fewest digits that read back the same, so
// 1.8 is 1.8, not 1.7999999523162842.
type backoffData struct {
	MaxDelay  int32       `json:"max_delay"`
	BaseDelay int32       `json:"base_delay"`
	Factor    json.Number `json:"factor"`
	Jitter    json.Number `json:"jitter"`
}

// nodesWeighted serves /goim/nodes/weighted?platform=: platform is
// optional and passed as given (the service gives "web" host names and
// other platforms IPs); the client IP is the peer address, or what a
// trusted proxy forwarded.
func (s *Server) nodesWeighted(c *gin.Context) int {
	q, err := parseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return s.badRequest(c, err)
	}
	platform, err := parseNodes(q)
	if err != nil {
		return s.badRequest(c, err)
	}
	return s.ok(c, newNodesData(s.svc.Nodes(platform, c.ClientIP())))
}

// nodesInstances serves /goim/nodes/instances and /nodes/instances.
func (s *Server) nodesInstances(c *gin.Context) int {
	ins := s.svc.Instances()
	out := make([]discovery.Instance, len(ins)) // [], never null
	for i, in := range ins {
		if in.Addrs == nil {
			in.Addrs = []string{}
		}
		if in.Metadata == nil {
			in.Metadata = map[string]string{}
		}
		out[i] = in
	}
	return s.ok(c, out)
}

func newNodesData(r *logicpb.NodesReply) nodesData {
	d := nodesData{
		Domain:       r.GetDomain(),
		TCPPort:      r.GetTcpPort(),
		WSPort:       r.GetWsPort(),
		WSSPort:      r.GetWssPort(),
		Heartbeat:    r.GetHeartbeat(),
		HeartbeatMax: r.GetHeartbeatMax(),
		Nodes:        r.GetNodes(),
	}
	if d.Nodes == nil {
		d.Nodes = []string{}
	}
	b := r.GetBackoff() // nil-safe getters: a nil reply or back-off gives zeros
	d.Backoff = backoffData{
		MaxDelay:  b.GetMaxDelay(),
		BaseDelay: b.GetBaseDelay(),
		Factor:    float32Number(b.GetFactor()),
		Jitter:    float32Number(b.GetJitter()),
	}
	return d
}

// float32Number renders f as a JSON number with the shortest decimal that
// reads back as f; NaN and infinities, which JSON cannot hold, become 0.
func float32Number(f float32) json.Number {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return "0"
	}
	return json.Number(strconv.FormatFloat(float64(f), 'f', -1, 32))
}
