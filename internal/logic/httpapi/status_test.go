package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestPushStatus(t *testing.T) {
	const (
		id   = "019b7d2a1c409f3e6a0b5d7c21e48a93"
		path = "/goim/push/status?msg_id="
	)
	at := time.UnixMilli(1765000000123)
	found := func() *fakeService {
		return &fakeService{status: []TargetStatus{
			{Target: "key:k-1", Status: "pending", At: at},
			{Target: "user:1001", Status: "delivered", At: at.Add(time.Second)},
		}}
	}
	want := `{"code":0,"message":"","data":{"msg_id":"` + id + `","targets":[` +
		`{"target":"key:k-1","status":"pending","at":1765000000123},` +
		`{"target":"user:1001","status":"delivered","at":1765000001123}]}}`
	runGetCases(t, testConfig(), []getCase{
		{name: "found", svc: found(), target: path + id, wantStatus: 200, wantBody: want,
			wantCall: &call{Method: "PushStatus", MsgID: id}},
		{name: "uppercase id answered in lowercase", svc: found(), target: path + "019B7D2A1C409F3E6A0B5D7C21E48A93",
			wantStatus: 200, wantBody: want, wantCall: &call{Method: "PushStatus", MsgID: id}},
		{name: "no targets is []", svc: &fakeService{status: nil}, target: path + id, wantStatus: 200,
			wantBody: `{"code":0,"message":"","data":{"msg_id":"` + id + `","targets":[]}}`,
			wantCall: &call{Method: "PushStatus", MsgID: id}},
		{name: "missing", target: "/goim/push/status", wantStatus: 400,
			wantBody: `{"code":-400,"message":"msg_id: required"}`},
		{name: "empty", target: path, wantStatus: 400, wantBody: `{"code":-400,"message":"msg_id: required"}`},
		{name: "short", target: path + id[:31], wantStatus: 400,
			wantBody: `{"code":-400,"message":"msg_id: \"` + id[:31] + `\" is not 32 hex digits"}`},
		{name: "not hex", target: path + "z" + id[1:], wantStatus: 400,
			wantBody: `{"code":-400,"message":"msg_id: \"z` + id[1:] + `\" is not 32 hex digits"}`},
		{name: "twice", target: path + id + "&msg_id=" + id, wantStatus: 400,
			wantBody: `{"code":-400,"message":"msg_id: given 2 times, want once"}`},
		{name: "no record", svc: &fakeService{statusErr: fmt.Errorf("logic: %w", ErrNoRecord)}, target: path + id,
			wantStatus: 404, wantCall: &call{Method: "PushStatus", MsgID: id},
			wantBody: `{"code":-404,"message":"msg_id: no delivery record of ` + id +
				` (unknown, not sent to a reliable user or key, or older than its record's keep time)"}`},
		{name: "receipts off", svc: &fakeService{statusErr: ErrReceiptsOff}, target: path + id,
			wantStatus: 501, wantCall: &call{Method: "PushStatus", MsgID: id},
			wantBody: `{"code":-501,"message":"delivery receipts are off in this logic ([receipts] enabled = false)"}`},
		{name: "redis down", svc: &fakeService{statusErr: errors.New("dao: redis: receipts: connection refused")},
			target: path + id, wantStatus: 500, wantCall: &call{Method: "PushStatus", MsgID: id},
			wantBody: `{"code":-500,"message":"dao: redis: receipts: connection refused"}`},
	})
}

// TestPushStatusAccess: the status endpoint takes a read or full token,
// like the online endpoints, and answers 503 while draining.
func TestPushStatusAccess(t *testing.T) {
	const (
		path      = "/goim/push/status?msg_id=019b7d2a1c409f3e6a0b5d7c21e48a93"
		readToken = "read-only-token-0123456789"
		ok        = `{"code":0,"message":"","data":{"msg_id":"019b7d2a1c409f3e6a0b5d7c21e48a93","targets":[]}}`
	)
	cfg := testConfig()
	cfg.ReadTokens = []string{readToken}
	s, _ := newTestServer(t, cfg, &fakeService{})
	for _, tt := range []struct {
		name, auth string
		status     int
		body       string
	}{
		{name: "no token", status: 401, body: `{"code":-401,"message":"missing bearer token: send \"Authorization: Bearer \u003ctoken\u003e\""}`},
		{name: "wrong token", auth: "Bearer nope-0123456789", status: 401, body: `{"code":-401,"message":"invalid bearer token"}`},
		{name: "read token", auth: "Bearer " + readToken, status: 200, body: ok},
		{name: "full token", auth: bearer, status: 200, body: ok},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkResponse(t, serve(t, s.Handler(), http.MethodGet, path, nil, "Authorization", tt.auth), tt.status, tt.body)
		})
	}
	t.Run("POST", func(t *testing.T) {
		got := serve(t, s.Handler(), http.MethodPost, path, []byte("m"))
		checkResponse(t, got, 405, `{"code":-405,"message":"method POST not allowed on /goim/push/status; use GET"}`)
	})
	s.SetDraining()
	checkResponse(t, serve(t, s.Handler(), http.MethodGet, path, nil), 503, `{"code":-500,"message":"logic is shutting down"}`)
}
