package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	goimclient "github.com/goim/goim/client"
	"github.com/goim/goim/internal/testkit"
)

// Reliable delivery end to end: logic keeps streams (user streams of
// relMaxLen messages, recoverable rooms chat://*), the services run as
// processes, and the clients are the client package's reliable Clients.
const (
	relClients = 1000 // opted-in clients, half on each comet
	relPushes  = 40   // unicast pushes (to all of them at once) and room pushes
	relMaxLen  = 100  // [stream] max_len

	// relUnreachable is how long comet-2 stays stopped in the unreachable
	// step (at least until job gave up on its calls).
	relUnreachable = 30 * time.Second
)

// TestReliable checks the guarantees of reliable delivery against
// processes: a comet killed (SIGKILL) while pushes go on loses nothing
// for its clients, who reconnect to the other comet and end with every
// offset of their user and room streams exactly once, in order; a client
// away for more than the retention is told recovered=false; a comet that
// is unreachable (SIGSTOP) for longer than job's retry window has its
// clients' pushes deferred by job and recovered when they reconnect.
func TestReliable(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite: builds and runs every service")
	}
	began := time.Now()
	c := startClusterWith(t, `[stream]
max_len = `+strconv.Itoa(relMaxLen)+`
rooms = ["chat://*"]
`)
	t.Logf("cluster started in %v (build included)", time.Since(began).Round(time.Millisecond))
	c.waitJobComets(t, 2)
	steps := []struct {
		name string
		run  func(*testing.T)
	}{
		{"comet-kill", func(t *testing.T) { testReliableKill(t, c) }},
		{"retention", func(t *testing.T) { testReliableRetention(t, c) }},
		{"unreachable", func(t *testing.T) { testReliableUnreachable(t, c) }},
	}
	for _, s := range steps {
		began := time.Now()
		ok := t.Run(s.name, s.run)
		t.Logf("%s: %v", s.name, time.Since(began).Round(time.Millisecond))
		if !ok {
			return
		}
	}
}

// relClient is one reliable Client and what it received: the messages
// of its user and room streams in arrival order, and its op-20 reports.
type relClient struct {
	name string
	cl   *goimclient.Client

	mu      sync.Mutex
	user    []goimclient.Message
	room    []goimclient.Message
	plain   int
	reports [][]goimclient.StreamState
}

func (r *relClient) onMessage(m goimclient.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case m.Op == protocol.OpStreams:
		r.reports = append(r.reports, m.Streams)
	case m.Stream == protocol.StreamUser:
		r.user = append(r.user, m)
	case m.Stream == protocol.StreamRoom:
		r.room = append(r.room, m)
	default:
		r.plain++
	}
}

// counts returns how many user and room messages and reports arrived.
func (r *relClient) counts() (user, room, reports int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.user), len(r.room), len(r.reports)
}

// lastReport returns the latest op-20 report, nil before the first.
func (r *relClient) lastReport() []goimclient.StreamState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reports) == 0 {
		return nil
	}
	return r.reports[len(r.reports)-1]
}

// checkStream fails unless msgs hold offsets first..last exactly once, in
// order, each with the body prefix-<offset - first + 1 + skip>.
func checkStream(t *testing.T, who, stream string, msgs []goimclient.Message, first, last uint64, prefix string, skip int) {
	t.Helper()
	offsets := make([]uint64, len(msgs))
	for i, m := range msgs {
		offsets[i] = m.Offset
	}
	want := make([]uint64, 0, last-first+1)
	for o := first; o <= last; o++ {
		want = append(want, o)
	}
	if !slices.Equal(offsets, want) {
		t.Fatalf("%s: %s stream offsets %v, want %d..%d exactly once in order", who, stream, offsets, first, last)
	}
	epoch := msgs[0].Epoch
	for i, m := range msgs {
		if body := fmt.Sprintf("%s-%d", prefix, i+1+skip); string(m.Body) != body || m.Epoch != epoch || !testkit.IsMsgID(m.MsgID) {
			t.Fatalf("%s: %s stream offset %d: body %q epoch %x id %q, want %q in epoch %x with an id", who, stream, m.Offset, m.Body, m.Epoch, m.MsgID, body, epoch)
		}
	}
}

// relSource is the local address of client i: ten clients per address,
// so the comets' per-IP limits (20 handshakes a second, 16 waiting for
// logic) never throttle a reconnecting crowd.
func relSource(i int) string {
	n := i / 10
	return fmt.Sprintf("127.1.%d.%d", 100+n/250, n%250+1)
}

// connectReliable starts a reliable Client of user mid (key name) in room
// over TCP, trying addrs in order, and waits for its first report.
func connectReliable(t *testing.T, name string, mid int64, room string, addrs []string, src string, since *protocol.Since) *relClient {
	t.Helper()
	r := &relClient{name: name}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := goimclient.Connect(ctx, goimclient.Config{
		Addrs:         addrs,
		Auth:          goimclient.Auth{Mid: mid, Key: name, RoomID: room, Platform: "e2e", Accepts: []int32{1000}},
		Dial:          dialOptions(src, "tcp"),
		Heartbeat:     heartbeat,
		Backoff:       &goimclient.Backoff{Base: 200 * time.Millisecond, Max: 2 * time.Second, Factor: 1.5, Jitter: 0.5},
		Reliable:      true,
		Since:         since,
		OnMessage:     r.onMessage,
		MessageBuffer: 1024,
	})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	r.cl = cl
	t.Cleanup(func() { _ = cl.Close() })
	testkit.WaitFor(t, 30*time.Second, func() error {
		if _, _, n := r.counts(); n == 0 {
			return fmt.Errorf("%s: no op-20 report", name)
		}
		return nil
	})
	return r
}

// counter reads a counter of admin's metrics: the sum of its series, 0
// when it has none yet (a vector with no label values seen).
func counter(t *testing.T, admin, name string) float64 {
	t.Helper()
	all, err := series(admin, name)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, v := range all {
		sum += v
	}
	return sum
}

// pushID posts body to url and returns the push's msg_id.
func pushID(t *testing.T, url, body string) string {
	t.Helper()
	r, err := post(url, body)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	id, ok := testkit.PushAccepted(r.body)
	if r.status != http.StatusOK || !ok {
		t.Fatalf("POST %s: %d %s, want 200 %s", url, r.status, r.body, testkit.PushAnswerShape)
	}
	return id
}

// testReliableKill: relClients reliable clients in one recoverable room,
// half on each comet; relPushes unicast pushes (each to every client's
// user) and as many room pushes, with comet-2 killed (SIGKILL) a third of
// the way through. Its clients reconnect to comet-1 with their
// positions; every client ends with user offsets 1..relPushes and room
// offsets 1..relPushes, each exactly once, in order, with no duplicate
// ever dropped by the client; and every user target of the last push is
// reported delivered (acked) by GET /goim/push/status.
func testReliableKill(t *testing.T, c *cluster) {
	room := "rel" + testkit.RandomHex(4)
	c1, c2 := c.comets["comet-1"], c.comets["comet-2"]
	clients := make([]*relClient, relClients)
	mids := make([]string, relClients)
	const base = 700000
	began := time.Now()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 50 {
		wg.Go(func() {
			for i := range work {
				addrs := []string{c1.tcp(c.ports), c2.tcp(c.ports)}
				if i%2 == 1 {
					addrs[0], addrs[1] = addrs[1], addrs[0]
				}
				clients[i] = connectReliable(t, fmt.Sprintf("rel-%d", i), base+int64(i), "chat://"+room, addrs, relSource(i), nil)
			}
		})
	}
	for i := range relClients {
		mids[i] = strconv.Itoa(base + i)
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d reliable clients connected in %v", relClients, time.Since(began).Round(time.Millisecond))
	for _, r := range clients {
		for _, s := range r.lastReport() {
			if s.Recovered || s.Offset != 0 {
				t.Fatalf("%s: first report %+v, want new streams (offset 0, not recovered: no since)", r.name, s)
			}
		}
	}

	mids1 := strings.Join(mids, ",")
	var last string
	for k := 1; k <= relPushes; k++ {
		last = pushID(t, c.api+"/goim/push/mids?operation=1000&mids="+mids1, fmt.Sprintf("u-%d", k))
		pushID(t, c.api+"/goim/push/room?operation=1000&type=chat&room="+room, fmt.Sprintf("r-%d", k))
		if k == relPushes/3 {
			c2.proc.kill()
			t.Logf("comet-2 killed after %d pushes of each kind", k)
		}
		time.Sleep(50 * time.Millisecond)
	}
	testkit.WaitFor(t, 90*time.Second, func() error {
		short := 0
		for _, r := range clients {
			if u, rm, _ := r.counts(); u < relPushes || rm < relPushes {
				short++
			}
		}
		if short > 0 {
			return fmt.Errorf("%d of %d clients still miss messages", short, relClients)
		}
		return nil
	})
	reconnected := 0
	for i, r := range clients {
		r.mu.Lock()
		checkStream(t, r.name, "user", r.user, 1, relPushes, "u", 0)
		checkStream(t, r.name, "room", r.room, 1, relPushes, "r", 0)
		if r.plain != 0 {
			t.Fatalf("%s: %d messages in no stream", r.name, r.plain)
		}
		if len(r.reports) > 1 {
			reconnected++
			for _, s := range r.reports[len(r.reports)-1] {
				if !s.Recovered {
					t.Fatalf("%s: report after its reconnect %+v, want recovered", r.name, s)
				}
			}
		}
		r.mu.Unlock()
		if d := r.cl.Duplicates(); d != 0 {
			t.Fatalf("%s: the client dropped %d duplicates: the comets must not send any", r.name, d)
		}
		if i%2 == 1 && r.cl.Addr() != c1.tcp(c.ports) {
			t.Fatalf("%s: on %s, want comet-1 after comet-2 died", r.name, r.cl.Addr())
		}
	}
	if reconnected < relClients/2 {
		t.Fatalf("%d clients reconnected, want at least comet-2's %d", reconnected, relClients/2)
	}
	t.Logf("every client has %d user and %d room messages exactly once in order; %d reconnected", relPushes, relPushes, reconnected)

	// Receipts: every client acks what it received (automatic acks), so
	// every user target of the last push ends delivered.
	testkit.WaitFor(t, 30*time.Second, func() error {
		var st struct {
			Targets []struct {
				Target, Status string
			} `json:"targets"`
		}
		if err := getData(c.api+"/goim/push/status?msg_id="+last, &st); err != nil {
			return err
		}
		delivered := 0
		for _, tg := range st.Targets {
			if tg.Status == "delivered" {
				delivered++
			}
		}
		if len(st.Targets) != relClients || delivered != relClients {
			return fmt.Errorf("status of the last push: %d targets, %d delivered, want %d delivered", len(st.Targets), delivered, relClients)
		}
		return nil
	})
}

// testReliableRetention: a client away while its user stream receives
// more than max_len pushes comes back to recovered=false and the
// retained messages; one away for fewer recovers them all with
// recovered=true.
func testReliableRetention(t *testing.T, c *cluster) {
	addrs := []string{c.comets["comet-1"].tcp(c.ports)}
	for _, tc := range []struct {
		name      string
		pushes    int
		recovered bool
	}{
		{"within", 5, true},
		{"beyond", relMaxLen + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mid := int64(800000 + tc.pushes)
			name := "ret-" + tc.name
			r := connectReliable(t, name, mid, "", addrs, "127.1.200.1", nil)
			since := r.cl.Positions()
			if err := r.cl.Close(); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(since)
			t.Logf("away from %s", b)
			for k := 1; k <= tc.pushes; k++ {
				pushID(t, c.api+"/goim/push/mids?operation=1000&mids="+strconv.FormatInt(mid, 10), fmt.Sprintf("a-%d", k))
			}
			back := connectReliable(t, name, mid, "", addrs, "127.1.200.1", since)
			var user *goimclient.StreamState
			for _, s := range back.lastReport() {
				if s.Stream == protocol.StreamUser {
					user = &s
				}
			}
			if user == nil || user.Recovered != tc.recovered || user.Offset != uint64(tc.pushes) {
				t.Fatalf("report %+v, want the user stream at offset %d, recovered %v", back.lastReport(), tc.pushes, tc.recovered)
			}
			kept := min(tc.pushes, relMaxLen)
			testkit.WaitFor(t, 20*time.Second, func() error {
				if u, _, _ := back.counts(); u < kept {
					return fmt.Errorf("%d of %d messages", u, kept)
				}
				return nil
			})
			back.mu.Lock()
			defer back.mu.Unlock()
			checkStream(t, name, "user", back.user, uint64(tc.pushes-kept+1), uint64(tc.pushes), "a", tc.pushes-kept)
		})
	}
}

// testReliableUnreachable: comet-2 (restarted) holds ten reliable clients
// and is stopped (SIGSTOP) while their users get pushes; it stays stopped
// for relUnreachable, and at least until job has given up on those calls
// (retry_for, 10 s), counted them as deferred and reported them to logic,
// whose receipts then say every target of every push is deferred; then it
// goes on (SIGCONT). The clients, whose heartbeats went unanswered
// meanwhile, reconnect and recover every push exactly once, and their acks
// turn every target delivered.
func testReliableUnreachable(t *testing.T, c *cluster) {
	const n, pushes = 10, 5
	c2 := c.startComet(t, "comet-2", "127.0.0.3")
	c.waitJobComets(t, 2)
	// The calls of the comet-kill step to the dead comet-2 end (deferred)
	// only after job's retry window: wait for them, so that what is
	// counted below is this step's.
	testkit.WaitFor(t, 60*time.Second, func() error {
		v, err := metric(c.jobAdmin, "goim_job_inflight_pushes")
		if err != nil {
			return err
		}
		if v != 0 {
			return fmt.Errorf("job has %v pushes in flight", v)
		}
		return nil
	})
	before := counter(t, c.jobAdmin, "goim_job_deferred_total")
	clients := make([]*relClient, n)
	mids := make([]string, n)
	for i := range clients {
		mid := int64(900000 + i)
		mids[i] = strconv.FormatInt(mid, 10)
		clients[i] = connectReliable(t, fmt.Sprintf("unr-%d", i), mid, "", []string{c2.tcp(c.ports)}, "127.1.201.1", nil)
	}
	c2.proc.signal(t, syscall.SIGSTOP)
	stopped := time.Now()
	t.Cleanup(func() { _ = c2.proc.cmd.Process.Signal(syscall.SIGCONT) })
	ids := make([]string, pushes)
	for k := 1; k <= pushes; k++ {
		ids[k-1] = pushID(t, c.api+"/goim/push/mids?operation=1000&mids="+strings.Join(mids, ","), fmt.Sprintf("d-%d", k))
	}
	testkit.WaitFor(t, 60*time.Second, func() error {
		v, err := metric(c.jobAdmin, "goim_job_deferred_total")
		if err != nil {
			return err
		}
		if v-before < pushes {
			return fmt.Errorf("job deferred %v of %d pushes", v-before, pushes)
		}
		return nil
	})
	// Job reports the targets of the calls it gave up on: before comet-2
	// goes on, every target of every push is deferred.
	testkit.WaitFor(t, time.Until(stopped.Add(relUnreachable-time.Second)), func() error {
		if err := receiptsAre(c, ids, n, "deferred"); err != nil {
			return err
		}
		all, err := series(c.jobAdmin, "goim_job_deferral_reports_total")
		if err != nil {
			return err
		}
		if sent := all[`result="sent"`]; sent < n*pushes {
			return fmt.Errorf("job reported %v deferred targets to logic, want at least %d", sent, n*pushes)
		}
		return nil
	})
	t.Logf("every target deferred %v after comet-2 stopped", time.Since(stopped).Round(time.Millisecond))
	// 30 s in all: three times job's retry window.
	time.Sleep(time.Until(stopped.Add(relUnreachable)))
	c2.proc.signal(t, syscall.SIGCONT)
	t.Logf("comet-2 stopped for %v; job deferred the %d pushes", time.Since(stopped).Round(time.Millisecond), pushes)
	if lost := counter(t, c.jobAdmin, "goim_job_lost_total"); lost != 0 {
		t.Fatalf("job lost %v pushes: every target of this test keeps a stream", lost)
	}
	testkit.WaitFor(t, 60*time.Second, func() error {
		for _, r := range clients {
			if u, _, _ := r.counts(); u < pushes {
				return fmt.Errorf("%s: %d of %d messages", r.name, u, pushes)
			}
		}
		return nil
	})
	for _, r := range clients {
		r.mu.Lock()
		checkStream(t, r.name, "user", r.user, 1, pushes, "d", 0)
		r.mu.Unlock()
	}
	// The clients ack what they recovered: deferred turns delivered.
	testkit.WaitFor(t, 30*time.Second, func() error {
		return receiptsAre(c, ids, n, "delivered")
	})
}

// receiptsAre checks that each push of ids has n targets, all with
// status want (GET /goim/push/status).
func receiptsAre(c *cluster, ids []string, n int, want string) error {
	for _, id := range ids {
		var st struct {
			Targets []struct {
				Target, Status string
			} `json:"targets"`
		}
		if err := getData(c.api+"/goim/push/status?msg_id="+id, &st); err != nil {
			return err
		}
		if len(st.Targets) != n {
			return fmt.Errorf("push %s: %d targets, want %d", id, len(st.Targets), n)
		}
		for _, tg := range st.Targets {
			if tg.Status != want {
				return fmt.Errorf("push %s: %s is %s, want %s", id, tg.Target, tg.Status, want)
			}
		}
	}
	return nil
}
