package httpapi

import (
	"math"
	"testing"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/discovery"
)

func exampleNodes() *logicpb.NodesReply {
	return &logicpb.NodesReply{
		Domain: "conn.goim.io", TcpPort: 3101, WsPort: 3102, WssPort: 3103,
		Heartbeat: 30, HeartbeatMax: 3,
		Nodes:   []string{"47.89.10.97"},
		Backoff: &logicpb.Backoff{MaxDelay: 300, BaseDelay: 3, Factor: 1.8, Jitter: 0.3},
	}
}

// exampleInstance is the instance of docs/push-api.md.
func exampleInstance() discovery.Instance {
	return discovery.Instance{
		Region: "sh", Zone: "sh001", Env: "dev", AppID: "goim.comet", Hostname: "test",
		Addrs: []string{"grpc://192.168.1.30:3109"}, Version: "", LatestTimestamp: 1545750122311688676,
		Metadata: map[string]string{"addrs": "47.89.10.97", "conn_count": "1", "ip_count": "1", "offline": "false", "weight": "10"},
	}
}

func TestNodesWeighted(t *testing.T) {
	const path = "/goim/nodes/weighted"
	const exampleJSON = `{"code":0,"message":"","data":{"domain":"conn.goim.io","tcp_port":3101,"ws_port":3102,"wss_port":3103,` +
		`"heartbeat":30,"heartbeat_max":3,"nodes":["47.89.10.97"],"backoff":{"max_delay":300,"base_delay":3,"factor":1.8,"jitter":0.3}}}`
	runGetCases(t, testConfig(), []getCase{
		{name: "example", svc: &fakeService{nodes: exampleNodes()}, target: path + "?platform=web", wantStatus: 200, wantBody: exampleJSON,
			wantCall: &call{Method: "Nodes", Platform: "web", ClientIP: "192.0.2.1"}},
		{name: "empty reply has every field", target: path, wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"domain":"","tcp_port":0,"ws_port":0,"wss_port":0,"heartbeat":0,"heartbeat_max":0,` +
				`"nodes":[],"backoff":{"max_delay":0,"base_delay":0,"factor":0,"jitter":0}}}`,
			wantCall: &call{Method: "Nodes", Platform: "", ClientIP: "192.0.2.1"}},
		{name: "any platform passed through", target: path + "?platform=ios%20x", wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"domain":"","tcp_port":0,"ws_port":0,"wss_port":0,"heartbeat":0,"heartbeat_max":0,` +
				`"nodes":[],"backoff":{"max_delay":0,"base_delay":0,"factor":0,"jitter":0}}}`,
			wantCall: &call{Method: "Nodes", Platform: "ios x", ClientIP: "192.0.2.1"}},
		{name: "untrusted forwarded header ignored", svc: &fakeService{nodes: exampleNodes()}, target: path + "?platform=android",
			header: []string{"X-Forwarded-For", "203.0.113.9", "X-Real-IP", "203.0.113.10"}, wantStatus: 200, wantBody: exampleJSON,
			wantCall: &call{Method: "Nodes", Platform: "android", ClientIP: "192.0.2.1"}},
		{name: "platform twice", target: path + "?platform=web&platform=ios", wantStatus: 400, wantBody: badJSON("platform: given 2 times, want once")},
		{name: "query bad escape", target: path + "?platform=%G0", wantStatus: 400, wantBody: badJSON(`query: invalid URL escape "%G0"`)},
	})
}

func TestNodesWeightedTrustedProxy(t *testing.T) {
	cfg := testConfig()
	cfg.TrustedProxies = []string{"192.0.2.0/24"} // httptest's peer is 192.0.2.1
	runGetCases(t, cfg, []getCase{
		{name: "forwarded for", target: "/goim/nodes/weighted?platform=web", header: []string{"X-Forwarded-For", "198.51.100.7, 192.0.2.9"},
			wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"domain":"","tcp_port":0,"ws_port":0,"wss_port":0,"heartbeat":0,"heartbeat_max":0,` +
				`"nodes":[],"backoff":{"max_delay":0,"base_delay":0,"factor":0,"jitter":0}}}`,
			wantCall: &call{Method: "Nodes", Platform: "web", ClientIP: "198.51.100.7"}},
	})
}

func TestNodesInstances(t *testing.T) {
	const exampleJSON = `{"code":0,"message":"","data":[{"region":"sh","zone":"sh001","env":"dev","appid":"goim.comet","hostname":"test",` +
		`"addrs":["grpc://192.168.1.30:3109"],"version":"","latest_timestamp":1545750122311688676,` +
		`"metadata":{"addrs":"47.89.10.97","conn_count":"1","ip_count":"1","offline":"false","weight":"10"}}]}`
	var cases []getCase
	for _, path := range []string{"/goim/nodes/instances", "/nodes/instances"} {
		cases = append(cases,
			getCase{name: path + " empty is []", target: path, wantStatus: 200, wantBody: `{"code":0,"message":"","data":[]}`,
				wantCall: &call{Method: "Instances"}},
			getCase{name: path + " example", svc: &fakeService{instances: []discovery.Instance{exampleInstance()}}, target: path,
				wantStatus: 200, wantBody: exampleJSON, wantCall: &call{Method: "Instances"}},
			getCase{name: path + " nil addrs and metadata", svc: &fakeService{instances: []discovery.Instance{{Hostname: "h"}}}, target: path,
				wantStatus: 200,
				wantBody: `{"code":0,"message":"","data":[{"region":"","zone":"","env":"","appid":"","hostname":"h",` +
					`"addrs":[],"version":"","latest_timestamp":0,"metadata":{}}]}`,
				wantCall: &call{Method: "Instances"}},
		)
	}
	runGetCases(t, testConfig(), cases)
}

func TestFloat32Number(t *testing.T) {
	tests := []struct {
		in   float32
		want string
	}{
		{in: 1.8, want: "1.8"},
		{in: 0.3, want: "0.3"},
		{in: 1.6, want: "1.6"},
		{in: 0, want: "0"},
		{in: -2.5, want: "-2.5"},
		{in: 1e-7, want: "0.0000001"},
		{in: float32(math.NaN()), want: "0"},
		{in: float32(math.Inf(1)), want: "0"},
	}
	for _, tt := range tests {
		if got := float32Number(tt.in); string(got) != tt.want {
			t.Errorf("float32Number(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
