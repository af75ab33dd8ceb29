package webclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/cluster"
	"github.com/goim/goim/internal/testkit/jobtest"
)

// stateJS describes the harness's client in failure messages.
const stateJS = `h.state()`

// TestClient drives the module's Client in Chromium against a real
// cluster: logic (serving /goim.js and the test page), two comets and a
// job. The client finds the comets through /goim/nodes/weighted, receives
// room pushes and op-9 batches, changes room, subscribes and unsubscribes
// ops, has a refused room change rejected, after its comet drains comes
// back on the other comet in the same room, and after that one shuts down
// comes back on a third.
//
// The nodes answer names both comets: without discovery logic knows them
// from their reports, and with [node] host_domain web clients get
// "<comet host><host_domain>". The comets are named "127.1" and "127.2"
// and the host domain is ".0.1", so the names are the loopback addresses
// 127.1.0.1 and 127.2.0.1 (and 127.3.0.1), where the comets listen on
// the one ws_port of the answer.
func TestClient(t *testing.T) {
	port := testkit.FreePort(t)
	c := cluster.StartWith(t, 0, cluster.Options{
		Pages: map[string]http.Handler{"/webclient-test": pageHandler()},
		Logic: func(cfg *logic.Config) {
			cfg.Node.HostDomain = ".0.1"
			cfg.Node.WSPort = port
		},
	})
	hosts := map[string]string{} // ws URL -> comet host
	for _, host := range []string{"127.1", "127.2"} {
		addr := host + ".0.1:" + strconv.Itoa(port)
		c.StartCometWith(host, func(cfg *comet.Config) { cfg.WebSocket.Bind = []string{addr} })
		hosts["ws://"+addr+"/sub"] = host
	}
	jobtest.Start(t, c, "job-webclient-test")
	// Both comets reported: both are in the nodes answer.
	testkit.WaitFor(t, 10*time.Second, func() error {
		nodes, err := weighted(c.API)
		if err != nil {
			return err
		}
		if len(nodes) != 2 {
			return fmt.Errorf("nodes %q, want both comets", nodes)
		}
		return nil
	})

	p := openHarness(t, c.API+"/webclient-test")
	mid := 100000 + time.Now().UnixNano()%1000000
	room1, room2 := "webclient-"+testkit.RandomHex(6), "webclient-"+testkit.RandomHex(6)
	opts := map[string]any{
		"api":     "",
		"auth":    map[string]any{"mid": mid, "room_id": "live://" + room1, "platform": "web", "accepts": []int{1000}},
		"backoff": map[string]any{"base": 200, "max": 1000, "factor": 2, "jitter": 0.3},
	}
	var first string
	if err := p.Eval(`h.start(`+js(opts)+`)`, &first); err != nil {
		t.Fatal(err)
	}
	if hosts[first] == "" {
		t.Fatalf("connected to %q, not a comet of the nodes answer %v", first, hosts)
	}
	pushRoom := func(room, msg string) {
		t.Helper()
		c.Push("/goim/push/room?"+url.Values{"operation": {"1000"}, "type": {"live"}, "room": {room}}.Encode(), msg)
	}
	pushMid := func(op int, msg string) {
		t.Helper()
		c.Push("/goim/push/mids?"+url.Values{"operation": {strconv.Itoa(op)}, "mids": {strconv.FormatInt(mid, 10)}}.Encode(), msg)
	}
	wait := func(what, cond string) {
		t.Helper()
		if err := p.Wait(what, cond, stateJS); err != nil {
			t.Fatal(err)
		}
	}
	has := func(msg string) bool {
		t.Helper()
		var ok bool
		if err := p.Eval(`h.has(`+js(msg)+`)`, &ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}

	t.Run("room push", func(t *testing.T) {
		msg := "room-" + testkit.RandomHex(4)
		pushRoom(room1, msg)
		wait(msg, `h.msgs.some((m) => m.text === `+js(msg)+` && m.op === 1000)`)
	})

	t.Run("op 9 batch", func(t *testing.T) {
		// Pushes to a room that arrive within the job's linger (100 ms)
		// of each other are batched: the comet writes them as one op-9
		// message. The client delivers the frames of a batch in order.
		var msgs []string
		for i := range 8 {
			msgs = append(msgs, fmt.Sprintf("batch-%d-%s", i, testkit.RandomHex(3)))
		}
		errs := make([]error, len(msgs))
		var wg sync.WaitGroup
		for i, m := range msgs {
			wg.Go(func() {
				errs[i] = post(c.API, "/goim/push/room?"+url.Values{"operation": {"1000"}, "type": {"live"}, "room": {room1}}.Encode(), m)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		wait("the 8 pushes", `(`+js(msgs)+`).every((m) => h.has(m))`)
		wait("an op-9 message of several of them, delivered in its order", `(() => {
			const want = `+js(msgs)+`;
			const got = h.msgs.map((m) => m.text).join('\n');
			return h.batches.some((b) => b.filter((x) => want.includes(x)).length >= 2 && got.includes(b.join('\n')));
		})()`)
	})

	t.Run("change room", func(t *testing.T) {
		if err := p.Eval(`h.c.changeRoom('live://`+room2+`')`, nil); err != nil {
			t.Fatal(err)
		}
		var room string
		if err := p.Eval(`h.c.room`, &room); err != nil || room != "live://"+room2 {
			t.Fatalf("room %q, %v", room, err)
		}
		old, msg := "old-room-"+testkit.RandomHex(4), "new-room-"+testkit.RandomHex(4)
		pushRoom(room1, old)
		pushRoom(room2, msg)
		wait(msg, `h.has(`+js(msg)+`)`)
		if has(old) {
			t.Errorf("a push to the room left, %s, arrived", room1)
		}
	})

	t.Run("sub unsub", func(t *testing.T) {
		// The client accepts op 1000: a push of op 1001 to its user is
		// filtered out until it subscribes.
		before, marker := "before-sub-"+testkit.RandomHex(4), "marker-"+testkit.RandomHex(4)
		pushMid(1001, before)
		pushMid(1000, marker)
		wait(marker, `h.has(`+js(marker)+`)`)
		if has(before) {
			t.Errorf("op 1001 arrived before sub")
		}
		if err := p.Eval(`h.c.sub([1001])`, nil); err != nil {
			t.Fatal(err)
		}
		var accepts []int
		if err := p.Eval(`h.c.accepts`, &accepts); err != nil || len(accepts) != 2 || accepts[1] != 1001 {
			t.Fatalf("accepts %v, %v", accepts, err)
		}
		subbed := "after-sub-" + testkit.RandomHex(4)
		pushMid(1001, subbed)
		wait(subbed, `h.msgs.some((m) => m.text === `+js(subbed)+` && m.op === 1001)`)

		if err := p.Eval(`h.c.unsub([1001])`, nil); err != nil {
			t.Fatal(err)
		}
		if err := p.Eval(`h.c.accepts`, &accepts); err != nil || len(accepts) != 1 || accepts[0] != 1000 {
			t.Fatalf("accepts %v, %v", accepts, err)
		}
		unsubbed, marker2 := "after-unsub-"+testkit.RandomHex(4), "marker-"+testkit.RandomHex(4)
		pushMid(1001, unsubbed)
		pushMid(1000, marker2)
		wait(marker2, `h.has(`+js(marker2)+`)`)
		if has(unsubbed) {
			t.Errorf("op 1001 arrived after unsub")
		}
	})

	t.Run("refused room", func(t *testing.T) {
		// The comet closes the connection instead of answering op 13: the
		// promise rejects with the close, the client reconnects in the room
		// it had.
		var res string
		if err := p.Eval(`h.c.changeRoom('live://no spaces').then(() => 'resolved', (e) => e.name + ' ' + e.code + ' ' + e.reason)`, &res); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(res, "CloseError 1008 ") {
			t.Fatalf("changeRoom to a bad room: %s, want CloseError 1008", res)
		}
		wait("reconnected", `h.c.state === 'connected' && h.c.url !== ''`)
		msg := "after-refused-" + testkit.RandomHex(4)
		pushRoom(room2, msg)
		wait(msg, `h.has(`+js(msg)+`)`)
	})

	t.Run("reconnect after drain", func(t *testing.T) {
		var before string
		if err := p.Eval(`h.c.url`, &before); err != nil {
			t.Fatal(err)
		}
		host := hosts[before]
		if host == "" {
			t.Fatalf("connected to %q", before)
		}
		var n int
		if err := p.Eval(`h.states.length`, &n); err != nil {
			t.Fatal(err)
		}
		c.Comets[host].Drain(context.Background(), 0)
		wait("connected to the other comet", `h.c.state === 'connected' && h.c.url !== '' && h.c.url !== `+js(before))
		var states []string
		if err := p.Eval(`h.states.slice(`+strconv.Itoa(n)+`)`, &states); err != nil {
			t.Fatal(err)
		}
		if len(states) < 3 || !strings.HasPrefix(states[0], "disconnected: CloseError: websocket closed: code 1001") {
			t.Errorf("states after the drain %q, want a 1001 close first", states)
		}
		// Same room, same accepts.
		msg := "after-drain-" + testkit.RandomHex(4)
		pushRoom(room2, msg)
		wait(msg, `h.has(`+js(msg)+`)`)
		sub := "after-drain-mid-" + testkit.RandomHex(4)
		pushMid(1000, sub)
		wait(sub, `h.has(`+js(sub)+`)`)
	})

	t.Run("reconnect after shutdown", func(t *testing.T) {
		// A third comet, then the one the client is on shuts down: the
		// client comes back on the new one. A second job, started after
		// the new comet, delivers to it (a job knows its comets from its
		// config).
		var before string
		if err := p.Eval(`h.c.url`, &before); err != nil {
			t.Fatal(err)
		}
		addr := "127.3.0.1:" + strconv.Itoa(port)
		c.StartCometWith("127.3", func(cfg *comet.Config) { cfg.WebSocket.Bind = []string{addr} })
		testkit.WaitFor(t, 10*time.Second, func() error {
			nodes, err := weighted(c.API)
			if err != nil {
				return err
			}
			if !slices.Contains(nodes, "127.3.0.1") {
				return fmt.Errorf("nodes %q lack the new comet", nodes)
			}
			return nil
		})
		cluster.Shutdown(t, c.Comets[hosts[before]].Shutdown)
		after := "ws://" + addr + "/sub"
		wait("connected to the new comet", `h.c.state === 'connected' && h.c.url === `+js(after))
		jobtest.Start(t, c, "job-webclient-test-2")
		msg := "after-shutdown-" + testkit.RandomHex(4)
		pushRoom(room2, msg)
		wait(msg, `h.has(`+js(msg)+`)`)
	})

	t.Run("close", func(t *testing.T) {
		var res []string
		if err := p.Eval(`(async () => { h.c.close(); h.c.close(); const r = await h.c.changeRoom('live://x').then(() => 'resolved', (e) => e.name);
			return [h.c.state, r, h.states[h.states.length - 1], h.c.url]; })()`, &res); err != nil {
			t.Fatal(err)
		}
		if want := []string{"closed", "ClosedError", "closed", ""}; strings.Join(res, "|") != strings.Join(want, "|") {
			t.Fatalf("after close: %q, want %q", res, want)
		}
		// No reconnect follows.
		time.Sleep(500 * time.Millisecond)
		var state string
		if err := p.Eval(`h.c.state`, &state); err != nil || state != "closed" {
			t.Fatalf("state %q, %v", state, err)
		}
	})
}

// post pushes body through logic's API at path (with the cluster's token).
func post(api, path, body string) error {
	req, err := http.NewRequest(http.MethodPost, api+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer "+cluster.APIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !testkit.IsPushAnswer(b) {
		return fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	return nil
}

// weighted returns the nodes of logic's /goim/nodes/weighted?platform=web.
func weighted(api string) ([]string, error) {
	resp, err := http.Get(api + "/goim/nodes/weighted?platform=web")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var ans struct {
		Data struct {
			Nodes []string `json:"nodes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return nil, fmt.Errorf("nodes answer %s: %w", b, err)
	}
	return ans.Data.Nodes, nil
}
