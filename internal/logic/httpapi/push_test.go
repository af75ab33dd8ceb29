package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// okJSON is the answer to a push the fake service accepts.
const okJSON = `{"code":0,"message":"","data":{"msg_id":"` + fakeMsgID + `"}}`

func badJSON(msg string) string {
	b, err := encode(CodeBadRequest, msg, nil)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// allBytes is a binary message: every byte value once.
func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

type pushCase struct {
	name       string
	path       string
	query      string
	body       []byte
	wantStatus int
	wantBody   string
	wantCall   *call // nil: the service must not be called
}

func runPushCases(t *testing.T, cases []pushCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := &fakeService{}
			s, _ := newTestServer(t, testConfig(), svc)
			target := tc.path
			if tc.query != "" {
				target += "?" + tc.query
			}
			got := serve(t, s.Handler(), http.MethodPost, target, tc.body)
			checkResponse(t, got, tc.wantStatus, tc.wantBody)
			calls := svc.Calls()
			switch {
			case tc.wantCall == nil && len(calls) != 0:
				t.Errorf("service called: %+v", calls)
			case tc.wantCall != nil && len(calls) != 1:
				t.Errorf("service calls = %+v, want one %+v", calls, *tc.wantCall)
			case tc.wantCall != nil && !reflect.DeepEqual(calls[0], *tc.wantCall):
				t.Errorf("service call:\n got %+v\nwant %+v", calls[0], *tc.wantCall)
			}
		})
	}
}

// opCases are the operation failures every push endpoint shares; rest
// completes the query with valid other parameters.
func opCases(path, rest string) []pushCase {
	msg := []byte("hi")
	return []pushCase{
		{name: "operation missing", path: path, query: rest, body: msg, wantStatus: 400, wantBody: badJSON("operation: required")},
		{name: "operation empty", path: path, query: "operation=&" + rest, body: msg, wantStatus: 400, wantBody: badJSON("operation: required")},
		{name: "operation not integer", path: path, query: "operation=abc&" + rest, body: msg, wantStatus: 400, wantBody: badJSON(`operation: "abc" is not an integer`)},
		{name: "operation float", path: path, query: "operation=1.5&" + rest, body: msg, wantStatus: 400, wantBody: badJSON(`operation: "1.5" is not an integer`)},
		{name: "operation negative", path: path, query: "operation=-1&" + rest, body: msg, wantStatus: 400, wantBody: badJSON("operation: must be > 0, got -1")},
		{name: "operation zero", path: path, query: "operation=0&" + rest, body: msg, wantStatus: 400, wantBody: badJSON("operation: must be > 0, got 0")},
		{name: "operation over int32", path: path, query: "operation=2147483648&" + rest, body: msg, wantStatus: 400, wantBody: badJSON(`operation: "2147483648" is out of range for int32`)},
		{name: "operation twice", path: path, query: "operation=1&operation=2&" + rest, body: msg, wantStatus: 400, wantBody: badJSON("operation: given 2 times, want once")},
		{name: "operation long value cut", path: path, query: "operation=" + strings.Repeat("x", 100) + "&" + rest, body: msg, wantStatus: 400,
			wantBody: badJSON(`operation: "` + strings.Repeat("x", 64) + `"... is not an integer`)},
		{name: "query bad escape", path: path, query: "operation=%zz&" + rest, body: msg, wantStatus: 400, wantBody: badJSON(`query: invalid URL escape "%zz"`)},
		{name: "query semicolon", path: path, query: "operation=1;" + rest, body: msg, wantStatus: 400, wantBody: badJSON("query: invalid semicolon separator in query")},
		{name: "empty body", path: path, query: "operation=1&" + rest, body: nil, wantStatus: 400, wantBody: badJSON("body: empty message")},
		{name: "body over limit", path: path, query: "operation=1&" + rest, body: make([]byte, 4097), wantStatus: 400, wantBody: badJSON("body: 4097 bytes exceeds the limit of 4096")},
		{name: "params checked before body", path: path, query: rest, body: make([]byte, 5000), wantStatus: 400, wantBody: badJSON("operation: required")},
	}
}

func TestPushKeys(t *testing.T) {
	const path = "/goim/push/keys"
	cases := opCases(path, "keys=a")
	cases = append(cases, []pushCase{
		{name: "keys missing", path: path, query: "operation=7", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON("keys: required (repeat keys=... or separate with commas)")},
		{name: "keys empty", path: path, query: "operation=7&keys=", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON("keys: required (repeat keys=... or separate with commas)")},
		{name: "keys empty element comma", path: path, query: "operation=7&keys=a,,b", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON("keys: empty value at position 2")},
		{name: "keys trailing comma", path: path, query: "operation=7&keys=a,b,", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON("keys: empty value at position 3")},
		{name: "keys empty repeated value", path: path, query: "operation=7&keys=a&keys=", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON("keys: empty value at position 2")},
		{name: "keys empty element mixed", path: path, query: "operation=7&keys=a&keys=b,c,&keys=d", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON("keys: empty value at position 4")},
		{name: "repeated", path: path, query: "operation=7&keys=a&keys=b", body: []byte("m"), wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushKeys", Op: 7, Keys: []string{"a", "b"}, Msg: []byte("m")}},
		{name: "comma", path: path, query: "operation=7&keys=a,b", body: []byte("m"), wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushKeys", Op: 7, Keys: []string{"a", "b"}, Msg: []byte("m")}},
		{name: "mixed with duplicates keeps first-seen order", path: path, query: "keys=c,a&operation=7&keys=b&keys=a,d,c", body: []byte("m"),
			wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushKeys", Op: 7, Keys: []string{"c", "a", "b", "d"}, Msg: []byte("m")}},
		{name: "escaped comma splits too", path: path, query: "operation=7&keys=x%2Cy&keys=%E2%9C%93", body: []byte("m"), wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushKeys", Op: 7, Keys: []string{"x", "y", "✓"}, Msg: []byte("m")}},
		{name: "unknown parameters ignored", path: path, query: "operation=7&keys=k&foo=bar", body: []byte("m"), wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushKeys", Op: 7, Keys: []string{"k"}, Msg: []byte("m")}},
		{name: "binary body unchanged", path: path, query: "operation=2147483647&keys=k", body: allBytes(), wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushKeys", Op: 2147483647, Keys: []string{"k"}, Msg: allBytes()}},
		{name: "body exactly the limit", path: path, query: "operation=1&keys=k", body: bytes.Repeat([]byte{0xfe}, 4096), wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushKeys", Op: 1, Keys: []string{"k"}, Msg: bytes.Repeat([]byte{0xfe}, 4096)}},
	}...)
	runPushCases(t, cases)
}

func TestPushMids(t *testing.T) {
	const path = "/goim/push/mids"
	cases := opCases(path, "mids=1")
	cases = append(cases, []pushCase{
		{name: "mids missing", path: path, query: "operation=3", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON("mids: required (repeat mids=... or separate with commas)")},
		{name: "mids not integer", path: path, query: "operation=3&mids=x", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON(`mids: "x" at position 1 is not an integer`)},
		{name: "mids not integer at 2", path: path, query: "operation=3&mids=1,x", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON(`mids: "x" at position 2 is not an integer`)},
		{name: "mids not integer repeated form", path: path, query: "operation=3&mids=1&mids=2&mids=%20", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON(`mids: " " at position 3 is not an integer`)},
		{name: "mids zero", path: path, query: "operation=3&mids=1&mids=0", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON("mids: must be > 0, got 0")},
		{name: "mids negative", path: path, query: "operation=3&mids=-3", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON("mids: must be > 0, got -3")},
		{name: "mids over int64", path: path, query: "operation=3&mids=9223372036854775808", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON(`mids: "9223372036854775808" at position 1 is out of range for int64`)},
		{name: "mids empty element", path: path, query: "operation=3&mids=1,,2", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON("mids: empty value at position 2")},
		{name: "mids mixed with duplicates", path: path, query: "operation=3&mids=3,1&mids=3,2&mids=9223372036854775807", body: []byte("m"),
			wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushMids", Op: 3, Mids: []int64{3, 1, 2, 9223372036854775807}, Msg: []byte("m")}},
	}...)
	runPushCases(t, cases)
}

func TestPushRoom(t *testing.T) {
	const path = "/goim/push/room"
	cases := opCases(path, "type=live&room=1000")
	cases = append(cases, []pushCase{
		{name: "type missing", path: path, query: "operation=5&room=1000", body: []byte("m"), wantStatus: 400, wantBody: badJSON("type: required")},
		{name: "type empty", path: path, query: "operation=5&type=&room=1000", body: []byte("m"), wantStatus: 400, wantBody: badJSON("type: required")},
		{name: "type with scheme separator", path: path, query: "operation=5&type=live://x&room=1000", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON(`type: must not contain "://"`)},
		{name: "room missing", path: path, query: "operation=5&type=live", body: []byte("m"), wantStatus: 400, wantBody: badJSON("room: required")},
		{name: "room twice", path: path, query: "operation=5&type=live&room=1&room=2", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON("room: given 2 times, want once")},
		{name: "ok", path: path, query: "operation=5&type=live&room=1000", body: []byte(`{"text":"hi"}`), wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushRoom", Op: 5, Room: "live://1000", Msg: []byte(`{"text":"hi"}`)}},
		{name: "room id kept as given", path: path, query: "operation=5&type=live&room=a%2Cb%2Fc", body: []byte("m"), wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushRoom", Op: 5, Room: "live://a,b/c", Msg: []byte("m")}},
		{name: "room id of the longest length", path: path, query: "operation=5&type=live&room=" + strings.Repeat("r", 121), body: []byte("m"),
			wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushRoom", Op: 5, Room: "live://" + strings.Repeat("r", 121), Msg: []byte("m")}},
		{name: "room id one byte too long", path: path, query: "operation=5&type=live&room=" + strings.Repeat("r", 122), body: []byte("m"),
			wantStatus: 400, wantBody: badJSON(`room: room id "live://` + strings.Repeat("r", 57) + `"... is invalid: 129 bytes, at most 128` + roomRule)},
		{name: "room id with a space", path: path, query: "operation=5&type=live&room=a%20b", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON(`room: room id "live://a b" is invalid: byte 8 (0x20) is not allowed` + roomRule)},
		{name: "room id with markup", path: path, query: "operation=5&type=live&room=%3Cscript%3E", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON(`room: room id "live://<script>" is invalid: byte 7 (0x3c) is not allowed` + roomRule)},
		{name: "room id not ASCII", path: path, query: "operation=5&type=live&room=%E2%9C%93", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON(`room: room id "live://✓" is invalid: byte 7 (0xe2) is not allowed` + roomRule)},
		{name: "type with a quote", path: path, query: "operation=5&type=li%22ve&room=1", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON(`type: room id "li\"ve://" is invalid: byte 2 (0x22) is not allowed` + roomRule)},
		{name: "type too long for any room", path: path, query: "operation=5&type=" + strings.Repeat("t", 126) + "&room=1", body: []byte("m"),
			wantStatus: 400, wantBody: badJSON(`type: room id "` + strings.Repeat("t", 64) + `"... is invalid: 129 bytes, at most 128` + roomRule)},
	}...)
	runPushCases(t, cases)
}

func TestPushAll(t *testing.T) {
	const path = "/goim/push/all"
	cases := opCases(path, "speed=1")
	cases = append(cases, []pushCase{
		{name: "speed negative", path: path, query: "operation=1&speed=-5", body: []byte("m"), wantStatus: 400, wantBody: badJSON("speed: must be 0..1000000, got -5")},
		{name: "speed over the bound", path: path, query: "operation=1&speed=1000001", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON("speed: must be 0..1000000, got 1000001")},
		{name: "speed at the bound", path: path, query: "operation=1&speed=1000000", body: []byte("m"), wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushAll", Op: 1, Speed: 1000000, Msg: []byte("m")}},
		{name: "speed not integer", path: path, query: "operation=1&speed=fast", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON(`speed: "fast" is not an integer`)},
		{name: "speed over int32", path: path, query: "operation=1&speed=4294967296", body: []byte("m"), wantStatus: 400,
			wantBody: badJSON(`speed: "4294967296" is out of range for int32`)},
		{name: "speed absent", path: path, query: "operation=1", body: []byte("m"), wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushAll", Op: 1, Speed: 0, Msg: []byte("m")}},
		{name: "speed empty", path: path, query: "operation=1&speed=", body: []byte("m"), wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushAll", Op: 1, Speed: 0, Msg: []byte("m")}},
		{name: "speed", path: path, query: "operation=1&speed=2000", body: []byte("m"), wantStatus: 200, wantBody: okJSON,
			wantCall: &call{Method: "PushAll", Op: 1, Speed: 2000, Msg: []byte("m")}},
	}...)
	runPushCases(t, cases)
}

// roomRule ends the message of a refused room id.
const roomRule = " (at most 128 bytes of letters, digits and -._~:/@!$&'()*+,;=%)"

// TestPushListBounds: keys and mids beyond max_keys and max_mids, counted
// after duplicates are dropped, are refused before the service is called;
// the defaults are 1000.
func TestPushListBounds(t *testing.T) {
	list := func(prefix string, n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(prefix + strconv.Itoa(i+1))
		}
		return b.String()
	}
	tests := []struct {
		name       string
		max        int // MaxKeys and MaxMids; 0: the default
		target     string
		wantStatus int
		wantBody   string
		wantN      int // keys or mids the service got
	}{
		{name: "default keys at the bound", target: "/goim/push/keys?operation=1&keys=" + list("k", 1000), wantStatus: 200, wantBody: okJSON, wantN: 1000},
		{name: "default keys over", target: "/goim/push/keys?operation=1&keys=" + list("k", 1001), wantStatus: 400,
			wantBody: badJSON("keys: 1001 distinct values, at most 1000 (http.max_keys)")},
		{name: "default mids at the bound", target: "/goim/push/mids?operation=1&mids=" + list("", 1000), wantStatus: 200, wantBody: okJSON, wantN: 1000},
		{name: "default mids over", target: "/goim/push/mids?operation=1&mids=" + list("", 1001), wantStatus: 400,
			wantBody: badJSON("mids: 1001 distinct values, at most 1000 (http.max_mids)")},
		{name: "keys over a small bound", max: 3, target: "/goim/push/keys?operation=1&keys=a,b&keys=c,d", wantStatus: 400,
			wantBody: badJSON("keys: 4 distinct values, at most 3 (http.max_keys)")},
		{name: "duplicate keys not counted", max: 3, target: "/goim/push/keys?operation=1&keys=a,b,a,c,b,c,a", wantStatus: 200, wantBody: okJSON, wantN: 3},
		{name: "mids over a small bound", max: 3, target: "/goim/push/mids?operation=1&mids=1,2,3,4", wantStatus: 400,
			wantBody: badJSON("mids: 4 distinct values, at most 3 (http.max_mids)")},
		{name: "duplicate mids not counted", max: 3, target: "/goim/push/mids?operation=1&mids=1,1,2,2,3,3", wantStatus: 200, wantBody: okJSON, wantN: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.max > 0 {
				cfg.MaxKeys, cfg.MaxMids = tt.max, tt.max
			}
			svc := &fakeService{}
			s, _ := newTestServer(t, cfg, svc)
			got := serve(t, s.Handler(), http.MethodPost, tt.target, []byte("m"))
			checkResponse(t, got, tt.wantStatus, tt.wantBody)
			calls := svc.Calls()
			switch {
			case tt.wantN == 0 && len(calls) != 0:
				t.Errorf("service called: %d calls", len(calls))
			case tt.wantN > 0 && (len(calls) != 1 || len(calls[0].Keys)+len(calls[0].Mids) != tt.wantN):
				t.Errorf("service calls %d, want one with %d targets", len(calls), tt.wantN)
			}
		})
	}
}

func TestPushServiceError(t *testing.T) {
	svc := &fakeService{pushErr: errors.New("logic: push room: dao: kafka: publish: context deadline exceeded")}
	s, _ := newTestServer(t, testConfig(), svc)
	for _, path := range []string{"/goim/push/keys?keys=k", "/goim/push/mids?mids=1", "/goim/push/room?type=t&room=r", "/goim/push/all?"} {
		t.Run(path, func(t *testing.T) {
			got := serve(t, s.Handler(), http.MethodPost, path+"&operation=1", []byte("m"))
			checkResponse(t, got, 500, `{"code":-500,"message":"logic: push room: dao: kafka: publish: context deadline exceeded"}`)
		})
	}
}

// TestPushAnswersMsgID: every push endpoint answers the service's msg_id
// as data.msg_id, byte for byte as encode renders it, also for an id
// JSON must escape (the service promises plain ASCII; the answer stays
// valid JSON if it breaks that).
func TestPushAnswersMsgID(t *testing.T) {
	paths := []string{"/goim/push/keys?keys=k", "/goim/push/mids?mids=1", "/goim/push/room?type=t&room=r", "/goim/push/all?"}
	for _, id := range []string{"019b7d2a1c409f3e6a0b5d7c21e48a93", "x", `a"b\c<d>&` + "\x00\n\u00e9\u2028"} {
		want, err := encode(CodeOK, "", pushData{MsgID: id})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := newTestServer(t, testConfig(), &fakeService{msgID: id})
		for _, path := range paths {
			got := serve(t, s.Handler(), http.MethodPost, path+"&operation=1", []byte("m"))
			checkResponse(t, got, 200, string(want))
			var answer struct {
				Code *int `json:"code"`
				Data struct {
					MsgID *string `json:"msg_id"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(got.body), &answer); err != nil || answer.Code == nil || *answer.Code != 0 ||
				answer.Data.MsgID == nil || *answer.Data.MsgID != id {
				t.Errorf("%s with id %q: answer %s (%v)", path, id, got.body, err)
			}
		}
	}
	if b, ok := pushedBody("019b7d2a1c409f3e6a0b5d7c21e48a93"); !ok ||
		string(b) != `{"code":0,"message":"","data":{"msg_id":"019b7d2a1c409f3e6a0b5d7c21e48a93"}}` {
		t.Errorf("pushedBody = %s, %v", b, ok)
	}
}

// countingReader is an endless body that counts what was read of it.
type countingReader struct{ n int }

func (r *countingReader) Read(p []byte) (int, error) {
	clear(p)
	r.n += len(p)
	return len(p), nil
}

// TestOversizedBodyNotRead: a body without Content-Length is read up to
// MaxBody+1 bytes only, then rejected.
func TestOversizedBodyNotRead(t *testing.T) {
	svc := &fakeService{}
	s, _ := newTestServer(t, testConfig(), svc)
	body := &countingReader{}
	req := httptest.NewRequest(http.MethodPost, "/goim/push/all?operation=1", io.NopCloser(body))
	req.ContentLength = -1
	req.Header.Set("Authorization", bearer)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	checkResponse(t, response{status: rec.Code, header: rec.Header(), body: rec.Body.String()},
		400, badJSON("body: exceeds the limit of 4096 bytes"))
	if body.n > 4097+512 { // io.ReadAll's read sizes; never the whole body
		t.Errorf("read %d bytes of the body, want about 4097", body.n)
	}
	if rec.Header().Get("Connection") != "close" {
		t.Errorf("Connection = %q, want close", rec.Header().Get("Connection"))
	}
	if calls := svc.Calls(); len(calls) != 0 {
		t.Errorf("service called: %+v", calls)
	}
}

// TestBodyLimitOverSocket sends bodies over a real connection, with and
// without Content-Length (chunked).
func TestBodyLimitOverSocket(t *testing.T) {
	tests := []struct {
		name       string
		size       int
		chunked    bool
		wantStatus int
		wantBody   string
	}{
		{name: "content-length over", size: 5000, wantStatus: 400, wantBody: badJSON("body: 5000 bytes exceeds the limit of 4096")},
		{name: "chunked over", size: 5000, chunked: true, wantStatus: 400, wantBody: badJSON("body: exceeds the limit of 4096 bytes")},
		{name: "chunked one over", size: 4097, chunked: true, wantStatus: 400, wantBody: badJSON("body: exceeds the limit of 4096 bytes")},
		{name: "chunked at limit", size: 4096, chunked: true, wantStatus: 200, wantBody: okJSON},
		{name: "chunked empty", size: 0, chunked: true, wantStatus: 400, wantBody: badJSON("body: empty message")},
		{name: "content-length at limit", size: 4096, wantStatus: 200, wantBody: okJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := &fakeService{}
			s := startServer(t, testConfig(), svc)
			msg := bytes.Repeat([]byte{'z'}, tt.size)
			got := rawPost(t, s.Addr(), "/goim/push/keys?operation=1&keys=k", msg, tt.chunked)
			checkResponse(t, got, tt.wantStatus, tt.wantBody)
			calls := svc.Calls()
			if tt.wantStatus == 200 {
				if len(calls) != 1 || !bytes.Equal(calls[0].Msg, msg) {
					t.Errorf("service calls = %d, want one with the %d-byte body", len(calls), len(msg))
				}
			} else if len(calls) != 0 {
				t.Errorf("service called %d times", len(calls))
			}
		})
	}
}

// rawPost writes a POST with body over a new connection to addr, framed
// with Content-Length or, if chunked, as two chunks, and reads the
// response.
func rawPost(t *testing.T, addr, target string, body []byte, chunked bool) response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: test\r\nAuthorization: %s\r\n", target, bearer)
	if chunked {
		req.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		half := len(body) / 2
		for _, part := range [][]byte{body[:half], body[half:]} {
			if len(part) > 0 {
				fmt.Fprintf(&req, "%x\r\n%s\r\n", len(part), part)
			}
		}
		req.WriteString("0\r\n\r\n")
	} else {
		fmt.Fprintf(&req, "Content-Length: %d\r\n\r\n%s", len(body), body)
	}
	// The server may answer and close before reading everything: a write
	// error is then expected, the response is what counts.
	_, _ = conn.Write(req.Bytes())
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}
