package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/goim/goim/internal/console"
)

// TestConsoleRoutes: the console's static files are public on a
// credential-protected API (the shell holds no data; the page sends the
// operator's token to the endpoints), served while draining, to GET and
// HEAD only; a page cannot take their paths.
func TestConsoleRoutes(t *testing.T) {
	s, _ := newTestServer(t, testConfig(), &fakeService{})
	types := map[string]string{
		console.PagePath:   "text/html; charset=utf-8",
		console.ScriptPath: "text/javascript; charset=utf-8",
		console.StylePath:  "text/css; charset=utf-8",
	}
	for _, path := range console.Paths {
		for _, draining := range []bool{false, true} {
			if draining {
				s.SetDraining()
			}
			got := serve(t, s.Handler(), http.MethodGet, path, nil, "Authorization", "")
			if got.status != 200 || got.header.Get("Content-Type") != types[path] || got.body == "" ||
				got.header.Get("Content-Security-Policy") != console.Policy {
				t.Errorf("GET %s (draining %v) without a token: %d %v", path, draining, got.status, got.header)
			}
			if got := serve(t, s.Handler(), http.MethodHead, path, nil, "Authorization", ""); got.status != 200 || got.body != "" {
				t.Errorf("HEAD %s: %d %q", path, got.status, got.body)
			}
		}
		got := serve(t, s.Handler(), http.MethodPost, path, []byte("x"))
		checkResponse(t, got, 405, `{"code":-405,"message":"method POST not allowed on `+path+`; use GET or HEAD"}`)
	}
	checkResponse(t, serve(t, s.Handler(), http.MethodGet, "/console/", nil), 404, `{"code":-404,"message":"no such endpoint: GET /console/"}`)

	for _, path := range console.Paths {
		_, err := New(testConfig(), &fakeService{}, Deps{Pages: map[string]http.Handler{path: console.Handler()}})
		if err == nil || !strings.Contains(err.Error(), "console") {
			t.Errorf("page at %s: %v, want refused", path, err)
		}
	}
}
