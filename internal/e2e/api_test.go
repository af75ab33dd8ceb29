package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/testkit"
)

// The suite's push API credentials: logic's [http] tokens_file holds
// apiToken (push and read scope) and read_tokens_file readToken
// (read scope only). Every request of the suite's helpers carries
// apiToken unless its header says otherwise (see do).
var (
	apiToken  = "e2e-push-" + testkit.RandomHex(16)
	readToken = "e2e-read-" + testkit.RandomHex(16)
)

// bearer is a request header carrying token; token "" means a request
// without any Authorization header.
func bearer(token string) http.Header {
	if token == "" {
		return http.Header{"Authorization": nil}
	}
	return http.Header{"Authorization": {"Bearer " + token}}
}

// httpClient bounds every request: a push waits for Kafka's
// acknowledgement, at most logic's kafka.timeout.
var httpClient = &http.Client{Timeout: 30 * time.Second}

// response is one HTTP answer of logic.
type response struct {
	status int
	header http.Header
	body   []byte
	close  bool // the answer had "Connection: close" (net/http removes the header)
}

// envelope is the decoded response body: {"code","message","data"}.
type envelope struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// do sends a request; a transport error is returned, not fatal, so that
// tests of outages can tell "no answer" from "an error answer". The
// request carries apiToken unless header has an Authorization entry (an
// empty one, or bearer(""), sends none).
func do(method, url string, body io.Reader, header http.Header) (response, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	for k, v := range header {
		req.Header[k] = v
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Del("Authorization")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b, close: resp.Close}, nil
}

// mustDo is do failing the test on a transport error.
func mustDo(t *testing.T, method, url string, body io.Reader) response {
	t.Helper()
	r, err := do(method, url, body, nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// post POSTs body (text/plain) to url.
func post(url, body string) (response, error) {
	return do(http.MethodPost, url, strings.NewReader(body), http.Header{"Content-Type": {"text/plain"}})
}

// pushOK POSTs a push and wants 200 with exactly
// {"code":0,"message":"","data":{"msg_id":"<32 lowercase hex digits>"}}.
func pushOK(t *testing.T, url, body string) {
	t.Helper()
	r, err := post(url, body)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	if r.status != http.StatusOK || !testkit.IsPushAnswer(r.body) {
		t.Fatalf("POST %s: %d %s, want 200 %s", url, r.status, r.body, testkit.PushAnswerShape)
	}
}

// pushAccepted checks that r is an accepted push's answer: the envelope
// with code 0 and data, exactly
// {"code":0,"message":"","data":{"msg_id":"<32 lowercase hex digits>"}}.
func (r response) pushAccepted(t *testing.T, what string) {
	t.Helper()
	r.envelope(t, what, 0, true)
	if !testkit.IsPushAnswer(r.body) {
		t.Errorf("%s: %s, want %s", what, r.body, testkit.PushAnswerShape)
	}
}

// envelope checks the documented envelope of r: the HTTP status that
// goes with code, Content-Type, and the fields code, message and (when
// hasData) data in that order and no others. It returns the decoded body.
func (r response) envelope(t *testing.T, what string, code int, hasData bool) envelope {
	t.Helper()
	status := map[int]int{0: 200, -400: 400, -401: 401, -403: 403, -404: 404, -405: 405, -500: 500}[code]
	if r.status != status {
		t.Fatalf("%s: HTTP %d %s, want %d", what, r.status, r.body, status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	want := []string{"code", "message"}
	if hasData {
		want = append(want, "data")
	}
	if keys := objectKeys(t, r.body); !slices.Equal(keys, want) {
		t.Errorf("%s: fields %q, want %q in that order: %s", what, keys, want, r.body)
	}
	var e envelope
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("%s: %v: %s", what, err, r.body)
	}
	if e.Code != code {
		t.Fatalf("%s: code %d, want %d: %s", what, e.Code, code, r.body)
	}
	if code == 0 && e.Message != "" {
		t.Errorf("%s: message %q on success", what, e.Message)
	}
	if code != 0 && e.Message == "" {
		t.Errorf("%s: empty message on code %d", what, code)
	}
	return e
}

// objectKeys returns the keys of the JSON object b, in order.
func objectKeys(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", b)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
	}
	return keys
}

// getData GETs url and decodes the data of a code-0 answer into v.
func getData(url string, v any) error {
	r, err := do(http.MethodGet, url, nil, nil)
	if err != nil {
		return err
	}
	var e envelope
	if err := json.Unmarshal(r.body, &e); err != nil {
		return fmt.Errorf("GET %s: %d %s: %w", url, r.status, r.body, err)
	}
	if r.status != 200 || e.Code != 0 {
		return fmt.Errorf("GET %s: %d %s", url, r.status, r.body)
	}
	return json.Unmarshal(e.Data, v)
}
