package bench

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestResolveNodes(t *testing.T) {
	answer := `{"code":0,"message":"","data":{"tcp_port":3101,"ws_port":3102,"nodes":["127.0.0.1","127.0.0.2"]}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/goim/nodes/weighted" || r.URL.Query().Get("platform") != "android" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"code":-404,"message":"no such endpoint"}`)
			return
		}
		_, _ = io.WriteString(w, answer)
	}))
	defer srv.Close()
	ctx := t.Context()
	got, err := ResolveNodes(ctx, srv.URL, TransportWS, "android", false)
	if err != nil || !slices.Equal(got, []string{"127.0.0.1:3102", "127.0.0.2:3102"}) {
		t.Fatalf("ws nodes %v, %v", got, err)
	}
	if got, err = ResolveNodes(ctx, srv.URL+"/", TransportTCP, "android", false); err != nil || got[0] != "127.0.0.1:3101" {
		t.Fatalf("tcp nodes %v, %v", got, err)
	}
	if _, err = ResolveNodes(ctx, srv.URL, TransportTCP, "web", false); err == nil {
		t.Fatal("a 404 answer gave nodes")
	}
	answer = `{"code":0,"message":"","data":{"tcp_port":3101,"ws_port":3102,"nodes":[]}}`
	if _, err = ResolveNodes(ctx, srv.URL, TransportTCP, "android", false); err == nil {
		t.Fatal("no nodes, no error")
	}
	if _, err = ResolveNodes(ctx, "http://192.0.2.1:3111", TransportTCP, "web", false); !errors.Is(err, ErrRemote) {
		t.Fatalf("remote API: %v", err)
	}
}
