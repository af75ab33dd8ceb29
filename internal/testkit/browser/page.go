package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/chromedp/chromedp"
)

// Page is a page loaded in a test's browser for tests that drive it with
// JavaScript (the client module's tests): Eval runs an expression, Wait
// polls one. Every call fails once the page has thrown an uncaught
// exception.
type Page struct {
	ctx  context.Context
	exc  exceptions
	stop context.CancelFunc
}

// Open loads pageURL in the browser of ctx (from Start), waiting at most
// 20 s, and watches the page's exceptions until Close.
func Open(ctx context.Context, pageURL string) (*Page, error) {
	lctx, stop := context.WithCancel(ctx)
	p := &Page{ctx: ctx, stop: stop}
	if err := chromedp.Listen(lctx, p.exc.listen); err != nil {
		stop()
		return nil, fmt.Errorf("browser: listen to the page: %w", err)
	}
	nctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(pageURL)); err != nil {
		stop()
		return nil, fmt.Errorf("browser: load %s: %w", pageURL, err)
	}
	return p, nil
}

// Close stops watching the page's exceptions.
func (p *Page) Close() { p.stop() }

// Eval evaluates the JavaScript expression expr in the page, awaits its
// value when it is a promise (a rejection is an error), and decodes the
// value as JSON into out (nil: the value is dropped). It waits at most
// 20 s.
func (p *Page) Eval(expr string, out any) error {
	if err := p.exc.err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	// undefined reads as null.
	wrapped := "(async () => { const v = await (" + expr + "\n); return v === undefined ? null : v; })()"
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](wrapped, chromedp.EvalAwaitPromise))
	if err != nil {
		return fmt.Errorf("browser: evaluate %.200q: %w", expr, err)
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("browser: evaluate %.200q: decode %.200s: %w", expr, raw, err)
	}
	return nil
}

// Wait evaluates the JavaScript expression cond every 50 ms until it is
// true, for at most 20 s. On failure the error shows the value of the
// expression state (a description of the page's state for the log).
func (p *Page) Wait(what, cond, state string) error {
	deadline := time.Now().Add(stepTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var ok bool
		err := p.Eval("Boolean("+cond+")", &ok)
		if err == nil && ok {
			return nil
		}
		if exc := p.exc.err(); exc != nil || time.Now().After(deadline) || p.ctx.Err() != nil {
			var st json.RawMessage
			if serr := p.Eval(state, &st); serr != nil {
				st = json.RawMessage(fmt.Sprintf("%q", serr.Error()))
			}
			if exc != nil {
				return fmt.Errorf("browser: waiting for %s: %w; state %s", what, exc, st)
			}
			if err != nil {
				return fmt.Errorf("browser: %s not seen within %v (last: %v); state %s", what, stepTimeout, err, st)
			}
			return fmt.Errorf("browser: %s not seen within %v; state %s", what, stepTimeout, st)
		}
		<-tick.C
	}
}
