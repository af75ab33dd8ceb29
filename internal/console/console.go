// Package console is the operators' web console, served by logic's HTTP
// API at /console: cluster totals, the busiest rooms, the comets with
// their load and draining state, a push form, and a live pane that joins a
// room through the JavaScript client module (/goim.js) and lists what
// arrives. It refreshes itself every few seconds.
//
// The page is a static shell of three embedded files (console.html,
// console.js, console.css; no build step, nothing from elsewhere) and
// holds no data: every figure and every action is a request to the HTTP
// API with the push-API credential, which the operator enters once (kept
// in the tab's sessionStorage, sent as "Authorization: Bearer"). With an
// anonymous API (the all-in-one's) no credential is asked for: the page
// asks only when the API answers 401. So the shell is public, as
// /goim/nodes/weighted is: it tells nothing about the cluster.
//
// The files refer to each other and to the API by relative URLs, so a
// console behind a reverse proxy that maps a prefix to logic's listener
// works under that prefix.
package console

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strings"
)

var (
	//go:embed console.html
	html []byte
	//go:embed console.js
	script []byte
	//go:embed console.css
	style []byte
)

// The paths the console is served at, the page first. Paths lists them for
// the router.
const (
	PagePath   = "/console"
	ScriptPath = "/console/console.js"
	StylePath  = "/console/console.css"
)

// Paths are the console's paths: logic's HTTP API routes GET of each to
// Handler.
var Paths = []string{PagePath, ScriptPath, StylePath}

// Policy is the Content-Security-Policy of every console response: the
// page runs only the console's own script and the client module (same
// origin), styles only from its own stylesheet (no inline script, style
// or style attribute), talks to its own origin (the API) and to comets
// over ws: and wss:, loads nothing else and cannot be framed.
const Policy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; " +
	"img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// file is one embedded file with its response headers.
type file struct {
	body        []byte
	contentType string
	etag        string
}

func newFile(body []byte, contentType string) file {
	sum := sha256.Sum256(body)
	return file{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}

// Handler serves the console's files at Paths to GET and HEAD (anything
// else is 405 with "Allow: GET, HEAD"; another path is 404). Every
// response carries Policy, nosniff, no referrer and no framing. Each file
// has a strong ETag (its content's hash) and "Cache-Control: no-cache", so
// a browser revalidates (If-None-Match, answered 304) and never runs a
// stale script after an upgrade.
func Handler() http.Handler {
	files := map[string]file{
		PagePath:   newFile(html, "text/html; charset=utf-8"),
		ScriptPath: newFile(script, "text/javascript; charset=utf-8"),
		StylePath:  newFile(style, "text/css; charset=utf-8"),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", Policy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		f, ok := files[r.URL.Path]
		if !ok {
			http.Error(w, "404 page not found", http.StatusNotFound)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		if etagMatch(r.Header.Get("If-None-Match"), f.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", f.contentType)
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(f.body) // a client gone away is not our problem
	})
}

// etagMatch reports whether an If-None-Match header value names etag
// ("*" names every one; weak validators compare by their tag).
func etagMatch(header, etag string) bool {
	for v := range strings.SplitSeq(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == "*" || v == etag {
			return true
		}
	}
	return false
}
