package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/browser"
	"github.com/goim/goim/internal/testkit/cluster"
	"github.com/goim/goim/internal/testkit/jobtest"
)

// ScreenshotEnv names a file the browser test also writes its screenshot
// to (it always writes one in its temporary directory).
const ScreenshotEnv = "GOIM_CONSOLE_SCREENSHOT"

// readToken is a read-scope push-API token of TestBrowser's logic.
const readToken = "console-read-only-token-0123456789"

// stepTimeout bounds each wait of the browser test.
const stepTimeout = 20 * time.Second

// TestBrowser opens /console in headless Chromium against a real cluster
// (logic with push-API tokens, one comet, a job) and uses it as an
// operator would: the page asks for the credential (a wrong one is
// refused; with a read-scope one it shows the figures and the API refuses
// its push; the credential is forgotten), then, with a full-scope one,
// shows the totals and the comet; the live pane joins a
// room through /goim.js; a push from the form to that room is accepted
// and arrives in the live pane; the totals and the comet's row then count
// the live connection. It takes a screenshot of the whole page and checks
// that it is a PNG of a real page (not empty, not one colour). No
// JavaScript exception and no Content-Security-Policy violation may occur.
func TestBrowser(t *testing.T) {
	wsAddr := testkit.FreeAddr(t)
	host, portText, err := net.SplitHostPort(wsAddr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portText)
	c := cluster.StartWith(t, 0, cluster.Options{Logic: func(cfg *logic.Config) {
		// The API keeps cluster.APIToken (full scope); clients are sent to
		// the comet's WebSocket listener (no discovery in the cluster).
		cfg.Node.DefaultDomain = host
		cfg.Node.WSPort = port
		cfg.HTTP.ReadTokens = []string{readToken}
	}})
	c.StartCometWith("comet-1", func(cfg *comet.Config) { cfg.WebSocket.Bind = []string{wsAddr} })
	jobtest.Start(t, c, "job-console-test")
	room := "console-" + testkit.RandomHex(6)

	// The browser starts after the cluster so that it closes first.
	ctx := browser.Start(t)
	p := &consolePage{t: t, ctx: ctx}
	p.listen()
	p.do("load the console",
		chromedp.EmulateViewport(1440, 1100),
		addScript(cspRecorder),
		chromedp.Navigate(c.API+"/console"),
	)

	p.wait("the credential form", func(s state) bool { return s.Login && !s.Dashboard })
	p.do("enter a wrong token",
		chromedp.SetValue(chromedp.ID("login-token"), "not-the-token-0123456789"),
		chromedp.Click(chromedp.ID("login-submit")),
	)
	p.wait("the token refused", func(s state) bool {
		return s.Login && strings.Contains(s.LoginError, "invalid bearer token")
	})
	// A read-scope token shows the figures; the API refuses its pushes.
	p.do("enter the read-scope token",
		chromedp.SetValue(chromedp.ID("login-token"), readToken),
		chromedp.Click(chromedp.ID("login-submit")),
	)
	p.wait("the dashboard, read scope", func(s state) bool {
		return s.Dashboard && !s.Login && s.APIState == "signed in" && s.comet("comet-1") != nil
	})
	p.do("push with the read-scope token",
		chromedp.SetValue(chromedp.ID("push-body"), "refused"),
		chromedp.Click(chromedp.ID("push-send")),
	)
	p.wait("the push refused", func(s state) bool {
		return s.PushStatus == "refused · HTTP 403" && strings.Contains(s.PushResult, `"code":-403`)
	})
	p.do("forget the credential", chromedp.Click(chromedp.ID("sign-out")))
	p.wait("the credential form again", func(s state) bool { return s.Login && !s.Dashboard && s.LoginError == "" })

	p.do("enter the full-scope token",
		chromedp.SetValue(chromedp.ID("login-token"), cluster.APIToken),
		chromedp.Click(chromedp.ID("login-submit")),
	)
	p.wait("the dashboard with comet-1", func(s state) bool {
		return s.Dashboard && !s.Login && s.APIState == "signed in" && s.SignOut && s.Conns != "–" && s.comet("comet-1") != nil
	})

	auth := fmt.Sprintf(`{"mid":4242,"room_id":"live://%s","platform":"web","accepts":[1000]}`, room)
	p.do("join the room in the live pane",
		chromedp.SetValue(chromedp.ID("live-auth"), auth),
		chromedp.Click(chromedp.ID("live-join")),
	)
	p.wait("the live client connected", func(s state) bool {
		return s.LiveStatus == "connected" && strings.Contains(s.LiveWhere, "room live://"+room)
	})

	msg := "hello from the console " + testkit.RandomHex(4)
	p.do("push to the room with the form",
		chromedp.SetValue(chromedp.ID("push-target"), "room"),
		chromedp.SetValue(chromedp.ID("push-op"), "1000"),
		chromedp.SetValue(chromedp.ID("push-type"), "live"),
		chromedp.SetValue(chromedp.ID("push-room"), room),
		chromedp.SetValue(chromedp.ID("push-body"), msg),
		chromedp.Click(chromedp.ID("push-send")),
	)
	// (Not the read-scope push's answer, which the click replaced.)
	st := p.wait("the push answered", func(s state) bool { return s.PushResult != "" && !strings.Contains(s.PushResult, "-403") })
	var answer struct {
		Code    *int   `json:"code"`
		Message string `json:"message"`
		Data    struct {
			MsgID string `json:"msg_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(st.PushResult), &answer); err != nil || answer.Code == nil || *answer.Code != 0 ||
		!testkit.IsMsgID(answer.Data.MsgID) {
		t.Fatalf("push answered %q (%v); %s", st.PushResult, err, st)
	}
	p.wait("the message in the live pane", func(s state) bool {
		for _, m := range s.Messages {
			if m.Op == "1000" && m.Text == msg {
				return true
			}
		}
		return false
	})

	// The live connection shows in the figures at the next refresh.
	p.do("refresh", chromedp.Click(chromedp.ID("refresh-now")))
	p.wait("one connection in the totals and on comet-1", func(s state) bool {
		row := s.comet("comet-1")
		return s.Conns == "1" && s.Comets == "1" && s.Draining == "0" && row != nil && row[4] == "1" && row[6] == "serving" &&
			strings.HasSuffix(row[7], " s ago")
	})

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	checkScreenshot(t, shot)
	paths := []string{filepath.Join(t.TempDir(), "console.png")}
	if extra := os.Getenv(ScreenshotEnv); extra != "" {
		paths = append(paths, extra)
	}
	for _, path := range paths {
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatalf("save the screenshot: %v", err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(shot))
	}
	p.check()
}

// checkScreenshot checks that shot is a PNG of a page: at least the
// viewport's size and many colours (a blank or failed render has one).
func checkScreenshot(t *testing.T, shot []byte) {
	t.Helper()
	if !bytes.HasPrefix(shot, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(shot))
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("decode the screenshot: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 1000 || b.Dy() < 600 {
		t.Fatalf("screenshot is %dx%d", b.Dx(), b.Dy())
	}
	if n := colours(img, 64); n < 64 {
		t.Fatalf("screenshot has %d colours: a blank page?", n)
	}
}

// colours counts the distinct colours of img, stopping at limit.
func colours(img image.Image, limit int) int {
	seen := make(map[[4]uint32]bool)
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}

// cspRecorder runs before the page's own scripts and records every
// Content-Security-Policy violation the page reports.
const cspRecorder = `window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
	window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sourceFile || '') + ':' + e.lineNumber);
});`

// addScript runs src in every document before its scripts.
func addScript(src string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src})
		return err
	})
}

// consolePage drives the console in one tab.
type consolePage struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex // guards problems
	problems []string   // JavaScript exceptions and CSP reports
}

// listen records the page's uncaught exceptions and the browser's reports
// of policy violations.
func (p *consolePage) listen() {
	err := chromedp.Listen(p.ctx, func(ev any) {
		var problem string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			if d := e.ExceptionDetails; d != nil {
				problem = "exception: " + d.Text
				if d.Exception != nil {
					problem += " " + d.Exception.Description
				}
				problem += fmt.Sprintf(" (%s:%d)", d.URL, d.LineNumber+1)
			}
		case *log.EventEntryAdded:
			if e.Entry != nil && strings.Contains(e.Entry.Text, "Content Security Policy") {
				problem = "log: " + e.Entry.Text
			}
		}
		if problem != "" {
			p.mu.Lock()
			p.problems = append(p.problems, problem)
			p.mu.Unlock()
		}
	})
	if err != nil {
		p.t.Fatalf("listen to the page: %v", err)
	}
}

// check fails the test for any exception or policy violation so far.
func (p *consolePage) check() {
	p.t.Helper()
	p.mu.Lock()
	problems := append([]string(nil), p.problems...)
	p.mu.Unlock()
	if len(problems) > 0 {
		p.t.Fatalf("the page had problems: %q", problems)
	}
}

// do runs steps, bounded by stepTimeout.
func (p *consolePage) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v; %s", what, err, p.read())
	}
}

// wait polls the page until cond holds, for at most stepTimeout.
func (p *consolePage) wait(what string, cond func(state) bool) state {
	p.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		p.check()
		st := p.read()
		if len(st.CSP) > 0 {
			p.t.Fatalf("Content-Security-Policy violations: %q", st.CSP)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: not seen within %v; %s", what, stepTimeout, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// read returns what the page shows (the zero state when it cannot be
// read, with the cause in Err).
func (p *consolePage) read() state {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	st, err := chromedp.Run(ctx, chromedp.Evaluate[state](stateJS))
	if err != nil {
		return state{Err: err.Error()}
	}
	return st
}

// state is what the console shows.
type state struct {
	Err        string     `json:"-"`
	Login      bool       `json:"login"`
	Dashboard  bool       `json:"dashboard"`
	SignOut    bool       `json:"signOut"`
	LoginError string     `json:"loginError"`
	APIState   string     `json:"apiState"`
	APIError   string     `json:"apiError"`
	Conns      string     `json:"conns"`
	IPs        string     `json:"ips"`
	Comets     string     `json:"comets"`
	Draining   string     `json:"draining"`
	CometRows  [][]string `json:"cometRows"`
	LiveStatus string     `json:"liveStatus"`
	LiveError  string     `json:"liveError"`
	LiveWhere  string     `json:"liveWhere"`
	Messages   []struct {
		Op   string `json:"op"`
		Text string `json:"text"`
	} `json:"messages"`
	PushStatus string   `json:"pushStatus"`
	PushResult string   `json:"pushResult"`
	CSP        []string `json:"csp"`
}

// comet returns the cells of host's row in the comets table, or nil.
func (s state) comet(host string) []string {
	for _, row := range s.CometRows {
		if len(row) == 8 && row[0] == host {
			return row
		}
	}
	return nil
}

func (s state) String() string {
	b, _ := json.Marshal(s)
	if s.Err != "" {
		return "page: (unreadable: " + s.Err + ")"
	}
	return "page: " + string(b)
}

// stateJS reads state from the page.
const stateJS = `(() => {
	const el = (id) => document.getElementById(id);
	const text = (id) => el(id) ? el(id).textContent : '<no #' + id + '>';
	const shown = (id) => Boolean(el(id)) && !el(id).hidden;
	return {
		login: shown('login'),
		dashboard: shown('dashboard'),
		signOut: shown('sign-out'),
		loginError: shown('login-error') ? text('login-error') : '',
		apiState: text('api-state'),
		apiError: shown('api-error') ? text('api-error') : '',
		conns: text('total-conns'),
		ips: text('total-ips'),
		comets: text('total-comets'),
		draining: text('total-draining'),
		cometRows: Array.from(document.querySelectorAll('#comets tr[data-hostname]'),
			(tr) => Array.from(tr.cells, (c) => c.textContent)),
		liveStatus: text('live-status'),
		liveError: shown('live-error') ? text('live-error') : '',
		liveWhere: text('live-where'),
		messages: Array.from(document.querySelectorAll('#live-messages li'),
			(li) => ({op: li.dataset.op || '', text: li.querySelector('.body') ? li.querySelector('.body').textContent : ''})),
		pushStatus: text('push-status'),
		pushResult: text('push-result'),
		csp: window.__csp || [],
	};
})()`

// TestBrowserAnonymous: with an anonymous API (the all-in-one's) the
// console asks for no credential and has nothing to forget.
func TestBrowserAnonymous(t *testing.T) {
	c := cluster.StartWith(t, 1, cluster.Options{Logic: func(cfg *logic.Config) {
		cfg.HTTP.Tokens, cfg.HTTP.AllowAnonymous = nil, true
	}})
	ctx := browser.Start(t)
	p := &consolePage{t: t, ctx: ctx}
	p.listen()
	p.do("load the console", addScript(cspRecorder), chromedp.Navigate(c.API+"/console"))
	p.wait("the dashboard without a credential", func(s state) bool {
		return s.Dashboard && !s.Login && s.APIState == "open API (no credential)" && !s.SignOut && s.comet("comet-1") != nil
	})
	p.check()
}

// TestBrowserToken: the live pane joins with a pasted client token (logic
// verifying HS256 tokens, not goim v2's JSON) and receives a push to the
// room its token allows.
func TestBrowserToken(t *testing.T) {
	secret := []byte("console-test-hmac-secret-0123456789abcdef")
	keyFile := filepath.Join(t.TempDir(), "hmac.key")
	if err := os.WriteFile(keyFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	wsAddr := testkit.FreeAddr(t)
	host, portText, err := net.SplitHostPort(wsAddr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portText)
	c := cluster.StartWith(t, 0, cluster.Options{Logic: func(cfg *logic.Config) {
		cfg.Node.DefaultDomain, cfg.Node.WSPort = host, port
		cfg.HTTP.Tokens, cfg.HTTP.AllowAnonymous = nil, true
		cfg.Auth.Insecure, cfg.Auth.HMACKeyFile = false, keyFile
	}})
	c.StartCometWith("comet-1", func(cfg *comet.Config) { cfg.WebSocket.Bind = []string{wsAddr} })
	jobtest.Start(t, c, "job-console-token-test")
	room := "live://console-" + testkit.RandomHex(6)
	claims := logic.Claims{Rooms: []string{room}}
	claims.Subject = "77"
	claims.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}

	ctx := browser.Start(t)
	p := &consolePage{t: t, ctx: ctx}
	p.listen()
	p.do("load the console", addScript(cspRecorder), chromedp.Navigate(c.API+"/console"))
	p.wait("the dashboard", func(s state) bool { return s.Dashboard })
	p.do("join with a client token",
		chromedp.SetValue(chromedp.ID("live-mode"), "token"),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`document.getElementById('live-mode').dispatchEvent(new Event('change'))`)(ctx, tg)
			return err
		}),
		chromedp.SetValue(chromedp.ID("live-token"), token),
		chromedp.SetValue(chromedp.ID("live-room"), room),
		chromedp.SetValue(chromedp.ID("live-accepts"), "1000, 1001"),
		chromedp.Click(chromedp.ID("live-join")),
	)
	p.wait("the live client connected", func(s state) bool {
		return s.LiveStatus == "connected" && strings.Contains(s.LiveWhere, "room "+room) && strings.Contains(s.LiveWhere, "accepts 1000,1001")
	})
	typ, id, _ := strings.Cut(room, "://")
	msg := "to the token's room " + testkit.RandomHex(4)
	p.do("push to the room with the form",
		chromedp.SetValue(chromedp.ID("push-type"), typ),
		chromedp.SetValue(chromedp.ID("push-room"), id),
		chromedp.SetValue(chromedp.ID("push-op"), "1001"),
		chromedp.SetValue(chromedp.ID("push-body"), msg),
		chromedp.Click(chromedp.ID("push-send")),
	)
	p.wait("the message in the live pane", func(s state) bool {
		for _, m := range s.Messages {
			if m.Op == "1001" && m.Text == msg {
				return true
			}
		}
		return false
	})
	p.check()
}
