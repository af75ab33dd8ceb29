package client_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/goim/goim/client"
)

// TestFetchNodesAnswers: absurd hints are normalized, missing ports give
// no addresses, and answers that are not nodes are *NodesErrors.
func TestFetchNodesAnswers(t *testing.T) {
	var answer string
	status := 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/goim/nodes/weighted" || r.URL.Query().Get("platform") != "ios" {
			t.Errorf("request %s", r.URL)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	defer srv.Close()
	answer = `{"code":0,"data":{"tcp_port":3101,"ws_port":0,"wss_port":70000,"heartbeat":-5,"heartbeat_max":2,"nodes":["10.0.0.1","::1"],` +
		`"backoff":{"max_delay":1e12,"base_delay":-1,"factor":0.2,"jitter":9}}}`
	n, err := client.FetchNodes(t.Context(), srv.Client(), srv.URL+"/", "ios")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(n.TCP, []string{"10.0.0.1:3101", "[::1]:3101"}) || n.WS != nil || n.WSS != nil || n.Heartbeat != 0 {
		t.Fatalf("nodes %+v", n)
	}
	if want := (client.Backoff{Base: 3 * time.Second, Max: 300 * time.Second, Factor: 1, Jitter: 1}); n.Backoff != want {
		t.Fatalf("backoff %+v, want %+v", n.Backoff, want)
	}
	answer = `{"code":0,"data":{"tcp_port":3101,"nodes":["h"]}}` // no backoff hint: the default
	if n, err = client.FetchNodes(t.Context(), srv.Client(), srv.URL, "ios"); err != nil || n.Backoff != client.DefaultBackoff {
		t.Fatalf("no hint: %+v, %v", n, err)
	}
	var ne *client.NodesError
	for _, tc := range []struct {
		status int
		answer string
		code   int
	}{
		{200, `{"code":0,"data":{"tcp_port":3101,"nodes":[]}}`, 0},
		{200, `<html>`, 0},
		{503, `{"code":-503,"message":"draining"}`, -503},
		{200, `{"code":-400,"message":"bad platform"}`, -400},
	} {
		status, answer = tc.status, tc.answer
		_, err := client.FetchNodes(t.Context(), srv.Client(), srv.URL, "ios")
		if !errors.As(err, &ne) || ne.Status != tc.status || ne.Code != tc.code {
			t.Fatalf("%d %s: %v", tc.status, tc.answer, err)
		}
	}
	if _, err := client.FetchNodes(t.Context(), nil, "http://127.0.0.1:1", "ios"); err == nil || errors.As(err, &ne) {
		t.Fatalf("no server: %v", err)
	}
}
