package httpapi

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

type getCase struct {
	name       string
	svc        *fakeService // nil: an empty one
	target     string
	header     []string // name, value pairs
	wantStatus int
	wantBody   string
	wantCall   *call // nil: the service must not be called
}

func runGetCases(t *testing.T, cfg Config, cases []getCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := tc.svc
			if svc == nil {
				svc = &fakeService{}
			}
			s, _ := newTestServer(t, cfg, svc)
			got := serve(t, s.Handler(), http.MethodGet, tc.target, nil, tc.header...)
			checkResponse(t, got, tc.wantStatus, tc.wantBody)
			calls := svc.Calls()
			switch {
			case tc.wantCall == nil && len(calls) != 0:
				t.Errorf("service called: %+v", calls)
			case tc.wantCall != nil && len(calls) != 1:
				t.Errorf("service calls = %+v, want one %+v", calls, *tc.wantCall)
			case tc.wantCall != nil && !reflect.DeepEqual(calls[0], *tc.wantCall):
				t.Errorf("service call:\n got %+v\nwant %+v", calls[0], *tc.wantCall)
			}
		})
	}
}

func TestOnlineTop(t *testing.T) {
	const path = "/goim/online/top"
	top := []RoomCount{{RoomID: "1000", Count: 100}, {RoomID: "2000", Count: 50}, {RoomID: "3000", Count: 1}}
	runGetCases(t, testConfig(), []getCase{
		{name: "type missing", target: path + "?limit=10", wantStatus: 400, wantBody: badJSON("type: required")},
		{name: "type with separator", target: path + "?type=live://&limit=10", wantStatus: 400, wantBody: badJSON(`type: must not contain "://"`)},
		{name: "type with a space", target: path + "?type=li%20ve&limit=10", wantStatus: 400,
			wantBody: badJSON(`type: room id "li ve://" is invalid: byte 2 (0x20) is not allowed` + roomRule)},
		{name: "type too long for any room", target: path + "?type=" + strings.Repeat("t", 126) + "&limit=10", wantStatus: 400,
			wantBody: badJSON(`type: room id "` + strings.Repeat("t", 64) + `"... is invalid: 129 bytes, at most 128` + roomRule)},
		{name: "limit missing", target: path + "?type=live", wantStatus: 400, wantBody: badJSON("limit: required")},
		{name: "limit empty", target: path + "?type=live&limit=", wantStatus: 400, wantBody: badJSON("limit: required")},
		{name: "limit zero", target: path + "?type=live&limit=0", wantStatus: 400, wantBody: badJSON("limit: must be 1..1000, got 0")},
		{name: "limit negative", target: path + "?type=live&limit=-1", wantStatus: 400, wantBody: badJSON("limit: must be 1..1000, got -1")},
		{name: "limit over max", target: path + "?type=live&limit=1001", wantStatus: 400, wantBody: badJSON("limit: must be 1..1000, got 1001")},
		{name: "limit not integer", target: path + "?type=live&limit=ten", wantStatus: 400, wantBody: badJSON(`limit: "ten" is not an integer`)},
		{name: "limit twice", target: path + "?type=live&limit=1&limit=2", wantStatus: 400, wantBody: badJSON("limit: given 2 times, want once")},
		{name: "query bad escape", target: path + "?type=%&limit=1", wantStatus: 400, wantBody: badJSON(`query: invalid URL escape "%"`)},
		{name: "empty is [] not null", target: path + "?type=live&limit=1000", wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":[]}`,
			wantCall: &call{Method: "OnlineTop", Type: "live", Limit: 1000}},
		{name: "rooms", svc: &fakeService{top: top}, target: path + "?type=live&limit=3", wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":[{"room_id":"1000","count":100},{"room_id":"2000","count":50},{"room_id":"3000","count":1}]}`,
			wantCall: &call{Method: "OnlineTop", Type: "live", Limit: 3}},
		{name: "at most limit even if the service returns more", svc: &fakeService{top: top}, target: path + "?type=live&limit=1", wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":[{"room_id":"1000","count":100}]}`,
			wantCall: &call{Method: "OnlineTop", Type: "live", Limit: 1}},
	})
}

func TestOnlineRoom(t *testing.T) {
	const path = "/goim/online/room"
	runGetCases(t, testConfig(), []getCase{
		{name: "type missing", target: path + "?rooms=1", wantStatus: 400, wantBody: badJSON("type: required")},
		{name: "rooms missing", target: path + "?type=live", wantStatus: 400,
			wantBody: badJSON("rooms: required (repeat rooms=... or separate with commas)")},
		{name: "rooms empty element", target: path + "?type=live&rooms=1&rooms=,2", wantStatus: 400, wantBody: badJSON("rooms: empty value at position 2")},
		{name: "room with a quote", target: path + "?type=live&rooms=1,a%22b", wantStatus: 400,
			wantBody: badJSON(`rooms: room id "live://a\"b" is invalid: byte 8 (0x22) is not allowed` + roomRule)},
		{name: "room too long", target: path + "?type=live&rooms=1," + strings.Repeat("r", 122), wantStatus: 400,
			wantBody: badJSON(`rooms: room id "live://` + strings.Repeat("r", 57) + `"... is invalid: 129 bytes, at most 128` + roomRule)},
		{name: "type with a quote", target: path + "?type=%22&rooms=1", wantStatus: 400,
			wantBody: badJSON(`type: room id "\"://" is invalid: byte 0 (0x22) is not allowed` + roomRule)},
		{name: "counts, unknown room 0, sorted keys", svc: &fakeService{rooms: map[string]int32{"1000": 100, "2000": 200, "other": 5}},
			target: path + "?type=live&rooms=2000,1000&rooms=3000&rooms=1000", wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"1000":100,"2000":200,"3000":0}}`,
			wantCall: &call{Method: "OnlineRoom", Type: "live", Rooms: []string{"2000", "1000", "3000"}}},
		{name: "nil map from the service", target: path + "?type=live&rooms=1", wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"1":0}}`,
			wantCall: &call{Method: "OnlineRoom", Type: "live", Rooms: []string{"1"}}},
	})
}

func TestOnlineTotal(t *testing.T) {
	runGetCases(t, testConfig(), []getCase{
		{name: "zero", target: "/goim/online/total", wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"conn_count":0,"ip_count":0}}`,
			wantCall: &call{Method: "OnlineTotal"}},
		{name: "counts, query ignored", svc: &fakeService{conns: 12345678901, ips: 3}, target: "/goim/online/total?x=%zz", wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"conn_count":12345678901,"ip_count":3}}`,
			wantCall: &call{Method: "OnlineTotal"}},
	})
}

// exampleComets is the /goim/online/comets example of docs/push-api.md:
// a registered comet that reported 1.5 s ago and a draining one that
// reports without being registered.
func exampleComets() []Comet {
	return []Comet{
		{Hostname: "comet-1", Region: "sh", Zone: "sh001", Addrs: []string{"47.89.10.97"}, RPCAddrs: []string{"grpc://192.168.1.30:3109"},
			Weight: 10, ConnCount: 1200, IPCount: 950, Registered: true, Reported: true, ReportAge: 1500*time.Millisecond + 999*time.Microsecond},
		{Hostname: "comet-2", Weight: 10, ConnCount: 3, IPCount: 1, Draining: true, Reported: true, ReportAge: 0},
	}
}

func TestOnlineComets(t *testing.T) {
	const path = "/goim/online/comets"
	runGetCases(t, testConfig(), []getCase{
		{name: "none, without discovery", target: path, wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"discovery":false,"comets":[]}}`,
			wantCall: &call{Method: "Comets"}},
		{name: "example, query ignored", svc: &fakeService{comets: exampleComets(), withDiscovery: true}, target: path + "?x=%zz", wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"discovery":true,"comets":[` +
				`{"hostname":"comet-1","region":"sh","zone":"sh001","addrs":["47.89.10.97"],"rpc_addrs":["grpc://192.168.1.30:3109"],` +
				`"weight":10,"conn_count":1200,"ip_count":950,"draining":false,"registered":true,"report_age_ms":1500},` +
				`{"hostname":"comet-2","region":"","zone":"","addrs":[],"rpc_addrs":[],` +
				`"weight":10,"conn_count":3,"ip_count":1,"draining":true,"registered":false,"report_age_ms":0}]}}`,
			wantCall: &call{Method: "Comets"}},
		{name: "registered, never reported: age null", svc: &fakeService{withDiscovery: true,
			comets: []Comet{{Hostname: "c", Addrs: []string{"10.0.0.1"}, Weight: 5, Registered: true, ReportAge: time.Hour}}},
			target: path, wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"discovery":true,"comets":[` +
				`{"hostname":"c","region":"","zone":"","addrs":["10.0.0.1"],"rpc_addrs":[],` +
				`"weight":5,"conn_count":0,"ip_count":0,"draining":false,"registered":true,"report_age_ms":null}]}}`,
			wantCall: &call{Method: "Comets"}},
	})
}

// TestOnlineCometsAccess: the comets endpoint takes a read or full token
// (the same data class as /goim/nodes/instances: internal addresses and
// load), is open with an anonymous API, and answers 503 while draining
// like the other online endpoints.
func TestOnlineCometsAccess(t *testing.T) {
	const (
		path      = "/goim/online/comets"
		readToken = "read-only-token-0123456789"
		empty     = `{"code":0,"message":"","data":{"discovery":false,"comets":[]}}`
	)
	cfg := testConfig()
	cfg.ReadTokens = []string{readToken}
	s, _ := newTestServer(t, cfg, &fakeService{})
	for _, tt := range []struct {
		name, auth string
		status     int
		body       string
	}{
		{name: "no token", status: 401, body: `{"code":-401,"message":"missing bearer token: send \"Authorization: Bearer \u003ctoken\u003e\""}`},
		{name: "wrong token", auth: "Bearer " + readToken + "x", status: 401, body: `{"code":-401,"message":"invalid bearer token"}`},
		{name: "read token", auth: "Bearer " + readToken, status: 200, body: empty},
		{name: "full token", auth: bearer, status: 200, body: empty},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkResponse(t, serve(t, s.Handler(), http.MethodGet, path, nil, "Authorization", tt.auth), tt.status, tt.body)
		})
	}
	t.Run("POST", func(t *testing.T) {
		got := serve(t, s.Handler(), http.MethodPost, path, []byte("m"))
		checkResponse(t, got, 405, `{"code":-405,"message":"method POST not allowed on /goim/online/comets; use GET"}`)
	})

	anon := testConfig()
	anon.Tokens, anon.AllowAnonymous = nil, true
	sa, _ := newTestServer(t, anon, &fakeService{})
	checkResponse(t, serve(t, sa.Handler(), http.MethodGet, path, nil, "Authorization", ""), 200, empty)

	s.SetDraining()
	checkResponse(t, serve(t, s.Handler(), http.MethodGet, path, nil), 503, `{"code":-500,"message":"logic is shutting down"}`)
}
