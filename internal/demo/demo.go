// Package demo is the all-in-one's browser demo: one page (index.html,
// inline CSS and an inline module script, no external URL) that imports
// the browser client from /goim.js (package webclient, served by logic
// beside the page), with it finds a comet through logic's
// /goim/nodes/weighted, joins a room over WebSocket, lists what it
// receives, and pushes to the room through /goim/push/room. It is served
// by logic's HTTP API (logic.Deps.Pages, at /demo), so the page is
// same-origin with the push API and the module.
//
// The page reads its URL's query: ?ws=ws://host:port/sub dials that comet
// instead of asking logic, ?room=type://id joins that room (default
// live://1000), ?mid= is the user id (default random). It authenticates
// with goim v2's plain JSON body and pushes without a bearer token, so
// logic must run with insecure auth and [http] allow_anonymous (the
// all-in-one's dev config sets both).
package demo

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"strings"
)

//go:embed index.html
var page []byte

// Handler serves the page to GET and HEAD. The Content-Security-Policy
// lets the page run only its own inline script and style (by hash) and
// scripts of its own origin (/goim.js), talk to its own origin and to any
// ws:/wss: comet, and load nothing else.
func Handler() http.Handler {
	csp := policy(page)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(page)
	})
}

// policy is the Content-Security-Policy of doc: its inline <script> and
// <style> elements are allowed by their SHA-256, and scripts of the page's
// origin (the module it imports); nothing else runs.
func policy(doc []byte) string {
	return strings.Join([]string{
		"default-src 'none'",
		"script-src 'self' " + inlineHashes(doc, "script"),
		"style-src " + inlineHashes(doc, "style"),
		"connect-src 'self' ws: wss:",
		"img-src data:",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
}

// inlineHashes returns the CSP hash sources of the contents of every
// <tag>...</tag> element in doc (the opening tag with or without
// attributes, such as <script type="module">), or 'none' when there is
// none.
func inlineHashes(doc []byte, tag string) string {
	open, end := []byte("<"+tag), []byte("</"+tag+">")
	var srcs []string
	for {
		_, rest, ok := bytes.Cut(doc, open)
		if !ok {
			break
		}
		if len(rest) == 0 || (rest[0] != '>' && rest[0] != ' ') {
			doc = rest // a longer tag name, such as <scripts>
			continue
		}
		_, rest, ok = bytes.Cut(rest, []byte(">"))
		if !ok {
			break
		}
		body, after, ok := bytes.Cut(rest, end)
		if !ok {
			break
		}
		sum := sha256.Sum256(body)
		srcs = append(srcs, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		doc = after
	}
	if len(srcs) == 0 {
		return "'none'"
	}
	return strings.Join(srcs, " ")
}
