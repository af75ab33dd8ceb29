package webclient_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/goim/goim/internal/webclient"
)

func TestHandler(t *testing.T) {
	h := webclient.Handler()
	src := webclient.Source()

	t.Run("get", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/goim.js", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		for name, want := range map[string]string{
			"Content-Type":                "text/javascript; charset=utf-8",
			"Access-Control-Allow-Origin": "*",
			"X-Content-Type-Options":      "nosniff",
			"Cache-Control":               "no-cache",
		} {
			if got := rec.Header().Get(name); got != want {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
		if etag := rec.Header().Get("ETag"); len(etag) < 10 || !strings.HasPrefix(etag, `"`) {
			t.Errorf("ETag %q", etag)
		}
		if !bytes.Equal(rec.Body.Bytes(), src) {
			t.Fatalf("body is %d bytes, not the module's %d", rec.Body.Len(), len(src))
		}
		for _, export := range []string{
			"export class Client", "export const Op", "export function encodeFrame", "export function decodeFrames",
			"export function backoffDelay", "export async function fetchNodes",
		} {
			if !bytes.Contains(src, []byte(export)) {
				t.Errorf("module lacks %q", export)
			}
		}
		// Dependency-free: no static or dynamic import.
		if m := regexp.MustCompile(`(?m)^\s*import\b|\bimport\(|\brequire\(`).Find(src); m != nil {
			t.Errorf("module imports: %q", m)
		}
	})

	t.Run("conditional", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/goim.js", nil))
		req := httptest.NewRequest(http.MethodGet, "/goim.js", nil)
		req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
		rec2 := httptest.NewRecorder()
		h.ServeHTTP(rec2, req)
		if rec2.Code != http.StatusNotModified || rec2.Body.Len() != 0 {
			t.Fatalf("If-None-Match: status %d, %d body bytes", rec2.Code, rec2.Body.Len())
		}
	})

	t.Run("head", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/goim.js", nil))
		if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "text/javascript; charset=utf-8" {
			t.Fatalf("status %d, %d body bytes, headers %v", rec.Code, rec.Body.Len(), rec.Header())
		}
	})

	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		t.Run(method, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, "/goim.js", strings.NewReader("x")))
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
				t.Fatalf("status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
			}
		})
	}
}
