package bench

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func pushConfig(api string) PushConfig {
	return PushConfig{Run: "t1", API: api, Kind: KindRoom, Op: 1000, Rooms: []string{"live://1"}, Rate: 100,
		Concurrency: 2, Duration: time.Second, Size: 64, HTTPTimeout: 5 * time.Second}
}

func TestPusherAnswersAndRecord(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		if r.URL.Path != "/goim/push/mids" || r.URL.Query().Get("operation") != "1000" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "bad request "+r.URL.String(), http.StatusBadRequest)
			return
		}
		switch r.URL.Query().Get("mids") {
		case "1": // goim's answer (the other tests answer goim v2's {"code":0,"message":""})
			_, _ = io.WriteString(w, `{"code":0,"message":"","data":{"msg_id":"019b7d2a1c409f3e6a0b5d7c21e48a93"}}`)
		case "2":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"code":-500,"message":"kafka down"}`)
		default:
			_, _ = io.WriteString(w, `not json`)
		}
	}))
	defer srv.Close()
	cfg := pushConfig(srv.URL)
	cfg.Kind, cfg.Mids, cfg.Rooms, cfg.Token = KindMids, []int64{1, 2, 3, 2}, nil, "tok"
	cfg.Flood, cfg.Concurrency, cfg.Count = true, 1, 6
	p, err := NewPusher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Run(context.Background())
	r := p.Record()
	if r.Sent != 6 || r.Accepted != 2 || r.Failed != 4 {
		t.Fatalf("sent %d accepted %d failed %d", r.Sent, r.Accepted, r.Failed)
	}
	if want := map[string]uint64{"200/0": 2, "500/-500": 2, "200/?": 2}; len(r.Answers) != 3 || r.Answers["200/0"] != 2 || r.Answers["500/-500"] != 2 || r.Answers["200/?"] != 2 {
		t.Fatalf("answers %v, want %v", r.Answers, want)
	}
	if len(r.Streams) != 3 || r.Streams[1].Stream != "mid:2" || !slices.Equal(r.Streams[1].Failed, []uint64{1, 2}) || len(r.Streams[0].Failed) != 0 {
		t.Fatalf("streams %+v", r.Streams)
	}
	for _, st := range r.Streams {
		if !slices.IsSorted(st.Sent) || len(st.Sent) != 2 {
			t.Fatalf("stream %s sent %v", st.Stream, st.Sent)
		}
	}
	for _, b := range bodies {
		parsed, err := ParseBody([]byte(b))
		if err != nil || len(b) != 64 || string(parsed.Run) != "t1" || !strings.HasPrefix(string(parsed.Stream), "mid:") {
			t.Fatalf("body %q: %v", b, err)
		}
	}
}

func TestPusherOpenLoopCountsBehind(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(400 * time.Millisecond) // slower than the schedule
		_, _ = io.WriteString(w, `{"code":0,"message":""}`)
	}))
	defer srv.Close()
	cfg := pushConfig(srv.URL)
	cfg.Rate, cfg.Concurrency, cfg.Duration = 100, 2, 200*time.Millisecond
	p, err := NewPusher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Run(context.Background())
	r := p.Record()
	if r.Sent != 2 || r.Accepted != 2 || r.Behind < 10 || r.Behind > 20 {
		t.Fatalf("sent %d accepted %d behind %d: want 2 sent and the other ~18 slots behind", r.Sent, r.Accepted, r.Behind)
	}
}

func TestPusherCountBound(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"code":0,"message":""}`)
	}))
	defer srv.Close()
	for _, flood := range []bool{false, true} {
		cfg := pushConfig(srv.URL)
		cfg.Rate, cfg.Count, cfg.Flood, cfg.Duration = 1000, 7, flood, 10*time.Second
		p, err := NewPusher(cfg)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		p.Run(context.Background())
		p.Close()
		if r := p.Record(); r.Sent != 7 || len(r.Streams[0].Sent) != 7 {
			t.Fatalf("flood %v: sent %d", flood, r.Sent)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("flood %v: the count bound did not end the run", flood)
		}
	}
}

// TestPusherSeveralAPIs: with several -api URLs, each stream's pushes go
// to them in turn; a bad one is refused.
func TestPusherSeveralAPIs(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			got[name+" "+r.URL.Query().Get("room")]++
			mu.Unlock()
			_, _ = io.WriteString(w, `{"code":0,"message":""}`)
		})
	}
	a, b := httptest.NewServer(handler("a")), httptest.NewServer(handler("b"))
	defer a.Close()
	defer b.Close()
	cfg := pushConfig(a.URL + "," + b.URL + "/")
	cfg.Rooms = []string{"live://1", "live://2"}
	cfg.Flood, cfg.Concurrency, cfg.Count = true, 1, 8
	p, err := NewPusher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Run(context.Background())
	p.Close()
	if r := p.Record(); r.Accepted != 8 {
		t.Fatalf("accepted %d of %d", r.Accepted, r.Sent)
	}
	want := map[string]int{"a 1": 2, "b 1": 2, "a 2": 2, "b 2": 2}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("pushes by API and room %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("pushes by API and room %v, want %v", got, want)
		}
	}
	cfg.API = a.URL + ",ftp://x"
	if _, err := NewPusher(cfg); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "ftp://x") {
		t.Fatalf("a bad second API: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	okPush := pushConfig("http://127.0.0.1:3111")
	okConns := ConnsConfig{Run: "r", N: 10, Transport: TransportTCP, Addrs: []string{"127.0.0.1:3101"}, WSPath: "/sub",
		DialConcurrency: 10, HandshakeTimeout: time.Second, Heartbeat: time.Second, ReadBuffer: 1024}
	if err := okPush.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := okConns.Validate(); err != nil {
		t.Fatal(err)
	}
	pushCases := []struct {
		name string
		edit func(*PushConfig)
	}{
		{name: "bad run", edit: func(c *PushConfig) { c.Run = "a b" }},
		{name: "bad api", edit: func(c *PushConfig) { c.API = "127.0.0.1:3111" }},
		{name: "op 0", edit: func(c *PushConfig) { c.Op = 0 }},
		{name: "room without type", edit: func(c *PushConfig) { c.Rooms = []string{"1000"} }},
		{name: "mids without targets", edit: func(c *PushConfig) { c.Kind = KindMids }},
		{name: "negative mid", edit: func(c *PushConfig) { c.Kind, c.Mids = KindMids, []int64{-1} }},
		{name: "key with a space", edit: func(c *PushConfig) { c.Kind, c.Keys = KindKeys, []string{"a b"} }},
		{name: "unknown kind", edit: func(c *PushConfig) { c.Kind = "user" }},
		{name: "no rate", edit: func(c *PushConfig) { c.Rate = 0 }},
		{name: "no duration", edit: func(c *PushConfig) { c.Duration = 0 }},
		{name: "body too large", edit: func(c *PushConfig) { c.Size = MaxBodySize + 1 }},
		{name: "no concurrency", edit: func(c *PushConfig) { c.Concurrency = 0 }},
	}
	for _, tc := range pushCases {
		t.Run("push "+tc.name, func(t *testing.T) {
			c := okPush
			tc.edit(&c)
			if err := c.Validate(); !errors.Is(err, ErrUsage) {
				t.Fatalf("error %v, want ErrUsage", err)
			}
		})
	}
	connsCases := []struct {
		name string
		edit func(*ConnsConfig)
	}{
		{name: "no connections", edit: func(c *ConnsConfig) { c.N = 0 }},
		{name: "bad transport", edit: func(c *ConnsConfig) { c.Transport = "udp" }},
		{name: "no comet", edit: func(c *ConnsConfig) { c.Addrs = nil }},
		{name: "no dial concurrency", edit: func(c *ConnsConfig) { c.DialConcurrency = 0 }},
		{name: "heartbeat too fast", edit: func(c *ConnsConfig) { c.Heartbeat = time.Millisecond }},
		{name: "room with a space", edit: func(c *ConnsConfig) { c.Rooms = []string{"live://a b"} }},
		{name: "tiny read buffer", edit: func(c *ConnsConfig) { c.ReadBuffer = 8 }},
	}
	for _, tc := range connsCases {
		t.Run("conns "+tc.name, func(t *testing.T) {
			c := okConns
			tc.edit(&c)
			if err := c.Validate(); !errors.Is(err, ErrUsage) {
				t.Fatalf("error %v, want ErrUsage", err)
			}
		})
	}
}

// TestResolveToken: -token-file (its first token line), else -token, else
// GOIM_HTTP_TOKEN; both flags is a usage error.
func TestResolveToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	if err := os.WriteFile(file, []byte("# push API tokens\n\n  first-token-0123456789  \nsecond-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("# none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, env, file, inline string
		want                    string
		wantErr                 bool
	}{
		{name: "none", want: ""},
		{name: "variable", env: "env-token, other", want: "env-token"},
		{name: "flag wins over the variable", env: "env-token", inline: "flag-token", want: "flag-token"},
		{name: "file wins over the variable", env: "env-token", file: file, want: "first-token-0123456789"},
		{name: "file and flag", file: file, inline: "flag-token", wantErr: true},
		{name: "file without a token", file: empty, wantErr: true},
		{name: "missing file", file: filepath.Join(dir, "nope"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvToken, tt.env)
			got, err := ResolveToken(tt.file, tt.inline)
			if tt.wantErr {
				if !errors.Is(err, ErrUsage) {
					t.Fatalf("ResolveToken: %q, %v; want a usage error", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ResolveToken = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
