package webclient_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/webclient"
)

// fakeComet is a WebSocket endpoint speaking just enough of the protocol
// to test the client's failure handling: each connection takes the next
// of its modes ("ok" once they run out):
//   - ok: op 8 to the auth, op 3 to every heartbeat;
//   - silent: op 8 to the auth, no heartbeat reply;
//   - refuse: close after the auth frame, without op 8;
//   - mute: read the auth frame and answer nothing.
type fakeComet struct {
	mu    sync.Mutex
	modes []string
	conns []*fakeConn
}

// fakeConn is what the fake saw of one connection.
type fakeConn struct {
	mode     string
	accepted time.Time
	closed   time.Time // when its read failed; zero while open
	auth     map[string]any
}

func (f *fakeComet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	defer conn.Close()
	f.mu.Lock()
	fc := &fakeConn{mode: "ok", accepted: time.Now()}
	if len(f.modes) > 0 {
		fc.mode, f.modes = f.modes[0], f.modes[1:]
	}
	f.conns = append(f.conns, fc)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		fc.closed = time.Now()
		f.mu.Unlock()
	}()
	for {
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		msg, err := wsutil.ReadClientBinary(conn)
		if err != nil || len(msg) < 16 {
			return
		}
		op, seq := int32(binary.BigEndian.Uint32(msg[8:])), int32(binary.BigEndian.Uint32(msg[12:]))
		var reply []byte
		switch {
		case op == 7:
			var auth map[string]any
			_ = json.Unmarshal(msg[16:], &auth)
			f.mu.Lock()
			fc.auth = auth
			f.mu.Unlock()
			switch fc.mode {
			case "refuse":
				return
			case "mute":
				continue
			}
			reply = frame(8, seq, nil)
		case op == 2 && fc.mode == "ok":
			reply = frame(3, seq, []byte{0, 0, 0, 7})
		default:
			continue
		}
		if err := wsutil.WriteServerBinary(conn, reply); err != nil {
			return
		}
	}
}

// snapshot returns copies of the connections seen so far.
func (f *fakeComet) snapshot() []fakeConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]fakeConn, len(f.conns))
	for i, c := range f.conns {
		out[i] = *c
	}
	return out
}

// startFake serves the test page, /goim.js and the fake comet at /sub.
func startFake(t *testing.T, modes ...string) (*fakeComet, *httptest.Server) {
	t.Helper()
	f := &fakeComet{modes: modes}
	mux := http.NewServeMux()
	mux.Handle("GET /goim.js", webclient.Handler())
	mux.Handle("GET /page", pageHandler())
	mux.Handle("GET /sub", f)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

// TestClientHeartbeatTimeout: a connection whose heartbeats get no reply
// is dropped after a period without one; the client reconnects after the
// backoff delay with a fresh token, the same room and accepts.
func TestClientHeartbeatTimeout(t *testing.T) {
	f, srv := startFake(t, "silent")
	p := openHarness(t, srv.URL+"/page")
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/sub"
	const delay = 400 // ms, jitter 0
	if err := p.Eval(`(() => { let n = 0; return h.start({url: `+js(u)+`, heartbeat: 300,
		backoff: {base: `+js(delay)+`, max: `+js(delay)+`, factor: 2, jitter: 0},
		token: async () => 'tok-' + (++n),
		auth: {mid: 7, room_id: 'live://hb', accepts: [1000, 1001]}}); })()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait("a second connection", `h.states.filter((s) => s === 'connected').length >= 2`, stateJS); err != nil {
		t.Fatal(err)
	}
	var states []string
	if err := p.Eval(`h.states`, &states); err != nil {
		t.Fatal(err)
	}
	want := []string{"connecting", "connected", "disconnected: HeartbeatTimeoutError: no heartbeat reply within 300 ms", "connecting", "connected"}
	if strings.Join(states[:5], "|") != strings.Join(want, "|") {
		t.Fatalf("states %q, want %q", states, want)
	}
	// The second connection heartbeats and gets the online count.
	if err := p.Wait("the online count", `h.c.online === 7`, stateJS); err != nil {
		t.Fatal(err)
	}
	var conns []fakeConn
	testkit.WaitFor(t, 5*time.Second, func() error {
		if conns = f.snapshot(); len(conns) < 2 || conns[0].closed.IsZero() {
			return fmt.Errorf("connections %+v", conns)
		}
		return nil
	})
	if gap := conns[1].accepted.Sub(conns[0].closed); gap < (delay-50)*time.Millisecond {
		t.Errorf("reconnected %v after the drop, want the backoff delay %d ms", gap, delay)
	}
	for i, c := range conns[:2] {
		if c.auth["token"] != "tok-"+strconv.Itoa(i+1) || c.auth["room_id"] != "live://hb" || c.auth["mid"] != float64(7) ||
			js(c.auth["accepts"]) != "[1000,1001]" || c.auth["platform"] != "web" {
			t.Errorf("connection %d auth %v", i, c.auth)
		}
	}
}

// TestClientBackoff: handshakes that fail (no answer within the handshake
// timeout, closed without op 8) and a URL nobody listens on are retried
// with growing delays, each at least backoffDelay's lower bound; connect()
// resolves at the first success.
func TestClientBackoff(t *testing.T) {
	f, srv := startFake(t, "mute", "refuse", "refuse", "ok")
	p := openHarness(t, srv.URL+"/page")
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/sub"
	dead := "ws://" + testkit.FreeAddr(t) + "/sub" // nothing listens: refused at once
	start := time.Now()
	var url string
	if err := p.Eval(`h.start({url: `+js([]string{dead, u})+`, handshakeTimeout: 300,
		backoff: {base: 200, max: 800, factor: 2, jitter: 0.25},
		auth: {mid: 8, room_id: 'live://bo', accepts: [1000]}})`, &url); err != nil {
		t.Fatal(err)
	}
	if url != u {
		t.Errorf("connected to %q, want %q", url, u)
	}
	conns := f.snapshot()
	if len(conns) != 4 {
		t.Fatalf("%d connections to the fake, want 4 (%v since start)", len(conns), time.Since(start))
	}
	for i := 1; i < 4; i++ {
		// Attempt i-1's delay: min(800, 200 × 2^(i-1)) × (1 ± 0.25).
		d := min(800, 200<<(i-1))
		lo := time.Duration(float64(d)*0.75)*time.Millisecond - 50*time.Millisecond
		if gap := conns[i].accepted.Sub(conns[i-1].closed); gap < lo {
			t.Errorf("attempt %d came %v after the failure, want at least %v", i, gap, lo)
		}
	}
	var states []string
	if err := p.Eval(`h.states`, &states); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(states, "\n")
	for _, want := range []string{"disconnected: AuthError: auth at " + u + ": handshake timeout", "disconnected: AuthError: auth at " + u + ": websocket closed"} {
		if !strings.Contains(joined, want) {
			t.Errorf("states %q lack %q", states, want)
		}
	}
	if states[len(states)-1] != "connected" {
		t.Errorf("last state %q", states[len(states)-1])
	}
}
