package browser

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/chromedp/chromedp"
)

// eventSourcePage opens an EventSource on the URL of its query's "url"
// parameter and lists what arrives: #status reads "open" once the auth
// event came, "error <readyState>" after an error; #events lists the
// events named in "events" (comma-separated, default "1000"), each an li
// with data-name and the event's data as its text.
const eventSourcePage = `<!doctype html>
<html><head><meta charset="utf-8"><title>EventSource test</title></head>
<body>
<p id="status">loading</p>
<ul id="events"></ul>
<script>
const q = new URLSearchParams(location.search);
const status = document.getElementById('status');
const list = document.getElementById('events');
const es = new EventSource(q.get('url'));
const add = (name, data) => {
	const li = document.createElement('li');
	li.dataset.name = name;
	li.textContent = data;
	list.appendChild(li);
};
es.addEventListener('auth', () => { status.textContent = 'open'; });
for (const name of (q.get('events') || '1000').split(',')) {
	es.addEventListener(name, (ev) => add(name, ev.data));
	es.addEventListener(name + '.base64', (ev) => add(name + '.base64', ev.data));
}
es.onerror = () => { status.textContent = 'error ' + es.readyState; };
</script>
</body></html>
`

// EventSourcePage serves a page that opens an EventSource on the URL in
// its query ("url"; "events" names the events it lists, default "1000"),
// for EventSourceRoundTrip. Serve it from another origin than the comet's
// (an httptest server) to exercise the comet's CORS answer.
func EventSourcePage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(eventSourcePage))
	})
}

// esState is what the EventSource page shows.
type esState struct {
	Status string    `json:"status"`
	Events []esEvent `json:"events"`
}

type esEvent struct {
	Name string `json:"name"`
	Data string `json:"data"`
}

const esStateJS = `(() => ({
	status: document.getElementById('status').textContent,
	events: Array.from(document.querySelectorAll('#events li'), (li) => ({name: li.dataset.name, data: li.textContent})),
}))()`

// EventSourceRoundTrip loads pageURL (EventSourcePage with its query) in
// the browser of ctx, waits until the stream is open (its auth event
// arrived), calls push, and waits until an event named name with data
// arrives; each wait is bounded by 20 s. A JavaScript exception on the
// page is an error.
func EventSourceRoundTrip(ctx context.Context, pageURL string, push func() error, name, data string) error {
	lctx, stopListen := context.WithCancel(ctx)
	defer stopListen()
	var exc exceptions
	if err := chromedp.Listen(lctx, exc.listen); err != nil {
		return fmt.Errorf("eventsource: listen to the page: %w", err)
	}
	nctx, cancel := context.WithTimeout(ctx, stepTimeout)
	err := chromedp.Do(nctx, chromedp.Navigate(pageURL))
	cancel()
	if err != nil {
		return fmt.Errorf("eventsource: load %s: %w", pageURL, err)
	}
	if _, err := waitES(ctx, &exc, `#status "open"`, func(s esState) bool { return s.Status == "open" }); err != nil {
		return err
	}
	if err := push(); err != nil {
		return fmt.Errorf("eventsource: push: %w", err)
	}
	if _, err := waitES(ctx, &exc, fmt.Sprintf("event %s %q", name, data), func(s esState) bool {
		for _, ev := range s.Events {
			if ev.Name == name && ev.Data == data {
				return true
			}
		}
		return false
	}); err != nil {
		return err
	}
	return exc.err()
}

// waitES polls the page until cond holds, for at most stepTimeout.
func waitES(ctx context.Context, exc *exceptions, what string, cond func(esState) bool) (esState, error) {
	wctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last esState
	for {
		if err := exc.err(); err != nil {
			return last, fmt.Errorf("eventsource: waiting for %s: %w; page %+v", what, err, last)
		}
		if st, err := chromedp.Run(wctx, chromedp.Evaluate[esState](esStateJS)); err == nil {
			last = st
			if cond(st) {
				return st, nil
			}
		}
		select {
		case <-wctx.Done():
			return last, fmt.Errorf("eventsource: %s not seen within %v; page %+v", what, stepTimeout, last)
		case <-tick.C:
		}
	}
}
