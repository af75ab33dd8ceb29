// Package browser runs Debian's Chromium headless through chromedp for
// tests of the browser pages and the browser client (internal/demo,
// internal/webclient): Start launches a browser owned by the test,
// DemoRoundTrip drives the demo page through a push from Go and a push
// from its own form, and Open returns a Page that tests drive with
// JavaScript (Eval, Wait). Only tests import it.
package browser

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// RequireEnv is the environment variable that turns a missing Chromium
// from a skipped test into a failed one (CI sets it to 1).
const RequireEnv = "GOIM_REQUIRE_BROWSER"

// debianPath is where Debian's chromium package installs its launcher.
const debianPath = "/usr/bin/chromium"

// execPath returns the Chromium to run: Debian's, else "chromium" on
// PATH, else "".
func execPath() string {
	if fi, err := os.Stat(debianPath); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return debianPath
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// Start launches a headless Chromium with a fresh profile in a temporary
// directory and returns a chromedp context for chromedp.Run and
// chromedp.Do, valid until the test ends. At cleanup the browser is
// closed and every process that used the profile is gone. Without
// Chromium the test is skipped, or fails when GOIM_REQUIRE_BROWSER=1.
func Start(t testing.TB) context.Context {
	t.Helper()
	path := execPath()
	if path == "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal("chromium not installed: apt-get install chromium (" + RequireEnv + "=1)")
		}
		t.Skip("chromium not installed: apt-get install chromium")
	}
	// TempDir's removal is registered first, so it runs after the browser
	// is gone.
	dir := t.TempDir()
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dir),
	)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("browser: close: %v", err)
		}
		cancelCtx()
		cancelAlloc() // kills the browser if it did not close, and waits
		reap(t, dir)
	})
	// Start the browser and its tab now, so that a browser that cannot
	// start fails here. The first run must get ctx itself (the browser
	// lives as long as its context), so its bound cancels ctx.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("browser: start %s: %v", path, err)
		}
	case <-timer.C:
		cancelCtx()
		t.Fatalf("browser: %s did not start within 30s: %v", path, <-started)
	}
	return ctx
}

// reap waits until no process runs with the profile dir (Chromium's
// helpers can outlive the browser process by a moment), and kills those
// still there after 10 s.
func reap(t testing.TB, dir string) {
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		pids := profileUsers(dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("browser: killing %d leftover processes %v", len(pids), pids)
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			return
		}
		<-tick.C
	}
}

// profileUsers returns the processes whose command line has
// --user-data-dir=dir (every Chromium process of this browser does).
func profileUsers(dir string) []int {
	want := "--user-data-dir=" + dir
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		for arg := range strings.SplitSeq(string(cmdline), "\x00") {
			if arg == want {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// stepTimeout bounds each wait of DemoRoundTrip.
const stepTimeout = 20 * time.Second

// DemoRoundTrip loads the demo page at pageURL (the full /demo URL with
// its query) in the browser of ctx and checks, each wait bounded by 20 s:
//   - the page authenticates (#status reads "connected") and shows the
//     heartbeat reply's online count (#online);
//   - a unique message that push sends from Go (to the page's room,
//     through logic's HTTP API) appears in #messages;
//   - a unique message sent with the page's own form (its prefilled room)
//     is answered code 0 in #push-result and appears in #messages.
//
// A message counts only if the page decoded it (an op-9 batch shown whole
// does not). An error describes the page: status, online count, form room,
// push result, messages and connection log. A JavaScript exception on the
// page is an error too.
func DemoRoundTrip(ctx context.Context, pageURL string, push func(msg string) error) error {
	lctx, stopListen := context.WithCancel(ctx)
	defer stopListen()
	var exc exceptions
	if err := chromedp.Listen(lctx, exc.listen); err != nil {
		return fmt.Errorf("demo: listen to the page: %w", err)
	}

	nctx, cancel := context.WithTimeout(ctx, stepTimeout)
	err := chromedp.Do(nctx, chromedp.Navigate(pageURL))
	cancel()
	if err != nil {
		return fmt.Errorf("demo: load %s: %w", pageURL, err)
	}
	st, err := waitPage(ctx, &exc, `#status "connected"`, func(s pageState) bool { return s.Status == "connected" })
	if err != nil {
		return err
	}
	if st.Type == "" || st.Room == "" {
		return fmt.Errorf("demo: form not prefilled with a room; %s", st)
	}
	// The page heartbeats at once; the reply carries the room's count.
	if _, err := waitPage(ctx, &exc, "a count in #online", func(s pageState) bool {
		_, err := strconv.ParseInt(s.Online, 10, 32)
		return err == nil
	}); err != nil {
		return err
	}

	fromGo := "from-go-" + randomHex()
	if err := push(fromGo); err != nil {
		return fmt.Errorf("demo: push %q: %w; %s", fromGo, err, st)
	}
	if _, err := waitPage(ctx, &exc, fmt.Sprintf("%q in #messages", fromGo), received(fromGo)); err != nil {
		return err
	}

	fromForm := "from-form-" + randomHex()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	err = chromedp.Do(sctx,
		chromedp.SetValue(chromedp.ID("push-msg"), fromForm),
		chromedp.Click(chromedp.ID("push-send")),
	)
	cancel()
	if err != nil {
		return fmt.Errorf("demo: send %q with the form: %w", fromForm, err)
	}
	var answer struct {
		Code    *int   `json:"code"`
		Message string `json:"message"`
	}
	st, err = waitPage(ctx, &exc, "a JSON answer in #push-result", func(s pageState) bool {
		answer.Code = nil
		return json.Unmarshal([]byte(s.Result), &answer) == nil && answer.Code != nil
	})
	if err != nil {
		return err
	}
	if *answer.Code != 0 {
		return fmt.Errorf("demo: form push answered code %d %q; %s", *answer.Code, answer.Message, st)
	}
	if _, err := waitPage(ctx, &exc, fmt.Sprintf("%q in #messages", fromForm), received(fromForm)); err != nil {
		return err
	}
	return exc.err()
}

// received is a condition: some message contains msg, and it is not an
// op-9 batch left undecoded (whose body would contain msg too).
func received(msg string) func(pageState) bool {
	return func(s pageState) bool {
		for _, m := range s.Messages {
			if strings.Contains(m.Text, msg) && m.Op != "9" {
				return true
			}
		}
		return false
	}
}

// pageState is what the demo page shows.
type pageState struct {
	Status   string    `json:"status"`
	Online   string    `json:"online"`
	Messages []message `json:"messages"`
	Result   string    `json:"result"`
	Type     string    `json:"type"`
	Room     string    `json:"room"`
	Log      []string  `json:"log"`
}

// message is one entry of #messages: its text and its data-op attribute
// (the op the page decoded).
type message struct {
	Op   string `json:"op"`
	Text string `json:"text"`
}

func (m message) String() string { return fmt.Sprintf("[op %s] %q", m.Op, m.Text) }

func (s pageState) String() string {
	return fmt.Sprintf("page: status %q, online %q, form room %q/%q, push result %q, messages %v, log %q",
		s.Status, s.Online, s.Type, s.Room, s.Result, s.Messages, s.Log)
}

// stateJS reads pageState from the page; a missing element reads as
// "<no #id>".
const stateJS = `(() => {
	const el = (id) => document.getElementById(id);
	const text = (id) => el(id) ? el(id).textContent : '<no #' + id + '>';
	const items = (id) => el(id) ? Array.from(el(id).querySelectorAll('li'), (li) => li.textContent) : ['<no #' + id + '>'];
	const messages = el('messages') ? Array.from(el('messages').querySelectorAll('li'),
		(li) => ({op: li.dataset.op || '', text: li.textContent})) : [{op: '', text: '<no #messages>'}];
	return {
		status: text('status'),
		online: text('online'),
		messages: messages,
		result: text('push-result'),
		type: el('push-type') ? el('push-type').value : '',
		room: el('push-room') ? el('push-room').value : '',
		log: items('log'),
	};
})()`

// waitPage polls the page until cond holds, for at most stepTimeout. It
// fails at once when the page threw an exception.
func waitPage(ctx context.Context, exc *exceptions, what string, cond func(pageState) bool) (pageState, error) {
	wctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last pageState
	var lastErr error
	for {
		if err := exc.err(); err != nil {
			return last, fmt.Errorf("demo: waiting for %s: %w; %s", what, err, last)
		}
		st, err := chromedp.Run(wctx, chromedp.Evaluate[pageState](stateJS))
		if err == nil {
			last, lastErr = st, nil
			if cond(st) {
				return st, nil
			}
		} else if wctx.Err() == nil {
			lastErr = err
		}
		select {
		case <-wctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("demo: %s not seen within %v (last read: %v); %s", what, stepTimeout, lastErr, last)
			}
			return last, fmt.Errorf("demo: %s not seen within %v; %s", what, stepTimeout, last)
		case <-tick.C:
		}
	}
}

// exceptions collects the uncaught exceptions the page throws.
type exceptions struct {
	mu   sync.Mutex // guards list
	list []string
}

// listen is a chromedp.Listen callback: it runs on chromedp's event loop
// and only records.
func (e *exceptions) listen(ev any) {
	t, ok := ev.(*runtime.EventExceptionThrown)
	if !ok || t.ExceptionDetails == nil {
		return
	}
	d := t.ExceptionDetails
	text := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		text += " " + d.Exception.Description
	}
	e.mu.Lock()
	e.list = append(e.list, fmt.Sprintf("%s (%s:%d:%d)", text, d.URL, d.LineNumber+1, d.ColumnNumber+1))
	e.mu.Unlock()
}

func (e *exceptions) err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.list) == 0 {
		return nil
	}
	return fmt.Errorf("JavaScript exceptions on the page: %q", e.list)
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
