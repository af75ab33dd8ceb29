package e2e

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goim/goim/internal/bench"
	"github.com/goim/goim/internal/testkit"
)

// Mass reconnect: the clients of a comet that dies all lose their
// connection at once and come back to the other comets. They follow the
// backoff hint of /goim/nodes/weighted, which spreads their first attempt
// over base_delay ± jitter (2.1..3.9 s with logic's default hint) instead
// of one instant, and back off further when an attempt fails.
//
// The clients are goim-bench conns processes with -reconnect: 10,000
// connections need one goroutine each, above the race detector's limit of
// 8,128 goroutines in the test binary, and four processes keep each one's
// open files far below this machine's 20,000. They dial from 500 source
// addresses (127.1.k.1-125 for process k), 20 clients each, and the comets
// keep their production per-IP limits: a real crowd comes from many
// addresses, and the limits (20 handshakes a second per IP, burst 20)
// must not throttle an honest one. From a handful of addresses the same
// crowd would be throttled by design (auth_rate closes, then backoff),
// which is the limits' job, not what this scenario measures.
const (
	massConns = 10000
	massProcs = 4
)

// testMassReconnect opens 10,000 connections on comet-3, kills comet-3
// with SIGKILL, and waits until every client has authenticated on comet-1
// or comet-2. It logs how long that took (50 %, 90 %, 100 %), the
// clients' attempts, backoff and errors by phase and kind, and the
// survivors' handshake results and closes by reason; a room push then
// reaches every reconnected client.
func testMassReconnect(t *testing.T, sc *scaleCluster) {
	// The killed comet holds every connection: its process needs the
	// open files (children get the hard limit, which Go programs raise
	// their soft limit to).
	if limit, err := bench.RaiseFileLimit(); err == nil && limit > 0 && limit < massConns+2000 {
		t.Fatalf("the open-file limit is %d (ulimit -Hn); one comet holds %d connections here: raise it to at least %d", limit, massConns, massConns+2000)
	}
	c := sc.cluster
	victim := c.comets["comet-3"]
	survivors := []*comet{c.comets["comet-1"], c.comets["comet-2"]}
	run := "mass" + testkit.RandomHex(4)
	dir := t.TempDir()
	per := massConns / massProcs
	var procs []*process
	var summaries []string
	began := time.Now()
	for k := range massProcs {
		js := filepath.Join(dir, fmt.Sprintf("conns-%d.json", k))
		summaries = append(summaries, js)
		procs = append(procs, startProcess(t, c.top, fmt.Sprintf("goim-bench-%d", k), sc.bench, "conns",
			"-run", run, "-n", strconv.Itoa(per), "-first", strconv.Itoa(k*per), "-transport", "tcp",
			"-addrs", victim.tcp(c.ports), "-reconnect", "-api", sc.logics[0].api+","+sc.logics[1].api,
			"-src", fmt.Sprintf("127.1.%d.1-125", k), "-dial-rate", "750", "-dial-concurrency", "64",
			"-heartbeat", "20s", "-room", "live://mass", "-mid-start", "1000000", "-key-prefix", run+"-",
			"-duration", "5m", "-json", js))
	}
	alive := func() {
		for _, p := range procs {
			p.failIfExited(t)
		}
	}
	testkit.WaitFor(t, 60*time.Second, func() error {
		alive()
		n, err := metricWith(victim.admin(c.ports), "goim_comet_auths_total", `result="ok"`)
		if err != nil {
			return err
		}
		if n < massConns {
			return fmt.Errorf("%v of %d clients authenticated on comet-3", n, massConns)
		}
		return nil
	})
	filled := time.Since(began)

	type counts struct{ conns, ok float64 }
	state := func() (map[*comet]counts, error) {
		out := map[*comet]counts{}
		for _, s := range survivors {
			n, err := metric(s.admin(c.ports), "goim_comet_connections")
			if err != nil {
				return nil, err
			}
			ok, err := metricWith(s.admin(c.ports), "goim_comet_auths_total", `result="ok"`)
			if err != nil {
				return nil, err
			}
			out[s] = counts{conns: n, ok: ok}
		}
		return out, nil
	}
	base, err := state()
	if err != nil {
		t.Fatal(err)
	}
	closesBefore := make([]map[string]float64, len(survivors))
	authsBefore := make([]map[string]float64, len(survivors))
	for i, s := range survivors {
		if closesBefore[i], err = series(s.admin(c.ports), "goim_comet_closes_total"); err != nil {
			t.Fatal(err)
		}
		if authsBefore[i], err = series(s.admin(c.ports), "goim_comet_auths_total"); err != nil {
			t.Fatal(err)
		}
	}

	// Times count from the signal: the process's exit is seen later
	// (tearing down 10,000 sockets), after its clients saw their
	// connections end.
	killed := time.Now()
	victim.proc.kill()
	quantiles := []float64{0.01, 0.5, 0.9, 1}
	marks := make([]time.Duration, len(quantiles))
	var firstOK time.Duration // the first poll that saw a handshake on a survivor
	var spread []string
	testkit.WaitFor(t, 60*time.Second, func() error {
		alive()
		now, err := state()
		if err != nil {
			return err
		}
		var up, ok float64
		for s, n := range now {
			up += n.conns - base[s].conns
			ok += n.ok - base[s].ok
		}
		if firstOK == 0 && ok > 0 {
			firstOK = time.Since(killed)
		}
		for i, q := range quantiles {
			if marks[i] == 0 && up >= q*massConns && ok >= q*massConns {
				marks[i] = time.Since(killed)
			}
		}
		if up < massConns || ok < massConns {
			return fmt.Errorf("%v of %d clients connected to comet-1 and comet-2 (%v handshakes ok there)", up, massConns, ok)
		}
		spread = spread[:0]
		for _, s := range survivors {
			spread = append(spread, fmt.Sprintf("%s %v", s.host, now[s].conns-base[s].conns))
		}
		return nil
	})
	t.Logf("mass reconnect: %d clients on comet-3 in %v; after kill -9, reconnected to the survivors (%s): first handshake seen at %v, 1 %% at %v, 50 %% at %v, 90 %% at %v, 100 %% at %v",
		massConns, filled.Round(time.Millisecond), strings.Join(spread, ", "), firstOK.Round(time.Millisecond), marks[0].Round(time.Millisecond),
		marks[1].Round(time.Millisecond), marks[2].Round(time.Millisecond), marks[3].Round(time.Millisecond))
	// The herd waited: every client's first attempt came at least
	// base_delay × (1 - jitter) = 2.1 s after its drop, and no drop came
	// before the signal. (A lower bound the polling cannot undercut: a
	// poll sees a handshake only after it happened.)
	if firstOK < 2100*time.Millisecond {
		t.Errorf("a survivor completed a handshake %v after the kill, before the shortest first backoff (2.1 s)", firstOK)
	}
	for i, s := range survivors {
		closes, err := series(s.admin(c.ports), "goim_comet_closes_total")
		if err != nil {
			t.Fatal(err)
		}
		auths, err := series(s.admin(c.ports), "goim_comet_auths_total")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("mass reconnect: %s handshakes by result %s; closes by reason %s", s.host,
			countsSince(auths, authsBefore[i]), countsSince(closes, closesBefore[i]))
	}

	// A room push reaches every reconnected client: their sessions and
	// room memberships are on the survivors now.
	// Wait until the clients have it: each process's progress line
	// (every second, in its log) counts this run's pushes received.
	p := &failoverPusher{apis: []string{sc.logics[0].api, sc.logics[1].api}, reasons: map[string]int{}}
	body := bench.AppendBody(nil, run, "room:live://mass", 1, time.Now().UnixNano(), 0)
	p.pushBody(string(body), "mass")
	if p.err != nil {
		t.Fatal(p.err)
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		alive()
		n := 0
		for _, p := range procs {
			n += progressReceived(p.log())
		}
		if n < massConns {
			return fmt.Errorf("the room push reached %d of %d clients", n, massConns)
		}
		return nil
	})

	// The clients' own account: SIGTERM ends each process with its
	// summary.
	for _, p := range procs {
		p.signal(t, syscall.SIGTERM)
	}
	var in []*bench.Summary
	for i, p := range procs {
		if err := p.waitExit(t, 30*time.Second); err != nil {
			t.Errorf("%s: %v (its summary says why)\n%s", p.name, err, p.tail(20))
		}
		f, err := os.Open(summaries[i])
		if err != nil {
			t.Fatal(err)
		}
		s, err := bench.ReadSummary(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", summaries[i], err)
		}
		in = append(in, s)
	}
	m, err := bench.Merge(in)
	if err != nil {
		t.Fatal(err)
	}
	cs, d := m.Conns, m.Delivery
	t.Logf("mass reconnect, the clients' account: %d established, %d failed; %d drops, %d reconnected in %d attempts, %d still down; first backoff ms min %.0f max %.0f; drop to auth reply ms p50 %.0f p90 %.0f p99 %.0f max %.0f; errors %s",
		cs.Established, cs.Failed, cs.Drops, cs.Reconnects, cs.ReconnectAttempts, cs.Dropped,
		cs.FirstWait.Min, cs.FirstWait.Max, cs.ReconnectTime.P50, cs.ReconnectTime.P90, cs.ReconnectTime.P99, cs.ReconnectTime.Max,
		formatCounts(cs.Errors))
	if cs.Established != massConns || cs.Failed != 0 || cs.Drops != massConns || cs.Reconnects != massConns || cs.Dropped != 0 {
		t.Errorf("clients: %d established, %d failed, %d drops, %d reconnected, %d down at the end; want %d, 0, %d, %d, 0 (failures: %q)",
			cs.Established, cs.Failed, cs.Drops, cs.Reconnects, cs.Dropped, massConns, massConns, massConns, m.Failures)
	}
	// Logic's default hint: 3 s ± 30 % before the first attempt.
	if cs.FirstWait.Count != massConns || cs.FirstWait.Min < 2100*0.99 || cs.FirstWait.Max > 3900*1.01 {
		t.Errorf("first backoff: %d draws, %.0f..%.0f ms; want %d within 2100..3900 ms (the hint: base_delay 3 s, jitter 0.3)",
			cs.FirstWait.Count, cs.FirstWait.Min, cs.FirstWait.Max, massConns)
	}
	if d == nil || d.Received != massConns {
		t.Errorf("the room push after the reconnect: delivery %+v, want %d received", d, massConns)
	}
}

// pushBody sends one room push with body to room, failing over as push
// does.
func (p *failoverPusher) pushBody(body, room string) {
	p.pushWith(0, room, func(int) string { return body })
}

// countsSince formats the series of now that grew since before, sorted.
func countsSince(now, before map[string]float64) string {
	out := map[string]uint64{}
	for k, v := range now {
		if d := v - before[k]; d > 0 {
			out[strings.TrimSuffix(k[strings.IndexByte(k, '"')+1:], `"`)] = uint64(d)
		}
	}
	return formatCounts(out)
}

// formatCounts formats counts as "k n, k n", sorted by key.
func formatCounts(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// progressReceived is the count of this run's pushes received in the last
// progress line of a goim-bench log ("... | recv N (n/s) ..."), 0 if none.
func progressReceived(log string) int {
	i := strings.LastIndex(log, "| recv ")
	if i < 0 {
		return 0
	}
	f := strings.Fields(log[i+len("| recv "):])
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}
