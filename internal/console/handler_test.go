package console_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goim/goim/internal/console"
)

// get serves one request through console.Handler.
func get(t *testing.T, method, target string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	console.Handler().ServeHTTP(rec, req)
	return rec
}

// checkSecurityHeaders checks the headers every console response has.
func checkSecurityHeaders(t *testing.T, h http.Header) {
	t.Helper()
	for name, want := range map[string]string{
		"Content-Security-Policy": console.Policy,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"X-Frame-Options":         "DENY",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

// TestPolicy: the policy is strict: nothing inline, nothing from elsewhere
// (connections to the API and to comets only), no framing.
func TestPolicy(t *testing.T) {
	for _, want := range []string{
		"default-src 'none'",
		"script-src 'self'",
		"style-src 'self'",
		"connect-src 'self' ws: wss:",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	} {
		if !slices.Contains(strings.Split(console.Policy, "; "), want) {
			t.Errorf("policy %q lacks %q", console.Policy, want)
		}
	}
	for _, bad := range []string{"unsafe", "*", "http:", "https:"} {
		if strings.Contains(console.Policy, bad) {
			t.Errorf("policy %q contains %q", console.Policy, bad)
		}
	}
}

func TestHandler(t *testing.T) {
	files := map[string]string{
		console.PagePath:   "text/html; charset=utf-8",
		console.ScriptPath: "text/javascript; charset=utf-8",
		console.StylePath:  "text/css; charset=utf-8",
	}
	if len(console.Paths) != len(files) {
		t.Fatalf("Paths %v", console.Paths)
	}
	for _, path := range console.Paths {
		t.Run(path, func(t *testing.T) {
			rec := get(t, http.MethodGet, path+"?x=1")
			if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
				t.Fatalf("GET: %d, %d bytes", rec.Code, rec.Body.Len())
			}
			checkSecurityHeaders(t, rec.Header())
			if ct := rec.Header().Get("Content-Type"); ct != files[path] {
				t.Errorf("Content-Type %q, want %q", ct, files[path])
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("Cache-Control %q", cc)
			}
			etag := rec.Header().Get("ETag")
			if !regexp.MustCompile(`^"[0-9a-f]{24}"$`).MatchString(etag) {
				t.Fatalf("ETag %q", etag)
			}

			for _, inm := range []string{etag, `"other", ` + etag, "W/" + etag, "*"} {
				rec := get(t, http.MethodGet, path, "If-None-Match", inm)
				if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 || rec.Header().Get("ETag") != etag {
					t.Errorf("If-None-Match %s: %d, %d bytes, ETag %q", inm, rec.Code, rec.Body.Len(), rec.Header().Get("ETag"))
				}
			}
			if rec := get(t, http.MethodGet, path, "If-None-Match", `"other"`); rec.Code != http.StatusOK || rec.Body.Len() == 0 {
				t.Errorf("another ETag: %d, %d bytes", rec.Code, rec.Body.Len())
			}

			head := get(t, http.MethodHead, path)
			if head.Code != http.StatusOK || head.Body.Len() != 0 || head.Header().Get("Content-Type") != files[path] {
				t.Errorf("HEAD: %d, %d bytes, %v", head.Code, head.Body.Len(), head.Header())
			}

			for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
				rec := get(t, m, path)
				if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
					t.Errorf("%s: %d, Allow %q", m, rec.Code, rec.Header().Get("Allow"))
				}
				checkSecurityHeaders(t, rec.Header())
			}
		})
	}
	for _, path := range []string{"/", "/console/", "/console/x.js", "/console.js", "/console/console.html"} {
		rec := get(t, http.MethodGet, path)
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, rec.Code)
		}
		checkSecurityHeaders(t, rec.Header())
	}
}

// body returns the file served at path.
func body(t *testing.T, path string) string {
	t.Helper()
	rec := get(t, http.MethodGet, path)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d", path, rec.Code)
	}
	return rec.Body.String()
}

// TestPageSelfContained: the page works under the policy: no inline
// script or style (not even a style attribute), nothing loaded from
// another origin, and only relative references, so a console behind a
// proxy prefix loads its files and calls the API under that prefix.
func TestPageSelfContained(t *testing.T) {
	page := body(t, console.PagePath)
	script := body(t, console.ScriptPath)
	style := body(t, console.StylePath)

	for _, m := range regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(page, -1) {
		if strings.TrimSpace(m[2]) != "" || !strings.Contains(m[1], `src="console/console.js"`) || !strings.Contains(m[1], `type="module"`) {
			t.Errorf("script element %q: want only the module console/console.js, nothing inline", m[0])
		}
	}
	if !strings.Contains(page, `<link rel="stylesheet" href="console/console.css">`) {
		t.Errorf("page does not load console/console.css")
	}
	lower := strings.ToLower(page)
	for _, bad := range []string{"<style", " style=", "javascript:"} {
		if strings.Contains(lower, bad) {
			t.Errorf("page contains %q (inline style or script)", bad)
		}
	}
	if m := regexp.MustCompile(`(?i)\son[a-z]+\s*=`).FindString(page); m != "" {
		t.Errorf("page has an inline event handler %q", m)
	}
	for name, text := range map[string]string{"page": page, "script": script, "style": style} {
		for _, bad := range []string{"http://", "https://", "//cdn", "@import", "url("} {
			if strings.Contains(text, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
	for _, m := range regexp.MustCompile(`(?i)\b(src|href|action)\s*=\s*["']?([^"' >]*)`).FindAllStringSubmatch(page, -1) {
		if m[2] != "data:," && !strings.HasPrefix(m[2], "console/") {
			t.Errorf("page refers to %s=%q: want a relative console/ path", m[1], m[2])
		}
	}
	// Data is shown as text: the script never builds HTML from strings
	// nor evaluates code.
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage"} {
		if strings.Contains(script, bad) {
			t.Errorf("script uses %s", bad)
		}
	}
	// The script's API calls are relative, and the client module is the
	// one logic serves.
	for _, want := range []string{"'goim/online/total'", "'goim/online/comets'", "'goim/online/top'", "'goim/push/' + target", "new URL('goim.js', API)",
		"sessionStorage", "'Bearer ' + token"} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %s", want)
		}
	}
}

// TestScriptElements: every element the script looks up by id exists in
// the page, exactly once.
func TestScriptElements(t *testing.T) {
	page := body(t, console.PagePath)
	script := body(t, console.ScriptPath)
	ids := regexp.MustCompile(`\$\('([a-z0-9-]+)'\)`).FindAllStringSubmatch(script, -1)
	if len(ids) < 30 {
		t.Fatalf("found %d element lookups in the script", len(ids))
	}
	seen := map[string]bool{}
	for _, m := range ids {
		id := m[1]
		if seen[id] {
			continue
		}
		seen[id] = true
		if n := strings.Count(page, `id="`+id+`"`); n != 1 {
			t.Errorf("#%s: %d elements in the page, want 1", id, n)
		}
	}
	for _, m := range regexp.MustCompile(`setText\('([a-z0-9-]+)'`).FindAllStringSubmatch(script, -1) {
		if !strings.Contains(page, `id="`+m[1]+`"`) {
			t.Errorf("#%s (setText) not in the page", m[1])
		}
	}
}
