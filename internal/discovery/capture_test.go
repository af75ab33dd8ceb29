package discovery

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestCaptureTestdata records the real server's answers that
// TestDecodeCaptured decodes. It only runs when asked:
//
//	DISCOVERY_CAPTURE=1 go test -run TestCaptureTestdata ./internal/discovery
func TestCaptureTestdata(t *testing.T) {
	if os.Getenv("DISCOVERY_CAPTURE") == "" {
		t.Skip("set DISCOVERY_CAPTURE=1 to rewrite testdata/*.json from the embedded server")
	}
	addr := serverAddr(t)
	const app = "capture.app"
	save := func(name string, body []byte) {
		t.Logf("%s: %s", name, body)
		if err := os.WriteFile(filepath.Join("testdata", name), append(body, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	post := func(path string, form url.Values) []byte {
		return rawCall(t, addr, http.MethodPost, path, form, nil)
	}
	get := func(path string, form url.Values, h http.Header) []byte {
		return rawCall(t, addr, http.MethodGet, path, form, h)
	}
	reg := func(zone, host, addrs, md string) []byte {
		return post("/discovery/register", url.Values{
			"region": {"sh"}, "zone": {zone}, "env": {"dev"}, "appid": {app}, "hostname": {host},
			"addrs": {"grpc://127.0.0.1:" + addrs, "tcp://127.0.0.1:3101"}, "version": {"v3.0.0"},
			"status": {"1"}, "metadata": {md},
		})
	}
	save("register_ok.json", reg("sh001", "comet-1", "3109", `{"conn_count":"0","offline":"false"}`))
	save("register_noaddrs.json", post("/discovery/register", url.Values{
		"zone": {"sh001"}, "env": {"dev"}, "appid": {app}, "hostname": {"x"}, "status": {"1"},
	}))
	reg("sh002", "comet-2", "3209", `{"conn_count":"7"}`)
	save("fetch_ok.json", get("/discovery/fetch", url.Values{"env": {"dev"}, "appid": {app}, "status": {"1"}}, nil))
	save("fetch_notfound.json", get("/discovery/fetch", url.Values{"env": {"dev"}, "appid": {"no.such.app"}, "status": {"1"}}, nil))
	polled := get("/discovery/polls", url.Values{"env": {"dev"}, "hostname": {"capture"}, "appid": {app}, "latest_timestamp": {"0"}}, nil)
	save("polls_changed.json", polled)
	r, err := decodeReply(polled)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := decodePolls(r.Data, app)
	if err != nil {
		t.Fatal(err)
	}
	save("polls_notmodified.json", get("/discovery/polls", url.Values{
		"env": {"dev"}, "hostname": {"capture"}, "appid": {app}, "latest_timestamp": {strconv.FormatInt(snap.latest, 10)},
	}, http.Header{"X1-Bmspy-Timeout": {"300"}}))
	save("set_ok.json", post("/discovery/set", url.Values{
		"zone": {"sh001"}, "env": {"dev"}, "appid": {app}, "hostname": {"comet-1"}, "metadata": {`{"conn_count":"42"}`},
	}))
	save("set_notfound.json", post("/discovery/set", url.Values{
		"zone": {"sh001"}, "env": {"dev"}, "appid": {app}, "hostname": {"nobody"}, "metadata": {`{"conn_count":"42"}`},
	}))
	save("renew_ok.json", post("/discovery/renew", url.Values{"zone": {"sh001"}, "env": {"dev"}, "appid": {app}, "hostname": {"comet-1"}}))
	save("renew_notfound.json", post("/discovery/renew", url.Values{"zone": {"sh001"}, "env": {"dev"}, "appid": {app}, "hostname": {"nobody"}}))
	save("cancel_ok.json", post("/discovery/cancel", url.Values{"zone": {"sh001"}, "env": {"dev"}, "appid": {app}, "hostname": {"comet-1"}}))
	save("cancel_notfound.json", post("/discovery/cancel", url.Values{"zone": {"sh001"}, "env": {"dev"}, "appid": {app}, "hostname": {"comet-1"}}))
	save("fetch_after_set_cancel.json", get("/discovery/fetch", url.Values{"env": {"dev"}, "appid": {app}, "status": {"1"}}, nil))
}
