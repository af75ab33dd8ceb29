package receipts

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/testkit"
)

const hookSecret = "receipts-webhook-test-secret"

// hookServer is a webhook endpoint on 127.0.0.1: it verifies each
// request's signature and content type, records the bodies and answers
// with answer(n) for the n-th request (from 0).
type hookServer struct {
	t      *testing.T
	srv    *httptest.Server
	answer func(n int) int

	mu     sync.Mutex
	bodies [][]byte
}

func newHookServer(t *testing.T, answer func(n int) int) *hookServer {
	h := &hookServer{t: t, answer: answer}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookServer) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		h.t.Errorf("webhook: read body: %v", err)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		h.t.Errorf("webhook: %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
	}
	if got, want := r.Header.Get(SignatureHeader), Sign([]byte(hookSecret), body); !hmac.Equal([]byte(got), []byte(want)) {
		h.t.Errorf("webhook: signature %q, want %q", got, want)
	}
	h.mu.Lock()
	n := len(h.bodies)
	h.bodies = append(h.bodies, body)
	h.mu.Unlock()
	w.WriteHeader(h.answer(n))
}

// received returns the bodies so far.
func (h *hookServer) received() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.bodies)
}

// events decodes bodies into "msg target status at" strings, sorted.
func events(t *testing.T, bodies [][]byte) []string {
	t.Helper()
	var out []string
	for _, b := range bodies {
		var evs []Event
		if err := json.Unmarshal(b, &evs); err != nil {
			t.Fatalf("webhook body %s: %v", b, err)
		}
		for _, ev := range evs {
			out = append(out, fmt.Sprintf("%s %s %s %d", ev.MsgID, ev.Target, ev.Status, ev.At))
		}
	}
	slices.Sort(out)
	return out
}

// hookConfig points the webhook at url with the test secret, small
// batches and short waits.
func hookConfig(t *testing.T, url string) func(*Config) {
	key := secretFile(t, hookSecret+"\n")
	return func(c *Config) {
		c.Webhook.URL = url
		c.Webhook.SecretFile = key
		c.Webhook.BatchSize = 2
		c.Webhook.FlushInterval = conf.Duration(5 * time.Millisecond)
		c.Webhook.RetryDelay = conf.Duration(time.Millisecond)
		c.Webhook.MaxRetryDelay = conf.Duration(4 * time.Millisecond)
	}
}

// TestWebhookSigned: delivered and expired events arrive in signed JSON
// batches of at most batch_size.
func TestWebhookSigned(t *testing.T) {
	h := newHookServer(t, func(int) int { return http.StatusNoContent })
	e := newEnv(t, true, hookConfig(t, h.srv.URL+"/hook"))
	t0 := e.clock.now()
	id := msgID()
	e.pending(id, "user:1", "user:2", "key:k3")
	e.acked(&logicpb.Ack{MsgId: id, Mid: 1, Key: "a"}, &logicpb.Ack{MsgId: id, Mid: 2, Key: "b"})
	e.clock.add(e.tr.ttl)
	if n, err := e.tr.sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	want := []string{
		fmt.Sprintf("%s key:k3 expired %d", id, t0.Add(e.tr.ttl).UnixMilli()),
		fmt.Sprintf("%s user:1 delivered %d", id, t0.UnixMilli()),
		fmt.Sprintf("%s user:2 delivered %d", id, t0.UnixMilli()),
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if got := events(t, h.received()); !slices.Equal(got, want) {
			return fmt.Errorf("events %q, want %q", got, want)
		}
		return nil
	})
	for _, b := range h.received() {
		if n := strings.Count(string(b), `"msg_id"`); n > 2 {
			t.Fatalf("a batch of %d events, batch_size is 2: %s", n, b)
		}
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if got := e.metric("goim_logic_webhook_events_total", "outcome", "sent"); got != 3 {
			return fmt.Errorf("sent = %v, want 3", got)
		}
		return nil
	})
	if got := e.metric("goim_logic_webhook_requests_total", "code", "2xx"); got != float64(len(h.received())) {
		t.Fatalf("requests{2xx} = %v, want %d", got, len(h.received()))
	}
}

// TestWebhookRetry: a batch the endpoint fails is sent again, the same
// body, until it succeeds.
func TestWebhookRetry(t *testing.T) {
	h := newHookServer(t, func(n int) int {
		if n < 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	e := newEnv(t, true, hookConfig(t, h.srv.URL))
	id := msgID()
	e.pending(id, "user:1")
	e.acked(&logicpb.Ack{MsgId: id, Mid: 1, Key: "a"})
	testkit.WaitFor(t, 5*time.Second, func() error {
		if got := e.metric("goim_logic_webhook_events_total", "outcome", "sent"); got != 1 {
			return fmt.Errorf("sent = %v, want 1", got)
		}
		return nil
	})
	bodies := h.received()
	if len(bodies) != 3 || string(bodies[0]) != string(bodies[1]) || string(bodies[1]) != string(bodies[2]) {
		t.Fatalf("bodies %q, want the same body three times", bodies)
	}
	if got := e.metric("goim_logic_webhook_requests_total", "code", "5xx"); got != 2 {
		t.Fatalf("requests{5xx} = %v, want 2", got)
	}
}

// TestWebhookGivesUp: after retries failed attempts the batch is dropped
// and counted failed.
func TestWebhookGivesUp(t *testing.T) {
	h := newHookServer(t, func(int) int { return http.StatusBadRequest })
	edit := hookConfig(t, h.srv.URL)
	e := newEnv(t, true, func(c *Config) {
		edit(c)
		c.Webhook.Retries = 2
	})
	id := msgID()
	e.pending(id, "user:1")
	e.acked(&logicpb.Ack{MsgId: id, Mid: 1, Key: "a"})
	testkit.WaitFor(t, 5*time.Second, func() error {
		if got := e.metric("goim_logic_webhook_events_total", "outcome", "failed"); got != 1 {
			return fmt.Errorf("failed = %v, want 1", got)
		}
		return nil
	})
	if n := len(h.received()); n != 3 {
		t.Fatalf("%d requests, want 3 (1 + 2 retries)", n)
	}
	if got := e.metric("goim_logic_webhook_requests_total", "code", "4xx"); got != 3 {
		t.Fatalf("requests{4xx} = %v, want 3", got)
	}
}

// TestWebhookDown: while the endpoint hangs, pushes and acks go on, the
// queue stays within its bound and the overflow is dropped and counted;
// Close gives up on the hung POST at its context's end.
func TestWebhookDown(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	const queue = 4
	edit := hookConfig(t, srv.URL)
	e := newEnv(t, true, func(c *Config) {
		edit(c)
		c.Webhook.BatchSize = 1
		c.Webhook.Queue = queue
		c.Webhook.Timeout = conf.Duration(time.Hour)
	})
	id := msgID()
	e.pending(id, "user:1")
	e.acked(&logicpb.Ack{MsgId: id, Mid: 1, Key: "a"})
	<-entered // the sender is stuck in a POST

	const n = 50
	targets := make([]string, n)
	acks := make([]*logicpb.Ack, n)
	for i := range n {
		targets[i] = fmt.Sprintf("user:%d", i+2)
		acks[i] = &logicpb.Ack{MsgId: id, Mid: int64(i + 2), Key: "a"}
	}
	e.pending(id, targets...)
	e.acked(acks...) // returns although the endpoint does not answer
	if got := e.metric("goim_logic_receipts_total", "status", "delivered"); got != n+1 {
		t.Fatalf("delivered = %v, want %d", got, n+1)
	}
	if got := e.metric("goim_logic_webhook_queue_length", "", ""); got != queue {
		t.Fatalf("queue length = %v, want %d (full)", got, queue)
	}
	if got := e.metric("goim_logic_webhook_events_total", "outcome", "dropped_queue"); got != n-queue {
		t.Fatalf("dropped_queue = %v, want %d", got, n-queue)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.tr.Close(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Close = %v, want its context's deadline", err)
	}
	close(release)
	if got := e.metric("goim_logic_webhook_events_total", "outcome", "failed"); got != queue+1 {
		t.Fatalf("failed = %v, want %d (the one in flight and the queued)", got, queue+1)
	}
}

// TestWebhookCloseDrains: Close sends what is still queued.
func TestWebhookCloseDrains(t *testing.T) {
	h := newHookServer(t, func(int) int { return http.StatusOK })
	edit := hookConfig(t, h.srv.URL)
	e := newEnv(t, true, func(c *Config) {
		edit(c)
		c.Webhook.BatchSize = 1000
		c.Webhook.FlushInterval = conf.Duration(time.Hour)
	})
	id := msgID()
	e.pending(id, "user:1", "user:2")
	e.acked(&logicpb.Ack{MsgId: id, Mid: 1, Key: "a"}, &logicpb.Ack{MsgId: id, Mid: 2, Key: "a"})
	if err := e.tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(events(t, h.received())); got != 2 {
		t.Fatalf("%d events after Close, want 2", got)
	}
}

// TestCloseStopsGoroutines: after Close the sweeper and the sender are
// gone, and so are the webhook's connections.
func TestCloseStopsGoroutines(t *testing.T) {
	h := newHookServer(t, func(int) int { return http.StatusOK })
	_, prefix := testkit.Redis(t)
	rcfg := dao.DefaultRedisConfig()
	rcfg.Addr, rcfg.Prefix = testkit.RedisAddr(), prefix
	store, err := dao.NewRedis(rcfg, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	before := runtime.NumGoroutine()
	cfg := DefaultConfig()
	hookConfig(t, h.srv.URL)(&cfg)
	tr, err := New(cfg, store, prometheus.NewRegistry(), testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	tr.Start()
	id := msgID()
	if err := tr.Pending(context.Background(), id, []string{"user:1"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Acked(context.Background(), []*logicpb.Ack{{MsgId: id, Mid: 1, Key: "a"}}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if len(h.received()) == 0 {
			return errors.New("no webhook request yet")
		}
		return nil
	})
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before the tracker", n, before)
		}
		return nil
	})
}

// TestWebhookCloseEndpointFailing: at Close a batch waiting for its retry
// gives up, and as the endpoint is failing the events still queued are
// counted failed without a request each.
func TestWebhookCloseEndpointFailing(t *testing.T) {
	h := newHookServer(t, func(int) int { return http.StatusBadGateway })
	edit := hookConfig(t, h.srv.URL)
	e := newEnv(t, true, func(c *Config) {
		edit(c)
		c.Webhook.BatchSize = 1
		c.Webhook.Retries = MaxRetries
		c.Webhook.RetryDelay = conf.Duration(time.Hour)
		c.Webhook.MaxRetryDelay = conf.Duration(time.Hour)
	})
	id := msgID()
	e.pending(id, "user:1", "user:2", "user:3", "user:4", "user:5")
	e.acked(&logicpb.Ack{MsgId: id, Mid: 1, Key: "a"})
	testkit.WaitFor(t, 5*time.Second, func() error {
		if len(h.received()) == 0 {
			return errors.New("no request yet")
		}
		return nil
	})
	// The sender now waits an hour before its retry.
	e.acked(&logicpb.Ack{MsgId: id, Mid: 2, Key: "a"}, &logicpb.Ack{MsgId: id, Mid: 3, Key: "a"},
		&logicpb.Ack{MsgId: id, Mid: 4, Key: "a"}, &logicpb.Ack{MsgId: id, Mid: 5, Key: "a"})
	if err := e.tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(h.received()); n != 1 {
		t.Fatalf("%d requests, want 1 (the first batch's, not retried)", n)
	}
	if got := e.metric("goim_logic_webhook_events_total", "outcome", "failed"); got != 5 {
		t.Fatalf("failed = %v, want 5", got)
	}
}
