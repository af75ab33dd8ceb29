package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/testkit"
)

// testAPI checks every endpoint's success shape and the documented error
// answers (docs/push-api.md). The pushes here target nobody, so that
// the clients receive nothing from them.
func testAPI(t *testing.T, c *cluster) {
	// Pushes: exactly {"code":0,"message":"","data":{"msg_id":"<32 hex>"}},
	// even when every target is offline (goim v2 answers {"code":0}), with
	// an id of each push's own.
	ids := map[string]string{}
	for _, path := range []string{
		"/goim/push/keys?operation=1000&keys=nobody",
		"/goim/push/keys?operation=1000&keys=nobody1,nobody2&keys=nobody3",
		"/goim/push/mids?operation=1000&mids=999999",
		"/goim/push/mids?operation=1000&mids=999998,999999&mids=999997",
		"/goim/push/room?operation=1000&type=live&room=nobody",
		"/goim/push/all?operation=1999",
		"/goim/push/all?operation=1999&speed=10",
	} {
		r := mustDo(t, http.MethodPost, c.api+path, strings.NewReader("api"))
		e := r.envelope(t, "POST "+path, 0, true)
		if keys := objectKeys(t, e.Data); !slices.Equal(keys, []string{"msg_id"}) {
			t.Errorf("POST %s: data fields %q: %s", path, keys, r.body)
		}
		id, ok := testkit.PushAccepted(r.body)
		if !ok {
			t.Errorf("POST %s: %s, want %s", path, r.body, testkit.PushAnswerShape)
			continue
		}
		if other, dup := ids[id]; dup {
			t.Errorf("POST %s answered the msg_id of POST %s: %s", path, other, id)
		}
		ids[id] = path
	}

	// Online: field names and types (values are the online subtest's).
	r := mustDo(t, http.MethodGet, c.api+"/goim/online/total", nil)
	e := r.envelope(t, "online/total", 0, true)
	if keys := objectKeys(t, e.Data); !slices.Equal(keys, []string{"conn_count", "ip_count"}) {
		t.Errorf("online/total data fields %q: %s", keys, r.body)
	}
	testkit.WaitFor(t, 20*time.Second, func() error { // the comets' first reports
		r = mustDo(t, http.MethodGet, c.api+"/goim/online/top?type=live&limit=5", nil)
		e = r.envelope(t, "online/top", 0, true)
		var top []json.RawMessage
		if err := json.Unmarshal(e.Data, &top); err != nil {
			t.Fatalf("online/top data: %v: %s", err, r.body)
		}
		if len(top) == 0 {
			return fmt.Errorf("online/top: no room yet: %s", r.body)
		}
		for _, o := range top {
			if keys := objectKeys(t, o); !slices.Equal(keys, []string{"room_id", "count"}) {
				t.Errorf("online/top entry fields %q: %s", keys, r.body)
			}
		}
		return nil
	})
	r = mustDo(t, http.MethodGet, c.api+"/goim/online/top?type=nosuchtype&limit=5", nil)
	if r.envelope(t, "online/top", 0, true); string(r.body) != `{"code":0,"message":"","data":[]}` {
		t.Errorf("online/top of an empty type: %s", r.body)
	}
	r = mustDo(t, http.MethodGet, c.api+"/goim/online/room?type=live&rooms=nosuchroom", nil)
	if r.envelope(t, "online/room", 0, true); string(r.body) != `{"code":0,"message":"","data":{"nosuchroom":0}}` {
		t.Errorf("online/room of an unknown room: %s", r.body)
	}

	// Nodes: every field, in order, always present.
	r = mustDo(t, http.MethodGet, c.api+"/goim/nodes/weighted?platform=android", nil)
	e = r.envelope(t, "nodes/weighted", 0, true)
	if keys := objectKeys(t, e.Data); !slices.Equal(keys, []string{"domain", "tcp_port", "ws_port", "wss_port",
		"heartbeat", "heartbeat_max", "nodes", "backoff"}) {
		t.Errorf("nodes/weighted data fields %q: %s", keys, r.body)
	}
	var nd nodesData
	if err := json.Unmarshal(e.Data, &nd); err != nil {
		t.Fatal(err)
	}
	want := nodesData{Domain: "127.0.0.1", TCPPort: c.ports.tcp, WSPort: c.ports.ws, WSSPort: 3103,
		Heartbeat: int(heartbeat / time.Second), HeartbeatMax: 10, Nodes: nd.Nodes}
	if !equalNodes(nd, want) {
		t.Errorf("nodes/weighted: %+v, want %+v", nd, want)
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(e.Data, &raw)
	if string(raw["backoff"]) != `{"max_delay":300,"base_delay":3,"factor":1.8,"jitter":0.3}` {
		t.Errorf("nodes/weighted backoff %s", raw["backoff"])
	}

	// Instances, under both paths, once logic sees both comets.
	for _, path := range []string{"/goim/nodes/instances", "/nodes/instances"} {
		testkit.WaitFor(t, 20*time.Second, func() error {
			r := mustDo(t, http.MethodGet, c.api+path, nil)
			e := r.envelope(t, path, 0, true)
			var list []json.RawMessage
			if err := json.Unmarshal(e.Data, &list); err != nil {
				t.Fatalf("%s: %v: %s", path, err, r.body)
			}
			if len(list) != 2 {
				return fmt.Errorf("%s: %d instances: %s", path, len(list), r.body)
			}
			hosts := map[string]bool{}
			for _, raw := range list {
				if keys := objectKeys(t, raw); !slices.Equal(keys, []string{"region", "zone", "env", "appid",
					"hostname", "addrs", "version", "latest_timestamp", "metadata"}) {
					t.Errorf("%s: instance fields %q", path, keys)
				}
				var in struct {
					Env, AppID, Hostname string
					Addrs                []string
					Metadata             map[string]string
				}
				_ = json.Unmarshal(raw, &in)
				cm := c.comets[in.Hostname]
				if cm == nil {
					t.Fatalf("%s: unknown hostname %q", path, in.Hostname)
				}
				hosts[in.Hostname] = true
				wantAddrs := []string{"grpc://" + net.JoinHostPort(cm.ip, strconv.Itoa(c.ports.rpc))}
				if in.Env != c.env || in.AppID != "goim.comet" || !slices.Equal(in.Addrs, wantAddrs) {
					t.Errorf("%s: %s: env %q appid %q addrs %q, want %q goim.comet %q", path, in.Hostname,
						in.Env, in.AppID, in.Addrs, c.env, wantAddrs)
				}
				md := in.Metadata
				if keys := slices.Sorted(maps.Keys(md)); !slices.Equal(keys, []string{"addrs", "conn_count", "ip_count", "offline", "weight"}) {
					t.Errorf("%s: metadata keys %q", path, keys)
				}
				if md["addrs"] != cm.ip || md["offline"] != "false" || md["weight"] != "10" {
					t.Errorf("%s: %s metadata %v", path, in.Hostname, md)
				}
			}
			if len(hosts) != 2 {
				return fmt.Errorf("%s: hostnames %v", path, hosts)
			}
			return nil
		})
	}

	// -400: the first bad parameter is named, nothing is published.
	big := strings.Repeat("x", 4097)
	for _, tc := range []struct {
		name, path, body string
		chunked          bool   // send the body without a Content-Length
		param            string // the message starts with "<param>: "
		message          string // when set, the whole message
		connClose        bool   // the answer closes the connection
	}{
		{name: "keys without operation", path: "/goim/push/keys?keys=a", body: "m", param: "operation", message: "operation: required"},
		{name: "keys operation 0", path: "/goim/push/keys?operation=0&keys=a", body: "m", param: "operation"},
		{name: "keys operation negative", path: "/goim/push/keys?operation=-1&keys=a", body: "m", param: "operation"},
		{name: "keys operation not a number", path: "/goim/push/keys?operation=x&keys=a", body: "m", param: "operation"},
		{name: "keys operation out of int32", path: "/goim/push/keys?operation=2147483648&keys=a", body: "m", param: "operation"},
		{name: "keys operation twice", path: "/goim/push/keys?operation=1&operation=2&keys=a", body: "m", message: "operation: given 2 times, want once"},
		{name: "keys without keys", path: "/goim/push/keys?operation=1000", body: "m", param: "keys"},
		{name: "keys empty", path: "/goim/push/keys?operation=1000&keys=", body: "m", param: "keys"},
		{name: "keys empty element", path: "/goim/push/keys?operation=1000&keys=a,,b", body: "m", param: "keys"},
		{name: "keys empty body", path: "/goim/push/keys?operation=1000&keys=a", body: "", message: "body: empty message"},
		{name: "keys empty chunked body", path: "/goim/push/keys?operation=1000&keys=a", body: "", chunked: true, message: "body: empty message"},
		{name: "keys oversized body", path: "/goim/push/keys?operation=1000&keys=a", body: big, param: "body", connClose: true},
		{name: "keys oversized chunked body", path: "/goim/push/keys?operation=1000&keys=a", body: big, chunked: true, param: "body", connClose: true},
		{name: "keys bad query escape", path: "/goim/push/keys?operation=1000&keys=%zz", body: "m", param: "query"},
		{name: "mids without mids", path: "/goim/push/mids?operation=1000", body: "m", param: "mids"},
		{name: "mids not a number", path: "/goim/push/mids?operation=1000&mids=1,x", body: "m", message: `mids: "x" at position 2 is not an integer`},
		{name: "mids zero", path: "/goim/push/mids?operation=1000&mids=0", body: "m", param: "mids"},
		{name: "mids negative", path: "/goim/push/mids?operation=1000&mids=-5", body: "m", param: "mids"},
		{name: "mids out of int64", path: "/goim/push/mids?operation=1000&mids=9223372036854775808", body: "m", param: "mids"},
		{name: "mids without operation", path: "/goim/push/mids?mids=1", body: "m", param: "operation"},
		{name: "mids empty body", path: "/goim/push/mids?operation=1000&mids=1", body: "", param: "body"},
		{name: "room without type", path: "/goim/push/room?operation=1000&room=1", body: "m", param: "type"},
		{name: "room type with ://", path: "/goim/push/room?operation=1000&type=live://x&room=1", body: "m", param: "type"},
		{name: "room without room", path: "/goim/push/room?operation=1000&type=live", body: "m", param: "room"},
		{name: "room without operation", path: "/goim/push/room?type=live&room=1", body: "m", param: "operation"},
		{name: "room oversized body", path: "/goim/push/room?operation=1000&type=live&room=1", body: big, param: "body", connClose: true},
		{name: "all without operation", path: "/goim/push/all", body: "m", param: "operation"},
		{name: "all negative speed", path: "/goim/push/all?operation=1000&speed=-1", body: "m", param: "speed"},
		{name: "all speed not a number", path: "/goim/push/all?operation=1000&speed=x", body: "m", param: "speed"},
		{name: "all empty body", path: "/goim/push/all?operation=1000", body: "", param: "body"},
		{name: "top without type", path: "/goim/online/top?limit=5", param: "type"},
		{name: "top without limit", path: "/goim/online/top?type=live", param: "limit"},
		{name: "top limit 0", path: "/goim/online/top?type=live&limit=0", param: "limit"},
		{name: "top limit 1001", path: "/goim/online/top?type=live&limit=1001", param: "limit"},
		{name: "top limit negative", path: "/goim/online/top?type=live&limit=-1", param: "limit"},
		{name: "top limit not a number", path: "/goim/online/top?type=live&limit=x", param: "limit"},
		{name: "top type with ://", path: "/goim/online/top?type=a://b&limit=5", param: "type"},
		{name: "room counts without type", path: "/goim/online/room?rooms=1", param: "type"},
		{name: "room counts without rooms", path: "/goim/online/room?type=live", param: "rooms"},
		{name: "room counts empty element", path: "/goim/online/room?type=live&rooms=1,,2", param: "rooms"},
		{name: "nodes platform twice", path: "/goim/nodes/weighted?platform=web&platform=ios", param: "platform"},
	} {
		method := http.MethodGet
		if strings.HasPrefix(tc.path, "/goim/push/") {
			method = http.MethodPost
		}
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader(tc.body)
			if tc.chunked { // a reader of unknown length: net/http sends it chunked
				body = io.MultiReader(strings.NewReader(tc.body))
			}
		}
		r := mustDo(t, method, c.api+tc.path, body)
		e := r.envelope(t, tc.name, -400, false)
		switch {
		case tc.message != "" && e.Message != tc.message:
			t.Errorf("%s: message %q, want %q", tc.name, e.Message, tc.message)
		case tc.message == "" && !strings.HasPrefix(e.Message, tc.param+": "):
			t.Errorf("%s: message %q, want it about %s", tc.name, e.Message, tc.param)
		}
		if tc.connClose && !r.close {
			t.Errorf("%s: no Connection: close on the answer", tc.name)
		}
	}

	// -404 and -405: JSON envelopes; 405 names the allowed method.
	for _, tc := range []struct {
		method, path, allow, message string
	}{
		{method: "GET", path: "/goim/x", message: "no such endpoint: GET /goim/x"},
		{method: "POST", path: "/goim/push/keys/", message: "no such endpoint: POST /goim/push/keys/"},
		{method: "GET", path: "/", message: "no such endpoint: GET /"},
		{method: "GET", path: "/goim/push/keys", allow: "POST", message: "method GET not allowed on /goim/push/keys; use POST"},
		{method: "PUT", path: "/goim/push/all", allow: "POST"},
		{method: "POST", path: "/goim/online/total", allow: "GET"},
		{method: "DELETE", path: "/goim/nodes/instances", allow: "GET"},
		{method: "HEAD", path: "/goim/nodes/weighted", allow: "GET"},
	} {
		what := tc.method + " " + tc.path
		r := mustDo(t, tc.method, c.api+tc.path, nil)
		code := -404
		if tc.allow != "" {
			code = -405
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Errorf("%s: Allow %q, want %q", what, got, tc.allow)
			}
		}
		if tc.method == http.MethodHead { // no body: the status says it
			if r.status != http.StatusMethodNotAllowed || len(r.body) != 0 {
				t.Errorf("%s: %d %q, want 405 without a body", what, r.status, r.body)
			}
			continue
		}
		e := r.envelope(t, what, code, false)
		if tc.message != "" && e.Message != tc.message {
			t.Errorf("%s: message %q, want %q", what, e.Message, tc.message)
		}
	}
}

func equalNodes(a, b nodesData) bool {
	return a.Domain == b.Domain && a.TCPPort == b.TCPPort && a.WSPort == b.WSPort && a.WSSPort == b.WSSPort &&
		a.Heartbeat == b.Heartbeat && a.HeartbeatMax == b.HeartbeatMax && slices.Equal(a.Nodes, b.Nodes)
}
