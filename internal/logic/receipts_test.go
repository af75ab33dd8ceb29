package logic

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/logic/receipts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// statusAnswer is the body of /goim/push/status.
type statusAnswer struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    struct {
		MsgID   string `json:"msg_id"`
		Targets []struct {
			Target string `json:"target"`
			Status string `json:"status"`
			At     int64  `json:"at"`
		} `json:"targets"`
	} `json:"data"`
}

// pushStatus GETs the status of id and wants 200; it returns
// "target=status" strings.
func (e *env) pushStatus(id string) []string {
	e.t.Helper()
	code, body := e.do("GET", "/goim/push/status?msg_id="+id, nil)
	var a statusAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil || code != 200 || a.Code != 0 || a.Data.MsgID != id {
		e.t.Fatalf("status of %s: %d %s (%v)", id, code, body, err)
	}
	var out []string
	for _, t := range a.Data.Targets {
		if t.At <= 0 {
			e.t.Fatalf("status of %s: target without a time: %s", id, body)
		}
		out = append(out, t.Target+"="+t.Status)
	}
	return out
}

// TestReceipts: a push's targets are pending until comets' acks (over
// gRPC) deliver them; the status endpoint answers with the push API's
// credential.
func TestReceipts(t *testing.T) {
	e := startLogic(t, nil)
	ctx := context.Background()
	id := dao.NewMsgID()
	if err := e.srv.Service().receipts.Record(ctx, id, []string{"user:1001", "key:k-2"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.pushStatus(id), " "); got != "key:k-2=pending user:1001=pending" {
		t.Fatalf("status = %s", got)
	}
	_, err := e.rpc.Ack(ctx, &logicpb.AckReq{Server: "comet-1", Acks: []*logicpb.Ack{
		{MsgId: id, Mid: 1001, Key: "k-9"},          // user 1001's connection
		{MsgId: id, Key: "k-2"},                     // an anonymous connection with key k-2
		{MsgId: dao.NewMsgID(), Mid: 5, Key: "k-5"}, // no record: ignored
	}})
	if err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if got := strings.Join(e.pushStatus(id), " "); got != "key:k-2=delivered user:1001=delivered" {
		t.Fatalf("status after the acks = %s", got)
	}
	if n := e.metric("goim_logic_receipt_acks_total", "result", "unknown"); n != 1 {
		t.Fatalf("unknown acks = %v, want 1", n)
	}

	unknown := dao.NewMsgID()
	e.expect("GET", "/goim/push/status?msg_id="+unknown, nil, 404,
		`{"code":-404,"message":"msg_id: no delivery record of `+unknown+
			` (unknown, not sent to a reliable user or key, or older than its record's keep time)"}`)
	e.expect("GET", "/goim/push/status?msg_id=123", nil, 400, `{"code":-400,"message":"msg_id: \"123\" is not 32 hex digits"}`)
	e.expect("GET", "/goim/push/status", nil, 400, `{"code":-400,"message":"msg_id: required"}`)
	if code, body := e.do("GET", "/goim/push/status?msg_id="+id, nil, "Authorization", ""); code != 401 {
		t.Fatalf("without a credential: %d %s", code, body)
	}
}

// TestDefer: job's Defer call (over gRPC) turns the pending targets it
// names deferred, which the status endpoint answers; a delivered target
// and an unknown push are left alone, and an ack still delivers.
func TestDefer(t *testing.T) {
	e := startLogic(t, nil)
	ctx := context.Background()
	id := dao.NewMsgID()
	if err := e.srv.Service().receipts.Record(ctx, id, []string{"user:1001", "key:k-2", "key:k-3"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rpc.Ack(ctx, &logicpb.AckReq{Server: "comet-1", Acks: []*logicpb.Ack{{MsgId: id, Key: "k-3"}}}); err != nil {
		t.Fatal(err)
	}
	_, err := e.rpc.Defer(ctx, &logicpb.DeferReq{Deferred: []*logicpb.Ack{
		{MsgId: id, Mid: 1001, Key: "k-9"},          // user 1001's key
		{MsgId: id, Key: "k-2"},                     // a keys push's target
		{MsgId: id, Key: "k-3"},                     // delivered: unchanged
		{MsgId: dao.NewMsgID(), Mid: 5, Key: "k-5"}, // no record: ignored
	}})
	if err != nil {
		t.Fatalf("Defer: %v", err)
	}
	if got := strings.Join(e.pushStatus(id), " "); got != "key:k-2=deferred key:k-3=delivered user:1001=deferred" {
		t.Fatalf("status after the deferral = %s", got)
	}
	for result, want := range map[string]float64{"deferred": 2, "unchanged": 1, "unknown": 1} {
		if n := e.metric("goim_logic_receipt_deferrals_total", "result", result); n != want {
			t.Errorf("deferrals{result=%s} = %v, want %v", result, n, want)
		}
	}
	if _, err := e.rpc.Ack(ctx, &logicpb.AckReq{Server: "comet-1", Acks: []*logicpb.Ack{{MsgId: id, Mid: 1001, Key: "k-9"}}}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.pushStatus(id), " "); got != "key:k-2=deferred key:k-3=delivered user:1001=delivered" {
		t.Fatalf("status after the ack = %s", got)
	}
}

// TestAckDeferInvalid: a malformed Ack or Defer call is refused whole
// with InvalidArgument and records nothing; the largest call is accepted.
func TestAckDeferInvalid(t *testing.T) {
	for _, call := range []struct {
		name string
		do   func(e *env, items []*logicpb.Ack) error
		want string // the target's status after the largest call
	}{
		{name: "Ack", want: "user:1=delivered", do: func(e *env, items []*logicpb.Ack) error {
			_, err := e.rpc.Ack(context.Background(), &logicpb.AckReq{Server: "comet-1", Acks: items})
			return err
		}},
		{name: "Defer", want: "user:1=deferred", do: func(e *env, items []*logicpb.Ack) error {
			_, err := e.rpc.Defer(context.Background(), &logicpb.DeferReq{Deferred: items})
			return err
		}},
	} {
		t.Run(call.name, func(t *testing.T) {
			e := startLogic(t, nil)
			id := dao.NewMsgID()
			if err := e.srv.Service().receipts.Record(context.Background(), id, []string{"user:1"}, nil); err != nil {
				t.Fatal(err)
			}
			good := &logicpb.Ack{MsgId: id, Mid: 1, Key: "k1"}
			tooMany := make([]*logicpb.Ack, MaxAcks+1)
			for i := range tooMany {
				tooMany[i] = good
			}
			for _, tc := range []struct {
				name  string
				items []*logicpb.Ack
			}{
				{name: "too many", items: tooMany},
				{name: "short msg id", items: []*logicpb.Ack{good, {MsgId: id[:30], Mid: 1, Key: "k1"}}},
				{name: "non-hex msg id", items: []*logicpb.Ack{good, {MsgId: "x" + id[1:], Mid: 1, Key: "k1"}}},
				{name: "empty key", items: []*logicpb.Ack{good, {MsgId: id, Mid: 1}}},
				{name: "bad key", items: []*logicpb.Ack{good, {MsgId: id, Mid: 1, Key: "a,b"}}},
			} {
				if err := call.do(e, tc.items); status.Code(err) != codes.InvalidArgument {
					t.Errorf("%s: %s = %v, want InvalidArgument", tc.name, call.name, err)
				}
			}
			if got := strings.Join(e.pushStatus(id), " "); got != "user:1=pending" {
				t.Fatalf("status after refused calls = %s", got)
			}
			if err := call.do(e, tooMany[:MaxAcks]); err != nil {
				t.Fatalf("%s of %d: %v", call.name, MaxAcks, err)
			}
			if got := strings.Join(e.pushStatus(id), " "); got != call.want {
				t.Fatalf("status = %s, want %s", got, call.want)
			}
		})
	}
}

// TestReceiptsOff: with [receipts] enabled = false acks and deferrals are
// checked and dropped, and the status endpoint answers -501.
func TestReceiptsOff(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Receipts.Enabled = false })
	if e.srv.Service().receipts != nil {
		t.Fatal("a tracker with receipts off")
	}
	ctx := context.Background()
	if _, err := e.rpc.Ack(ctx, &logicpb.AckReq{Acks: []*logicpb.Ack{{MsgId: dao.NewMsgID(), Mid: 1, Key: "k1"}}}); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if _, err := e.rpc.Ack(ctx, &logicpb.AckReq{Acks: []*logicpb.Ack{{MsgId: "bad", Key: "k1"}}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad Ack = %v, want InvalidArgument", err)
	}
	if _, err := e.rpc.Defer(ctx, &logicpb.DeferReq{Deferred: []*logicpb.Ack{{MsgId: dao.NewMsgID(), Mid: 1, Key: "k1"}}}); err != nil {
		t.Fatalf("Defer: %v", err)
	}
	if _, err := e.rpc.Defer(ctx, &logicpb.DeferReq{Deferred: []*logicpb.Ack{{MsgId: dao.NewMsgID(), Key: "a b"}}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad Defer = %v, want InvalidArgument", err)
	}
	e.expect("GET", "/goim/push/status?msg_id="+dao.NewMsgID(), nil, 501,
		`{"code":-501,"message":"delivery receipts are off in this logic ([receipts] enabled = false)"}`)
}

// metric is the value of counter name's series with label = value (0
// when absent).
func (e *env) metric(name, label, value string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestReceiptsWebhook: with [receipts.webhook] set, a comet's ack reaches
// the webhook as a signed event.
func TestReceiptsWebhook(t *testing.T) {
	const secret = "logic-test-webhook-secret"
	key := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(key, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bodies := make(chan []byte, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get(receipts.SignatureHeader) != receipts.Sign([]byte(secret), b) {
			t.Errorf("webhook: bad signature on %s", b)
		}
		bodies <- b
	}))
	t.Cleanup(hook.Close)
	e := startLogic(t, func(c *Config) {
		c.Receipts.Webhook.URL = hook.URL
		c.Receipts.Webhook.SecretFile = key
		c.Receipts.Webhook.FlushInterval = conf.Duration(time.Millisecond)
	})
	ctx := context.Background()
	id := dao.NewMsgID()
	if err := e.srv.Service().receipts.Record(ctx, id, []string{"user:42"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rpc.Ack(ctx, &logicpb.AckReq{Server: "comet-1", Acks: []*logicpb.Ack{{MsgId: id, Mid: 42, Key: "k"}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-bodies:
		var evs []receipts.Event
		if err := json.Unmarshal(b, &evs); err != nil || len(evs) != 1 ||
			evs[0].MsgID != id || evs[0].Target != "user:42" || evs[0].Status != "delivered" || evs[0].At <= 0 {
			t.Fatalf("webhook body %s (%v)", b, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook request within 10s")
	}
}
