package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// nopService accepts every push and does nothing, so that a benchmark
// measures the API alone.
type nopService struct{ fakeService }

func (*nopService) PushKeys(context.Context, int32, []string, []byte) (string, error) {
	return fakeMsgID, nil
}

// discardWriter is a reusable http.ResponseWriter that keeps the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// rewindBody is a request body that can be rewound for the next iteration.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// BenchmarkPushKeys measures the API's own cost per push: routing, auth,
// query parsing, body reading, metrics, the JSON answer. The service does
// nothing.
func BenchmarkPushKeys(b *testing.B) {
	cfg := testConfig()
	cfg.Tokens = []string{testToken}
	s, err := New(cfg, &nopService{}, Deps{Registry: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	msg := bytes.Repeat([]byte("m"), 512)
	body := &rewindBody{}
	u, err := url.Parse("http://logic/goim/push/keys?operation=1000&keys=6f1c2a3e-key-one,8d2e4b5f-key-two&keys=9e3f5c6a-key-three")
	if err != nil {
		b.Fatal(err)
	}
	req := &http.Request{
		Method: http.MethodPost, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:     http.Header{"Authorization": {"Bearer " + testToken}, "Content-Type": {"application/octet-stream"}},
		Body:       body,
		Host:       "logic",
		RemoteAddr: "192.0.2.1:1234",
	}
	req = req.WithContext(context.Background())
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		body.Reset(msg)
		req.ContentLength = int64(len(msg))
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}
