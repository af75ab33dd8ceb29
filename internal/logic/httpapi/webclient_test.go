package httpapi

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/goim/goim/internal/webclient"
)

// TestWebClient: /goim.js is the browser client module, public, served to
// GET and HEAD while draining too, not counted as an endpoint; other
// methods get the API's 405.
func TestWebClient(t *testing.T) {
	s, _ := newTestServer(t, testConfig(), &fakeService{})
	h := s.Handler()
	s.SetDraining()
	src := string(webclient.Source())
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		got := serve(t, h, method, "/goim.js", nil, "Authorization", "") // no credential
		if got.status != http.StatusOK || got.header.Get("Content-Type") != "text/javascript; charset=utf-8" ||
			got.header.Get("Access-Control-Allow-Origin") != "*" || got.header.Get("ETag") == "" {
			t.Fatalf("%s /goim.js: %d %v", method, got.status, got.header)
		}
		want := src
		if method == http.MethodHead {
			want = ""
		}
		if got.body != want {
			t.Errorf("%s /goim.js: %d body bytes, want %d", method, len(got.body), len(want))
		}
	}
	got := serve(t, h, http.MethodPost, "/goim.js", []byte("x"))
	if got.status != http.StatusMethodNotAllowed || got.header.Get("Allow") == "" {
		t.Errorf("POST /goim.js: %d, Allow %q", got.status, got.header.Get("Allow"))
	}
	// The GETs and HEADs are not counted (the 405 is, like any).
	if c := testutil.ToFloat64(s.metrics.requests.WithLabelValues("/goim.js", "0")); c != 0 {
		t.Errorf("/goim.js counted: %v", c)
	}
	// A page cannot take its path.
	if _, err := New(testConfig(), &fakeService{}, Deps{Pages: map[string]http.Handler{"/goim.js": http.NotFoundHandler()}}); err == nil {
		t.Error("New accepted a page at /goim.js")
	}
}
