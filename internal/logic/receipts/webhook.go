package receipts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/goim/goim/internal/ratelog"
	"github.com/goim/goim/internal/secret"
)

// SignatureHeader carries a webhook body's signature:
// "sha256=<hex HMAC-SHA256 of the body with the secret>".
const SignatureHeader = "X-Goim-Signature"

// Event is one element of a webhook body (a JSON array of them).
type Event struct {
	MsgID  string `json:"msg_id"`
	Target string `json:"target"`
	// Status is "delivered" or "expired".
	Status string `json:"status"`
	// At is when: the ack, or the deadline; Unix ms.
	At int64 `json:"at"`
}

// Sign returns the X-Goim-Signature value of body under key.
func Sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// maxResponseRead bounds what is read (and discarded) of an answer, so
// that the connection can be reused without reading a large body.
const maxResponseRead = 64 << 10

// webhook sends events in batches from one goroutine (run). Pushes and
// acks only enqueue, never waiting: a full queue drops the event.
type webhook struct {
	cfg    WebhookConfig
	key    []byte
	client *http.Client
	log    *slog.Logger
	warns  *ratelog.Limiter
	m      *metrics

	queue chan Event
	// stop is closed by close: run sends what is queued (one attempt per
	// batch) and returns. abort, cancelled when close's context ends,
	// cuts the POST in flight and the rest of that drain.
	stop        chan struct{}
	abort       context.Context
	abortCancel context.CancelFunc
	done        chan struct{} // closed when run returns
}

func newWebhook(cfg WebhookConfig, log *slog.Logger) (*webhook, error) {
	key, err := secret.ReadFile(cfg.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("receipts: webhook.secret_file: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2 // one sender
	w := &webhook{
		cfg: cfg,
		key: key,
		client: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout.D(),
			// A redirect is a failed POST: the signed body goes to the
			// configured URL only.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:   log,
		warns: ratelog.New(1, time.Minute),
		queue: make(chan Event, cfg.Queue),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	w.abort, w.abortCancel = context.WithCancel(context.Background())
	return w, nil
}

// enqueue queues ev, or drops it (counted) when the queue is full.
func (w *webhook) enqueue(ev Event) {
	select {
	case w.queue <- ev:
	default:
		w.m.droppedQueue.Inc()
	}
}

// close makes run send what is queued and return, and waits for it; when
// ctx ends first the POST in flight is cut and the rest counted failed.
func (w *webhook) close(ctx context.Context) error {
	close(w.stop)
	defer w.abortCancel()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		w.abortCancel()
		<-w.done
		return ctx.Err()
	}
}

// run is the sender: it gathers batches of up to batch_size events,
// waiting at most flush_interval after the first, and POSTs each with
// retries. It returns after stop, having drained the queue.
func (w *webhook) run() {
	defer close(w.done)
	defer w.client.CloseIdleConnections()
	batch := make([]Event, 0, w.cfg.BatchSize)
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	ok := true // the last POST was accepted
	for {
		stopping := false
		select {
		case <-w.stop: // first: a stop seen while delivering ends the loop
			w.drain(batch, !ok)
			return
		default:
		}
		select {
		case ev := <-w.queue:
			batch = append(batch, ev)
		case <-w.stop:
			stopping = true
		}
		if !stopping {
			flush.Reset(w.cfg.FlushInterval.D())
		fill:
			for len(batch) < w.cfg.BatchSize {
				select {
				case ev := <-w.queue:
					batch = append(batch, ev)
				case <-flush.C:
					break fill
				case <-w.stop:
					stopping = true
					break fill
				}
			}
			flush.Stop()
			ok = w.deliver(batch, stopping)
			batch = batch[:0]
		}
		if stopping {
			w.drain(batch, !ok)
			return
		}
	}
}

// drain sends what is left in the queue, one attempt per batch, until it
// is empty, a POST fails (the endpoint is down: the rest would only wait
// for it; failed says the last one before the drain did) or abort ends;
// what is left then is counted failed.
func (w *webhook) drain(batch []Event, failed bool) {
	for {
		batch = batch[:0]
	fill:
		for len(batch) < w.cfg.BatchSize {
			select {
			case ev := <-w.queue:
				batch = append(batch, ev)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		if failed || w.abort.Err() != nil {
			w.m.failed.Add(float64(len(batch)))
			continue
		}
		failed = !w.deliver(batch, true)
	}
}

// deliver POSTs batch, retrying with backoff unless stopping (or stop
// comes during a wait), counts the outcome and reports whether the batch
// was accepted.
func (w *webhook) deliver(batch []Event, stopping bool) bool {
	if len(batch) == 0 {
		return true
	}
	body, err := json.Marshal(batch)
	if err != nil { // strings and integers always encode
		w.m.failed.Add(float64(len(batch)))
		return false
	}
	delay := w.cfg.RetryDelay.D()
	for attempt := 0; ; attempt++ {
		err := w.post(body)
		if err == nil {
			w.m.sent.Add(float64(len(batch)))
			w.warns.Recover(w.log, "receipts: webhook failed", "receipts: webhook works again")
			return true
		}
		if stopping || attempt >= w.cfg.Retries || w.abort.Err() != nil {
			w.m.failed.Add(float64(len(batch)))
			w.warns.Fail(w.log, "receipts: webhook failed", "url", w.cfg.URL, "events", len(batch),
				"attempts", attempt+1, "err", err)
			return false
		}
		wait := time.NewTimer(delay)
		select {
		case <-wait.C:
		case <-w.stop: // give up: the endpoint is failing and logic stops
			wait.Stop()
			w.m.failed.Add(float64(len(batch)))
			return false
		}
		delay = min(2*delay, w.cfg.MaxRetryDelay.D())
	}
}

// post sends one signed body; nil means a 2xx answer.
func (w *webhook) post(body []byte) error {
	req, err := http.NewRequestWithContext(w.abort, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		w.m.request(0)
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(w.key, body))
	resp, err := w.client.Do(req)
	if err != nil {
		w.m.request(0)
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
	resp.Body.Close()
	w.m.request(resp.StatusCode)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %s", strconv.Itoa(resp.StatusCode))
	}
	return nil
}
