package e2e

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testAPISecure checks the push API's credentials and input bounds
// against the logic process: no credential, a wrong one or a read-scope
// one on a push publishes nothing and is counted; the online and
// instances endpoints need a credential, /goim/nodes/weighted none; too
// many keys or mids, a speed out of range and long or odd room ids get
// -400 naming the bound.
func testAPISecure(t *testing.T, c *cluster, cs *clients) {
	const room = "/goim/push/room?operation=1000&type=live&room=1000"
	failures0, err := metric(c.logicAdmin, "goim_logic_http_auth_failures_total")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path, auth string
		code                     int
		challenge                string // WWW-Authenticate
	}{
		{name: "push without a credential", method: http.MethodPost, path: room, code: -401, challenge: `Bearer realm="goim"`},
		{name: "push with a wrong token", method: http.MethodPost, path: room, auth: "Bearer wrong-token-0123456789abcdef",
			code: -401, challenge: `Bearer realm="goim", error="invalid_token"`},
		{name: "push with a read token", method: http.MethodPost, path: room, auth: "Bearer " + readToken,
			code: -403, challenge: `Bearer realm="goim", error="insufficient_scope"`},
		{name: "broadcast without a credential", method: http.MethodPost, path: "/goim/push/all?operation=1000", code: -401, challenge: `Bearer realm="goim"`},
		{name: "online without a credential", method: http.MethodGet, path: "/goim/online/total", code: -401, challenge: `Bearer realm="goim"`},
		{name: "instances without a credential", method: http.MethodGet, path: "/goim/nodes/instances", code: -401, challenge: `Bearer realm="goim"`},
		{name: "instances alias without a credential", method: http.MethodGet, path: "/nodes/instances", code: -401, challenge: `Bearer realm="goim"`},
		{name: "online with a read token", method: http.MethodGet, path: "/goim/online/room?type=live&rooms=1000", auth: "Bearer " + readToken},
		{name: "instances with a read token", method: http.MethodGet, path: "/goim/nodes/instances", auth: "Bearer " + readToken},
		{name: "weighted without a credential", method: http.MethodGet, path: "/goim/nodes/weighted?platform=web"},
	} {
		var body io.Reader
		if tc.method == http.MethodPost {
			body = strings.NewReader("secure:refused")
		}
		r, err := do(tc.method, c.api+tc.path, body, http.Header{"Authorization": {tc.auth}})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		r.envelope(t, tc.name, tc.code, tc.code == 0)
		if got := r.header.Get("WWW-Authenticate"); got != tc.challenge {
			t.Errorf("%s: WWW-Authenticate %q, want %q", tc.name, got, tc.challenge)
		}
	}
	if n, err := metric(c.logicAdmin, "goim_logic_http_auth_failures_total"); err != nil || n-failures0 != 7 {
		t.Errorf("goim_logic_http_auth_failures_total rose by %v (%v), want 7", n-failures0, err)
	}
	// The refused pushes published nothing: the room's members get the
	// authorised push that follows them, and only that.
	members := []*client{cs.c1t, cs.c1w, cs.c2w}
	start := marks(members...)
	pushOK(t, c.api+room, "secure:ok")
	for i, cl := range members {
		cl.waitBodies(t, "secure:", 1, 20*time.Second)
		only(t, cl, start[i], "secure:ok")
	}

	// Bounds: -400 naming the parameter; nothing is published.
	list := func(prefix string, n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(prefix + strconv.Itoa(i+1))
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, path string
		code       int
		message    string // the whole message, or "<param>: " it starts with
	}{
		{name: "1000 keys", path: "/goim/push/keys?operation=1000&keys=" + list("nobody-", 1000)},
		{name: "1001 keys", path: "/goim/push/keys?operation=1000&keys=" + list("nobody-", 1001), code: -400,
			message: "keys: 1001 distinct values, at most 1000 (http.max_keys)"},
		{name: "1001 mids", path: "/goim/push/mids?operation=1000&mids=" + list("9000", 1001), code: -400,
			message: "mids: 1001 distinct values, at most 1000 (http.max_mids)"},
		{name: "speed over the bound", path: "/goim/push/all?operation=1999&speed=1000001", code: -400,
			message: "speed: must be 0..1000000, got 1000001"},
		{name: "room id of 129 bytes", path: "/goim/push/room?operation=1000&type=live&room=" + strings.Repeat("r", 122), code: -400, message: "room: "},
		{name: "room id of 4 KB", path: "/goim/push/room?operation=1000&type=live&room=" + strings.Repeat("r", 4096), code: -400, message: "room: "},
		{name: "room id with a space", path: "/goim/push/room?operation=1000&type=live&room=a%20b", code: -400, message: "room: "},
		{name: "room id with markup", path: "/goim/push/room?operation=1000&type=live&room=%3Cscript%3E", code: -400, message: "room: "},
		{name: "room id not ASCII", path: "/goim/push/room?operation=1000&type=live&room=%E2%9C%93", code: -400, message: "room: "},
		{name: "room type with a quote", path: "/goim/push/room?operation=1000&type=li%22ve&room=1", code: -400, message: "type: "},
		{name: "online room id too long", path: "/goim/online/room?type=live&rooms=1," + strings.Repeat("r", 122), code: -400, message: "rooms: "},
		{name: "online top odd type", path: "/goim/online/top?type=%00&limit=5", code: -400, message: "type: "},
	} {
		method, body := http.MethodGet, io.Reader(nil)
		if strings.HasPrefix(tc.path, "/goim/push/") {
			method, body = http.MethodPost, strings.NewReader("secure:bounds")
		}
		r, err := do(method, c.api+tc.path, body, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.code == 0 {
			r.pushAccepted(t, tc.name)
			continue
		}
		e := r.envelope(t, tc.name, tc.code, false)
		if !strings.HasPrefix(e.Message, tc.message) {
			t.Errorf("%s: message %q, want %q", tc.name, e.Message, tc.message)
		}
	}
}
