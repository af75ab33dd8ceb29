package webclient_test

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/goim/goim/internal/testkit/browser"
	"github.com/goim/goim/internal/webclient"
)

// testPage is the page the module is tested on: it has no script; the
// tests import the module with harness.
const testPage = `<!doctype html><html><head><meta charset="utf-8"><title>goim.js test</title>` +
	`<link rel="icon" href="data:,"></head><body></body></html>`

// harness imports /goim.js into window.h: h.g is the module, h.start(opts)
// creates and connects h.c recording what it receives (h.msgs), its
// states (h.states) and the op-9 messages of its sockets (h.batches: the
// inner frame count of each).
const harness = `(async () => {
  const g = await import('/goim.js');
  const h = { g, c: null, msgs: [], states: [], batches: [] };
  const Native = WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => {
        if (!(ev.data instanceof ArrayBuffer) || ev.data.byteLength < 16) return;
        const v = new DataView(ev.data);
        if (v.getInt32(8) !== 9) return;
        let n = 0;
        for (let off = 16; off + 16 <= v.byteLength; n++) {
          const len = v.getInt32(off);
          if (len < 16) break;
          off += len;
        }
        h.batches.push(n);
      });
    }
  };
  h.start = (opts) => {
    h.c = new g.Client(Object.assign({}, opts, {
      onMessage: (m) => h.msgs.push({ op: m.op, text: m.text() }),
      onState: (s, e) => h.states.push(e ? s + ': ' + e.name + ': ' + e.message : s),
    }));
    return h.c.connect().then(() => h.c.url);
  };
  h.has = (text) => h.msgs.some((m) => m.text === text);
  h.state = () => ({ url: h.c && h.c.url, state: h.c && h.c.state, room: h.c && h.c.room,
    accepts: h.c && h.c.accepts, states: h.states, msgs: h.msgs.slice(-30), batches: h.batches });
  window.h = h;
  return true;
})()`

// openHarness starts a browser, opens pageURL and loads the harness.
func openHarness(t *testing.T, pageURL string) *browser.Page {
	t.Helper()
	p, err := browser.Open(browser.Start(t), pageURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := p.Eval(harness, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func pageHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, testPage)
	})
}

func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestModuleFunctions checks the module's exported functions in Chromium:
// frames byte for byte against docs/protocol.md's examples, op-9
// unpacking and malformed input, backoff bounds, the nodes answer and
// node URLs. A page on an httptest server serves the module and a fixed
// nodes answer.
func TestModuleFunctions(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /goim.js", webclient.Handler())
	mux.Handle("GET /page", pageHandler())
	mux.HandleFunc("GET /goim/nodes/weighted", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("platform") != "web" {
			http.Error(w, `{"code":-400,"message":"platform"}`, http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, `{"code":0,"message":"","data":{"domain":"conn.goim.io","tcp_port":3101,"ws_port":3102,"wss_port":3103,`+
			`"heartbeat":240,"heartbeat_max":2,"nodes":["47.89.10.97","::1","c1.goim.io:4443"],`+
			`"backoff":{"max_delay":300,"base_delay":3,"factor":1.8,"jitter":0.3}}}`)
	})
	mux.HandleFunc("GET /bad/goim/nodes/weighted", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"code":-500,"message":"logic is shutting down"}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p := openHarness(t, srv.URL+"/page")

	t.Run("encodeFrame", func(t *testing.T) {
		// docs/protocol.md's examples.
		for expr, want := range map[string]string{
			`h.g.encodeFrame(2, 5)`:                         "00000010001000010000000200000005",
			`h.g.encodeFrame(12, 3, 'live://1001')`:         "0000001b001000010000000c000000036c6976653a2f2f31303031",
			`h.g.encodeFrame(14, 4, '1000,1001')`:           "00000019001000010000000e00000004313030302c31303031",
			`h.g.encodeFrame(1000, 0, '{"a":1}')`:           "0000001700100001000003e8000000007b2261223a317d",
			`h.g.encodeFrame(7, 1, new Uint8Array([1, 2]))`: "0000001200100001000000070000000101" + "02",
		} {
			var got string
			if err := p.Eval(`Array.from(`+expr+`, (b) => b.toString(16).padStart(2, '0')).join('')`, &got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s = %s, want %s", expr, got, want)
			}
		}
	})

	t.Run("decodeFrames", func(t *testing.T) {
		// An op-9 batch of two pushes, as a comet writes it to WebSocket.
		batch := frame(9, 0, append(frame(1000, 0, []byte("one")), frame(1001, 0, []byte("two"))...))
		var got []struct {
			Op, Seq, Ver int
			Text         string
		}
		expr := `h.g.decodeFrames(new Uint8Array(` + js(bytesToInts(batch)) + `)).map((f) => ({op: f.op, seq: f.seq, ver: f.ver, text: new TextDecoder().decode(f.body)}))`
		if err := p.Eval(expr, &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Op != 1000 || got[0].Text != "one" || got[1].Op != 1001 || got[1].Text != "two" || got[0].Ver != 1 {
			t.Fatalf("batch decoded as %+v", got)
		}
		var single []struct{ Op, Seq int }
		if err := p.Eval(`h.g.decodeFrames(h.g.encodeFrame(3, 7, new Uint8Array(4)).buffer)`, &single); err != nil {
			t.Fatal(err)
		}
		if len(single) != 1 || single[0].Op != 3 || single[0].Seq != 7 {
			t.Fatalf("heartbeat reply decoded as %+v", single)
		}
		// Malformed messages throw a ProtocolError.
		bad := map[string][]byte{
			"short":          frame(1000, 0, nil)[:15],
			"headerLen 15":   func() []byte { b := frame(1000, 0, []byte("x")); b[5] = 15; return b }(),
			"packLen 15":     func() []byte { b := frame(1000, 0, []byte("x")); b[3] = 15; return b }(),
			"packLen beyond": func() []byte { b := frame(1000, 0, []byte("x")); b[3] = 40; return b }(),
			"trailing":       append(frame(1000, 0, []byte("x")), 0),
			"inner truncated": func() []byte {
				inner := frame(1000, 0, []byte("abc"))
				return frame(9, 0, inner[:len(inner)-1])
			}(),
		}
		for name, b := range bad {
			var res string
			expr := `(() => { try { h.g.decodeFrames(new Uint8Array(` + js(bytesToInts(b)) + `)); return 'decoded'; } catch (e) { return e.name + (e instanceof h.g.ProtocolError ? '' : ' (not a ProtocolError)'); } })()`
			if err := p.Eval(expr, &res); err != nil {
				t.Fatal(err)
			}
			if res != "ProtocolError" {
				t.Errorf("%s: %s, want a ProtocolError", name, res)
			}
		}
	})

	t.Run("backoffDelay", func(t *testing.T) {
		type bo struct{ Base, Max, Factor, Jitter float64 }
		for _, b := range []bo{{3000, 300000, 1.8, 0.3}, {100, 1000, 2, 0}, {200, 200, 1, 1}, {1000, 60000, 1.5, 0.5}} {
			var got [][3]float64 // per attempt: r = 0, 0.5, 0.999999
			expr := `Array.from({length: 30}, (_, n) => [0, 0.5, 0.999999].map((r) => h.g.backoffDelay(n, ` +
				js(map[string]float64{"base": b.Base, "max": b.Max, "factor": b.Factor, "jitter": b.Jitter}) + `, r)))`
			if err := p.Eval(expr, &got); err != nil {
				t.Fatal(err)
			}
			for n, ds := range got {
				d := math.Min(b.Max, b.Base*math.Pow(b.Factor, float64(n)))
				lo, hi := d*(1-b.Jitter), d*(1+b.Jitter)
				if !near(ds[0], lo) || !near(ds[1], d) || ds[2] > hi+1e-6 || ds[2] < hi-d*b.Jitter*1e-5-1e-6 {
					t.Errorf("%+v attempt %d: %v, want %v, %v, just under %v", b, n, ds, lo, d, hi)
				}
			}
		}
		// Random r: always within the bounds; the defaults are logic's.
		var got []float64
		if err := p.Eval(`Array.from({length: 2000}, (_, i) => h.g.backoffDelay(i % 12))`, &got); err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			d := math.Min(300000, 3000*math.Pow(1.8, float64(i%12)))
			if v < d*0.7-1e-6 || v > d*1.3+1e-6 {
				t.Fatalf("attempt %d: %v outside [%v, %v]", i%12, v, d*0.7, d*1.3)
			}
		}
		var def map[string]float64
		if err := p.Eval(`h.g.DEFAULT_BACKOFF`, &def); err != nil {
			t.Fatal(err)
		}
		if def["base"] != 3000 || def["max"] != 300000 || def["factor"] != 1.8 || def["jitter"] != 0.3 {
			t.Errorf("DEFAULT_BACKOFF %v", def)
		}
	})

	t.Run("fetchNodes", func(t *testing.T) {
		var got struct {
			Nodes                      []string
			WSPort, WSSPort, Heartbeat int
			Backoff                    struct{ Base, Max, Factor, Jitter float64 }
			WS, WSS                    []string
		}
		expr := `h.g.fetchNodes('').then((a) => Object.assign(a, {ws: h.g.nodeURLs(a, 'ws', '/sub'), wss: h.g.nodeURLs(a, 'wss', '/sub?x=1')}))`
		if err := p.Eval(expr, &got); err != nil {
			t.Fatal(err)
		}
		if got.WSPort != 3102 || got.WSSPort != 3103 || got.Heartbeat != 240000 ||
			got.Backoff.Base != 3000 || got.Backoff.Max != 300000 || got.Backoff.Factor != 1.8 || got.Backoff.Jitter != 0.3 {
			t.Errorf("answer %+v", got)
		}
		wantWS := []string{"ws://47.89.10.97:3102/sub", "ws://[::1]:3102/sub", "ws://c1.goim.io:4443/sub"}
		wantWSS := []string{"wss://47.89.10.97:3103/sub?x=1", "wss://[::1]:3103/sub?x=1", "wss://c1.goim.io:4443/sub?x=1"}
		if !slices.Equal(got.WS, wantWS) || !slices.Equal(got.WSS, wantWSS) {
			t.Errorf("urls %q %q, want %q %q", got.WS, got.WSS, wantWS, wantWSS)
		}
		var res string
		if err := p.Eval(`h.g.fetchNodes('/bad').then(() => 'resolved', (e) => e.name + ' ' + e.status + ' ' + e.code)`, &res); err != nil {
			t.Fatal(err)
		}
		if res != "NodesError 503 -500" {
			t.Errorf("fetchNodes of a draining logic: %s", res)
		}
	})
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

// frame encodes one frame as docs/protocol.md says.
func frame(op, seq int32, body []byte) []byte {
	b := make([]byte, 16+len(body))
	binary.BigEndian.PutUint32(b[0:], uint32(16+len(body)))
	binary.BigEndian.PutUint16(b[4:], 16)
	binary.BigEndian.PutUint16(b[6:], 1)
	binary.BigEndian.PutUint32(b[8:], uint32(op))
	binary.BigEndian.PutUint32(b[12:], uint32(seq))
	copy(b[16:], body)
	return b
}

func bytesToInts(b []byte) []int {
	out := make([]int, len(b))
	for i, x := range b {
		out[i] = int(x)
	}
	return out
}
