package comet

// Load tests: the memory of idle authenticated connections and the cost of
// room fan-out, with the clients in a separate process (the test binary
// re-executed as TestLoadClients), so each process holds ~N sockets and the
// comet's figures are not mixed with the clients'.
//
// They skip unless GOIM_LOADTEST=1 (scripts/bench-comet.sh runs them):
//
//	GOIM_LOADTEST=1 go test -run 'TestLoad(IdleMemory|RoomFanout)' -v -count=1 -timeout 20m ./internal/comet
//
// Knobs (environment):
//
//	GOIM_LOADTEST_CONNS        connections per run (default 10000)
//	GOIM_LOADTEST_ROUNDS       measured pushes per fan-out mode (default 200)
//	GOIM_LOADTEST_SOURCES      client source addresses, comma separated
//	                           (default 127.0.0.2,127.0.0.3, more for >40k)
//	GOIM_LOADTEST_DIALERS      dialing goroutines in the client process (default 64)
//	GOIM_LOADTEST_SETTLE       pause before the idle sample (default 3s)
//	GOIM_LOADTEST_HEAPPROFILE  a directory: the idle test then samples every
//	                           allocation (runtime.MemProfileRate = 1) and
//	                           writes heap-<transport>.pprof (idle) and
//	                           heap-<transport>-closed.pprof (after the
//	                           disconnect) there; the fan-out test writes
//	                           allocs-<transport>-{before,after}.pprof (compare
//	                           with pprof -base). Profiling costs memory, so
//	                           RSS figures of such a run are inflated; use it
//	                           to see where the bytes go, not for the totals.
//
// The Go runtime keeps goroutine and poll descriptors for reuse, so a run
// after another in the same process shows less memory per connection than a
// fresh process; scripts/bench-comet.sh runs each test and transport in its
// own process. Every summary is one line starting with "LOADTEST ".

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
)

// Environment of the load tests and of the client process.
const (
	envLoad        = "GOIM_LOADTEST"
	envLoadConns   = "GOIM_LOADTEST_CONNS"
	envLoadRounds  = "GOIM_LOADTEST_ROUNDS"
	envLoadSources = "GOIM_LOADTEST_SOURCES"
	envLoadDialers = "GOIM_LOADTEST_DIALERS"
	envLoadSettle  = "GOIM_LOADTEST_SETTLE"
	envLoadProfile = "GOIM_LOADTEST_HEAPPROFILE"

	// Set by the parent for the client process only.
	envLoadChild     = "GOIM_LOADTEST_CHILD" // "1"
	envLoadAddr      = "GOIM_LOADTEST_ADDR"
	envLoadTransport = "GOIM_LOADTEST_TRANSPORT"
	envLoadRoom      = "GOIM_LOADTEST_ROOM"
	envLoadLife      = "GOIM_LOADTEST_LIFE" // the client process exits after this long
)

const (
	loadRoom      = "live://load"
	loadBatchMsgs = 20
	// loadLinePrefix marks the client process's protocol lines on stdout.
	loadLinePrefix = "LOAD "
)

// loadSettings are the parent's knobs.
type loadSettings struct {
	conns   int
	rounds  int
	sources []string
	dialers int
	settle  time.Duration
	profile string
}

// loadSetup skips unless load tests are enabled and returns the settings.
func loadSetup(t *testing.T) loadSettings {
	t.Helper()
	if os.Getenv(envLoad) != "1" || os.Getenv(envLoadChild) == "1" {
		t.Skipf("load test: set %s=1 to run it (scripts/bench-comet.sh)", envLoad)
	}
	if runtime.GOOS != "linux" {
		t.Skip("load test: needs Linux (/proc/self/status, MSG_PEEK idle wait)")
	}
	s := loadSettings{
		conns:   envInt(t, envLoadConns, 10000),
		rounds:  envInt(t, envLoadRounds, 200),
		dialers: envInt(t, envLoadDialers, 64),
		settle:  3 * time.Second,
		profile: os.Getenv(envLoadProfile),
	}
	if v := os.Getenv(envLoadSettle); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s: %v", envLoadSettle, err)
		}
		s.settle = d
	}
	if v := os.Getenv(envLoadSources); v != "" {
		s.sources = strings.Split(v, ",")
	} else {
		// ~28k ephemeral ports per source address; stay well below.
		for i := range max(2, (s.conns+19999)/20000) {
			s.sources = append(s.sources, fmt.Sprintf("127.0.0.%d", 2+i))
		}
	}
	if s.conns <= 0 || s.rounds <= 0 || s.dialers <= 0 || len(s.sources) > 250 {
		t.Fatalf("load test: bad settings %+v", s)
	}
	return s
}

func envInt(t testing.TB, key string, def int) int {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return n
}

// startLoadComet starts a comet fit for thousands of idle connections: a
// handshake timeout and a session long enough for the whole run, and no
// periodic reports to the test logic (which would record them), and no
// [limits] (the clients come from a few addresses).
func startLoadComet(t *testing.T) *testEnv {
	t.Helper()
	e := startComet(t, func(c *Config) {
		unlimited(c) // thousands of clients from a few addresses
		c.Protocol.HandshakeTimeout = conf.Duration(5 * time.Minute)
		c.Logic.Timeout = conf.Duration(time.Minute)
		c.Logic.ReportInterval = conf.Duration(time.Hour)
	})
	e.logic.mu.Lock()
	e.logic.session = time.Hour
	e.logic.mu.Unlock()
	return e
}

// authedConns counts the published (authenticated) channels.
func authedConns(s *Server) int {
	n := 0
	for _, b := range s.buckets.all {
		b.mu.RLock()
		n += len(b.chs)
		b.mu.RUnlock()
	}
	return n
}

// memSample is the comet process's memory at one moment.
type memSample struct {
	rss        uint64 // VmRSS
	heapAlloc  uint64 // live heap objects (after GC)
	heapInuse  uint64 // heap spans in use: live objects and the free slots between them
	stackInuse uint64
	mspan      uint64 // MSpanInuse
	gcSys      uint64
	otherSys   uint64 // includes the runtime's poll descriptors (one per socket)
	heapObjs   uint64
	goroutines int
	kernelTCP  int64 // /proc/net/sockstat TCP mem, bytes, system wide (both ends)
}

// sampleMem collects garbage and returns memory to the OS rounds times
// (each round is two GCs; goroutine stacks shrink by half at most once per
// GC), then reads the figures.
func sampleMem(t testing.TB, rounds int) memSample {
	t.Helper()
	for range rounds {
		runtime.GC()
		debug.FreeOSMemory()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{
		rss:        vmRSS(t),
		heapAlloc:  ms.HeapAlloc,
		heapInuse:  ms.HeapInuse,
		stackInuse: ms.StackInuse,
		mspan:      ms.MSpanInuse,
		gcSys:      ms.GCSys,
		otherSys:   ms.OtherSys,
		heapObjs:   ms.HeapObjects,
		goroutines: runtime.NumGoroutine(),
		kernelTCP:  kernelTCPMem(),
	}
}

// vmRSS reads this process's resident set size in bytes.
func vmRSS(t testing.TB) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	t.Fatalf("no VmRSS in /proc/self/status")
	return 0
}

// kernelTCPMem returns the kernel's TCP buffer memory (all sockets of the
// system, in bytes), or -1.
func kernelTCPMem() int64 {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				pages, err := strconv.ParseInt(f[i+1], 10, 64)
				if err == nil {
					return pages * int64(os.Getpagesize())
				}
			}
		}
	}
	return -1
}

// perConn returns (after-before)/n as a signed float.
func perConn(after, before uint64, n int) float64 {
	return (float64(after) - float64(before)) / float64(n)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// TestLoadIdleMemory measures what one idle authenticated connection costs
// the comet process: RSS, heap, goroutine stacks and goroutines, for 10,000
// TCP and 10,000 WebSocket connections opened by another process, and the
// RSS left after they all disconnect.
func TestLoadIdleMemory(t *testing.T) {
	s := loadSetup(t)
	for _, tr := range []string{"tcp", "ws", "sse"} {
		t.Run(tr, func(t *testing.T) { loadIdle(t, s, tr) })
	}
}

// loadRunsBefore counts the load runs earlier in this process: the runtime
// keeps what they grew (goroutine descriptors, poll descriptors) for reuse,
// so a later run's per-connection figures are lower than a fresh process's.
var loadRunsBefore int

func loadIdle(t *testing.T, s loadSettings, tr string) {
	if loadRunsBefore > 0 {
		t.Logf("%s: note: %d load run(s) earlier in this process; the runtime reuses their goroutine and poll descriptors, "+
			"so the figures below are lower than a fresh process's (scripts/bench-comet.sh runs each in its own process)", tr, loadRunsBefore)
	}
	loadRunsBefore++
	e := startLoadComet(t)
	base := sampleMem(t, 2)
	t.Logf("%s: before clients: RSS %.1f MiB, heap in use %.1f MiB, stacks %.1f MiB, %d goroutines",
		tr, mib(base.rss), mib(base.heapInuse), mib(base.stackInuse), base.goroutines)

	profileRate := runtime.MemProfileRate
	if s.profile != "" {
		runtime.MemProfileRate = 1
	}
	start := time.Now()
	ln := tr
	if tr == "sse" {
		ln = "ws" // SSE streams are served on the WebSocket listener
	}
	lc := startLoadClients(t, e.addr(ln), tr, s)
	ok := lc.waitReady(5 * time.Minute)
	waitFor(t, 2*time.Minute, func() error {
		if n := authedConns(e.srv); n != ok {
			return fmt.Errorf("%d of %d connections authenticated", n, ok)
		}
		return nil
	})
	connectTime := time.Since(start)
	t.Logf("%s: %d connections authenticated in %v (%.0f/s) from %d source addresses",
		tr, ok, connectTime.Round(time.Millisecond), float64(ok)/connectTime.Seconds(), len(s.sources))
	time.Sleep(s.settle)
	idle := sampleMem(t, 2)
	if n := authedConns(e.srv); n != ok {
		t.Fatalf("%d connections left of %d while idle", n, ok)
	}

	rss := perConn(idle.rss, base.rss, ok)
	heap := perConn(idle.heapInuse, base.heapInuse, ok)
	live := perConn(idle.heapAlloc, base.heapAlloc, ok)
	stack := perConn(idle.stackInuse, base.stackInuse, ok)
	mspan := perConn(idle.mspan, base.mspan, ok)
	gcSys := perConn(idle.gcSys, base.gcSys, ok)
	other := perConn(idle.otherSys, base.otherSys, ok)
	objs := perConn(idle.heapObjs, base.heapObjs, ok)
	gor := float64(idle.goroutines-base.goroutines) / float64(ok)
	ktcp := float64(idle.kernelTCP-base.kernelTCP) / float64(ok)
	t.Logf("%s: idle: RSS %.1f MiB, heap in use %.1f MiB, stacks %.1f MiB, %d goroutines",
		tr, mib(idle.rss), mib(idle.heapInuse), mib(idle.stackInuse), idle.goroutines)
	t.Logf("%s: per idle connection: RSS %.0f B, heap in use %.0f B (live objects %.0f B in %.1f objects, the rest free slots "+
		"in spans kept by them), goroutine stacks %.0f B, span metadata %.0f B, GC metadata %.0f B, "+
		"other runtime (poll descriptors) %.0f B, goroutines %.2f",
		tr, rss, heap, live, objs, stack, mspan, gcSys, other, gor)
	t.Logf("%s: for reference: sizeof(Channel) %d B; kernel TCP buffers (system wide, both ends, not in RSS) %.0f B/conn",
		tr, unsafe.Sizeof(Channel{}), ktcp)
	if s.profile != "" {
		writeProfile(t, "heap", filepath.Join(s.profile, "heap-"+tr+".pprof"))
	}

	// Disconnect everything and see what the comet gives back.
	start = time.Now()
	lc.stop()
	waitFor(t, 2*time.Minute, func() error {
		if n := e.srv.limits.conns.Load(); n != 0 {
			return fmt.Errorf("%d connections still open", n)
		}
		return nil
	})
	closeTime := time.Since(start)
	after := sampleMem(t, 2)
	if s.profile != "" {
		writeProfile(t, "heap", filepath.Join(s.profile, "heap-"+tr+"-closed.pprof"))
		runtime.MemProfileRate = profileRate
	}
	ratio := float64(after.rss) / float64(base.rss)
	t.Logf("%s: all closed in %v; after disconnect: RSS %.1f MiB (%.2fx the idle start), heap in use %.1f MiB, stacks %.1f MiB, %d goroutines",
		tr, closeTime.Round(time.Millisecond), mib(after.rss), ratio, mib(after.heapInuse), mib(after.stackInuse), after.goroutines)
	t.Logf("LOADTEST idle transport=%s conns=%d rss_per_conn_B=%.0f heap_per_conn_B=%.0f live_heap_per_conn_B=%.0f stack_per_conn_B=%.0f "+
		"other_runtime_per_conn_B=%.0f goroutines_per_conn=%.2f rss_base_MiB=%.1f rss_idle_MiB=%.1f rss_after_close_MiB=%.1f "+
		"after_close_over_base=%.2f connect_s=%.1f",
		tr, ok, rss, heap, live, stack, mspan+gcSys+other, gor, mib(base.rss), mib(idle.rss), mib(after.rss), ratio, connectTime.Seconds())
	if ok < s.conns {
		t.Errorf("only %d of %d connections could be opened", ok, s.conns)
	}
}

// writeProfile writes the named runtime profile ("heap", "allocs") to path.
func writeProfile(t testing.TB, name, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s profile: %s (go tool pprof -top %s)", name, path, path)
}

// TestLoadRoomFanout measures room broadcast with 10,000 members in one room
// (clients in another process reading everything): deliveries per comet
// CPU-second and allocations per push and per recipient. Each push is one
// op-9 batch of 20 messages through Server.BroadcastRoom.
//
// Two modes: "lockstep" pushes one batch and waits until every client has
// read it; "burst8" pushes 8 batches back to back, then waits, so a
// connection whose writer lags finds several frames queued (one writev for
// several batches). CPU is the
// whole test process (getrusage): the comet, plus the test logic and the
// harness, which are idle during the run (an idle baseline is logged). On
// loopback the kernel's receive path mostly runs in the sender's context,
// so the comet's system time includes much of the clients' TCP receive cost.
func TestLoadRoomFanout(t *testing.T) {
	s := loadSetup(t)
	for _, tr := range []string{"tcp", "ws"} {
		t.Run(tr, func(t *testing.T) { loadFanout(t, s, tr) })
	}
}

func loadFanout(t *testing.T, s loadSettings, tr string) {
	loadRunsBefore++
	e := startLoadComet(t)
	lc := startLoadClients(t, e.addr(tr), tr, s)
	members := lc.waitReady(5 * time.Minute)
	waitFor(t, 2*time.Minute, func() error {
		if n := e.srv.rooms.counts()[loadRoom]; int(n) != members {
			return fmt.Errorf("%d of %d connections in %s", n, members, loadRoom)
		}
		return nil
	})
	if members < s.conns {
		t.Errorf("only %d of %d connections could be opened", members, s.conns)
	}

	var batch protocol.Batch
	for i := range loadBatchMsgs {
		if err := batch.Append(1000, fmt.Appendf(nil, `{"test":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	push := &protocol.Proto{Ver: 1, Op: protocol.OpRaw, Body: batch.Frames()}
	var trans transport
	if tr == "ws" {
		trans = transportWS
	}
	perMember := int64(len(newFrame(push).bytes(trans))) // bytes one member reads per push
	t.Logf("%s: %d members, batch of %d messages: %d bytes per member per push", tr, members, loadBatchMsgs, perMember)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	got, frames0, _ := lc.stats()
	want := got
	// pushGroup pushes n batches and waits until every member has read them.
	pushGroup := func(n int) {
		for range n {
			if err := e.srv.BroadcastRoom(ctx, loadRoom, push); err != nil {
				t.Fatalf("broadcast: %v", err)
			}
		}
		want += int64(n) * perMember * int64(members)
		if got, frames, closed, reached := lc.waitBytes(want, 60*time.Second); !reached {
			t.Fatalf("clients read %d of %d bytes (%d frames) within 60s; %d connections closed; comet closes: %s",
				got, want, frames, closed, closeCounts(e))
		}
	}

	// Warm up: the first pushes allocate each channel's queue arrays and
	// the writer goroutines' descriptors.
	for range 5 {
		pushGroup(1)
	}

	// Background: what the idle process burns (wheel ticks, gRPC keepalive).
	cpu0 := cpuTime()
	time.Sleep(time.Second)
	idleCPU := cpuTime() - cpu0
	// The harness's own allocations per group (one wait command and its
	// answer), measured with nothing to wait for, are subtracted below.
	const calls = 50
	var hm0, hm1 runtime.MemStats
	runtime.ReadMemStats(&hm0)
	for range calls {
		if _, _, _, reached := lc.waitBytes(want, time.Second); !reached {
			t.Fatal("clients lost bytes")
		}
	}
	runtime.ReadMemStats(&hm1)
	harness := float64(hm1.Mallocs-hm0.Mallocs) / calls
	t.Logf("%s: idle background CPU: %v per second; harness: %.1f allocations per wait", tr, idleCPU.Round(time.Microsecond), harness)

	if s.profile != "" {
		writeProfile(t, "allocs", filepath.Join(s.profile, "allocs-"+tr+"-before.pprof"))
		defer writeProfile(t, "allocs", filepath.Join(s.profile, "allocs-"+tr+"-after.pprof"))
	}
	for _, mode := range []struct {
		name  string
		group int
	}{{"lockstep", 1}, {"burst8", 8}} {
		groups := max(1, s.rounds/mode.group)
		rounds := groups * mode.group
		_, framesBefore, _ := lc.stats()
		runtime.GC()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		user0, sys0 := cpuTimes()
		start := time.Now()
		for range groups {
			pushGroup(mode.group)
		}
		wall := time.Since(start)
		user1, sys1 := cpuTimes()
		user, sys := user1-user0, sys1-sys0
		cpu := user + sys
		runtime.ReadMemStats(&ms1)
		_, framesAfter, closed := lc.stats()

		deliveries := int64(members) * loadBatchMsgs * int64(rounds)
		if framesAfter-framesBefore != deliveries {
			t.Errorf("%s %s: clients counted %d frames, want %d", tr, mode.name, framesAfter-framesBefore, deliveries)
		}
		if closed != 0 {
			t.Errorf("%s %s: %d client connections closed", tr, mode.name, closed)
		}
		mallocs := ms1.Mallocs - ms0.Mallocs
		allocBytes := ms1.TotalAlloc - ms0.TotalAlloc
		perCPU := float64(deliveries) / cpu.Seconds()
		perPush := max(float64(mallocs)-harness*float64(groups), 0) / float64(rounds)
		perRecipient := perPush / float64(members)
		t.Logf("%s %s: %d pushes x %d members x %d messages = %d deliveries in %v wall, %v comet-process CPU "+
			"(%v user, %v system; %.0f%% of one core)",
			tr, mode.name, rounds, members, loadBatchMsgs, deliveries, wall.Round(time.Millisecond), cpu.Round(time.Millisecond),
			user.Round(time.Millisecond), sys.Round(time.Millisecond), 100*cpu.Seconds()/wall.Seconds())
		t.Logf("%s %s: %.3g deliveries per CPU-second, %.3g deliveries/s wall, %.1f µs CPU per recipient per push; "+
			"%.1f allocations (%.0f B, harness included) per push = %.5f per recipient (%d allocations in all, %.0f of them the harness's)",
			tr, mode.name, perCPU, float64(deliveries)/wall.Seconds(), cpu.Seconds()*1e6/float64(rounds*members),
			perPush, float64(allocBytes)/float64(rounds), perRecipient, mallocs, harness*float64(groups))
		t.Logf("LOADTEST fanout transport=%s mode=%s members=%d pushes=%d deliveries=%d cpu_s=%.3f user_s=%.3f sys_s=%.3f wall_s=%.3f "+
			"deliveries_per_cpu_s=%.0f deliveries_per_wall_s=%.0f allocs_per_push=%.1f allocs_per_recipient=%.5f bytes_alloc_per_push=%.0f frames_counted=%d",
			tr, mode.name, members, rounds, deliveries, cpu.Seconds(), user.Seconds(), sys.Seconds(), wall.Seconds(), perCPU, float64(deliveries)/wall.Seconds(),
			perPush, perRecipient, float64(allocBytes)/float64(rounds), framesAfter-framesBefore)
	}
	if _, frames, _ := lc.stats(); frames < frames0 {
		t.Errorf("frame counter went back: %d < %d", frames, frames0)
	}
	lc.stop()
}

// closeCounts lists the comet's connection closes by reason.
func closeCounts(e *testEnv) string {
	var b strings.Builder
	for r := reasonNone + 1; r < numReasons; r++ {
		if n := e.closes(r); n > 0 {
			fmt.Fprintf(&b, "%s=%d ", r, n)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return strings.TrimSpace(b.String())
}

// cpuTime is this process's user + system CPU time.
func cpuTime() time.Duration {
	user, sys := cpuTimes()
	return user + sys
}

// cpuTimes is this process's user and system CPU time.
func cpuTimes() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// loadClients is the client process, seen from the comet's test.
type loadClients struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string   // protocol lines, without the prefix
	eof   chan struct{} // closed when the client's stdout ends
	buf   []byte        // command line being written

	mu     sync.Mutex
	other  []string // anything else the client printed (test output)
	waited bool
}

// startLoadClients starts the test binary as the client process: it opens
// s.conns connections of transport tr to addr, authenticates them into
// loadRoom and reads everything the comet sends.
func startLoadClients(t testing.TB, addr, tr string, s loadSettings) *loadClients {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadClients$", "-test.count=1", "-test.timeout=30m")
	cmd.Env = append(os.Environ(),
		envLoadChild+"=1",
		envLoadAddr+"="+addr,
		envLoadTransport+"="+tr,
		envLoadRoom+"="+loadRoom,
		envLoadConns+"="+strconv.Itoa(s.conns),
		envLoadSources+"="+strings.Join(s.sources, ","),
		envLoadDialers+"="+strconv.Itoa(s.dialers),
		envLoadLife+"=20m",
	)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lc := &loadClients{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 16), eof: make(chan struct{})}
	go func() {
		defer close(lc.eof)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, loadLinePrefix); ok {
				select {
				case lc.lines <- rest:
				case <-time.After(5 * time.Minute): // nobody listening any more
					return
				}
				continue
			}
			lc.mu.Lock()
			if len(lc.other) < 200 {
				lc.other = append(lc.other, line)
			}
			lc.mu.Unlock()
		}
	}()
	t.Cleanup(lc.stop)
	return lc
}

// next returns the client's next protocol line, split into fields.
func (lc *loadClients) next(timeout time.Duration) []string {
	lc.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line := <-lc.lines:
		return strings.Fields(line)
	case <-lc.eof:
		select {
		case line := <-lc.lines:
			return strings.Fields(line)
		default:
		}
		lc.t.Fatalf("client process ended; its output:\n%s", lc.output())
	case <-timer.C:
		lc.t.Fatalf("no answer from the client process within %v; its output:\n%s", timeout, lc.output())
	}
	return nil
}

func (lc *loadClients) output() string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return strings.Join(lc.other, "\n")
}

// waitReady waits until the client process has dialed and authenticated
// every connection it could and returns how many it has.
func (lc *loadClients) waitReady(timeout time.Duration) int {
	lc.t.Helper()
	f := lc.next(timeout)
	if len(f) < 4 || f[0] != "READY" {
		lc.t.Fatalf("client process: unexpected %q", f)
	}
	ok, _ := strconv.Atoi(f[1])
	failed, _ := strconv.Atoi(f[2])
	ms, _ := strconv.Atoi(f[3])
	lc.t.Logf("client process: %d connections up, %d failed, in %d ms", ok, failed, ms)
	if failed > 0 {
		lc.t.Logf("client process: first dial error: %s", strings.Join(f[4:], " "))
	}
	if ok == 0 {
		lc.t.Fatalf("client process opened no connection")
	}
	return ok
}

// command writes one command line to the client process: name and
// numeric arguments (formatted into a reused buffer: no allocation).
func (lc *loadClients) command(name string, args ...int64) {
	lc.t.Helper()
	lc.buf = append(lc.buf[:0], name...)
	for _, a := range args {
		lc.buf = append(lc.buf, ' ')
		lc.buf = strconv.AppendInt(lc.buf, a, 10)
	}
	lc.buf = append(lc.buf, '\n')
	if _, err := lc.stdin.Write(lc.buf); err != nil {
		lc.t.Fatalf("client process: %v", err)
	}
}

// stats returns the bytes and frames the clients have read and how many of
// their connections the comet closed.
func (lc *loadClients) stats() (bytes, frames, closed int64) {
	lc.t.Helper()
	lc.command("stats")
	bytes, frames, closed, _ = lc.counters(lc.next(time.Minute))
	return bytes, frames, closed
}

// waitBytes waits (in the client process) until the clients have read at
// least want bytes in total, or timeout passes.
func (lc *loadClients) waitBytes(want int64, timeout time.Duration) (bytes, frames, closed int64, reached bool) {
	lc.t.Helper()
	lc.command("wait", want, timeout.Milliseconds())
	return lc.counters(lc.next(timeout + time.Minute))
}

func (lc *loadClients) counters(f []string) (bytes, frames, closed int64, reached bool) {
	lc.t.Helper()
	if len(f) != 5 || f[0] != "STATS" {
		lc.t.Fatalf("client process: unexpected %q", f)
	}
	bytes, _ = strconv.ParseInt(f[1], 10, 64)
	frames, _ = strconv.ParseInt(f[2], 10, 64)
	closed, _ = strconv.ParseInt(f[3], 10, 64)
	return bytes, frames, closed, f[4] == "1"
}

// stop closes the client process's stdin, which closes every connection
// and ends the process; it is killed if it has not ended within 30s.
func (lc *loadClients) stop() {
	lc.mu.Lock()
	if lc.waited {
		lc.mu.Unlock()
		return
	}
	lc.waited = true
	lc.mu.Unlock()
	_ = lc.stdin.Close()
	deadline := time.After(30 * time.Second)
wait:
	for {
		select {
		case <-lc.lines: // unread answers
		case <-lc.eof:
			break wait
		case <-deadline:
			_ = lc.cmd.Process.Kill()
			break wait
		}
	}
	if err := lc.cmd.Wait(); err != nil {
		lc.t.Errorf("client process: %v; its output:\n%s", err, lc.output())
	}
}

// TestLoadClients is the client process of the load tests; it skips unless
// started by one (GOIM_LOADTEST_CHILD=1). It opens the connections,
// authenticates each with goim v2 JSON into one room, reads and counts
// everything, prints "LOAD READY <ok> <failed> <ms> [first error]", then
// answers commands on stdin, one per line:
//
//	stats           -> LOAD STATS <bytes> <frames> <closed> 1
//	wait <bytes> <ms> -> the same once bytes reach <bytes> (last field 1) or
//	                   after <ms> (last field 0)
//
// It closes every connection and ends when stdin closes, or exits after
// GOIM_LOADTEST_LIFE whatever happens.
func TestLoadClients(t *testing.T) {
	if os.Getenv(envLoadChild) != "1" {
		t.Skip("the client process of the load tests (started by TestLoadIdleMemory and TestLoadRoomFanout)")
	}
	addr, tr, room := os.Getenv(envLoadAddr), os.Getenv(envLoadTransport), os.Getenv(envLoadRoom)
	n := envInt(t, envLoadConns, 10000)
	dialers := envInt(t, envLoadDialers, 64)
	life, err := time.ParseDuration(os.Getenv(envLoadLife))
	if err != nil {
		t.Fatalf("%s: %v", envLoadLife, err)
	}
	var sources []net.IP
	for _, a := range strings.Split(os.Getenv(envLoadSources), ",") {
		ip := net.ParseIP(strings.TrimSpace(a))
		if ip == nil {
			t.Fatalf("%s: bad address %q", envLoadSources, a)
		}
		sources = append(sources, ip)
	}
	if addr == "" || (tr != "tcp" && tr != "ws" && tr != "sse") || n <= 0 || dialers <= 0 {
		t.Fatalf("client process: bad settings addr=%q transport=%q conns=%d dialers=%d", addr, tr, n, dialers)
	}
	lifeTimer := time.AfterFunc(life, func() {
		fmt.Fprintf(os.Stderr, "loadtest client: %v lifetime over, exiting\n", life)
		os.Exit(3)
	})
	defer lifeTimer.Stop()

	var st loadStats
	conns := make([]net.Conn, n)
	var (
		next, failed atomic.Int64
		errOnce      sync.Once
		firstErr     error
		wg           sync.WaitGroup
	)
	start := time.Now()
	for range min(dialers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for failed.Load() < 100 { // a comet that refuses connections ends the dialing
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := loadDial(addr, tr, room, sources[i%len(sources)], i)
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				conns[i] = c
				if tr == "sse" {
					go func() { _, _ = io.Copy(io.Discard, c) }() // heartbeat comments only (idle test)
					continue
				}
				go st.read(c, tr == "ws")
			}
		}()
	}
	wg.Wait()
	ok := 0
	for _, c := range conns {
		if c != nil {
			ok++
		}
	}
	line := fmt.Sprintf("%sREADY %d %d %d", loadLinePrefix, ok, n-ok, time.Since(start).Milliseconds())
	if firstErr != nil {
		line += " " + strings.ReplaceAll(firstErr.Error(), "\n", " ")
	}
	fmt.Println(line)

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		reached := true
		switch f[0] {
		case "stats":
		case "wait":
			if len(f) != 3 {
				t.Fatalf("client process: bad command %q", f)
			}
			want, _ := strconv.ParseInt(f[1], 10, 64)
			ms, _ := strconv.ParseInt(f[2], 10, 64)
			deadline := time.Now().Add(time.Duration(ms) * time.Millisecond)
			for st.bytes.Load() < want && time.Now().Before(deadline) {
				time.Sleep(100 * time.Microsecond)
			}
			reached = st.bytes.Load() >= want
		default:
			t.Fatalf("client process: unknown command %q", f)
		}
		r := 0
		if reached {
			r = 1
		}
		fmt.Printf("%sSTATS %d %d %d %d\n", loadLinePrefix, st.bytes.Load(), st.frames.Load(), st.closed.Load(), r)
	}
	// Reset rather than close: the client ports then do not linger in
	// TIME_WAIT and the next run can reuse them at once. The comet sees a
	// reset, which it handles like an EOF (reason client_closed).
	for _, c := range conns {
		if c == nil {
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

// loadDial opens one connection from src and authenticates it as key
// k<i> in room, waiting for the op-8 reply. It reads exactly the reply, so
// the stream is at a frame boundary afterwards.
func loadDial(addr, tr, room string, src net.IP, i int) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 30 * time.Second, Control: bindNoPort}
	var conn net.Conn
	var err error
	if tr == "sse" {
		return loadDialSSE(d, addr, room, i)
	}
	if tr == "ws" {
		wd := ws.Dialer{Timeout: 30 * time.Second, NetDial: d.DialContext}
		var br *bufio.Reader
		conn, br, _, err = wd.Dial(context.Background(), "ws://"+addr+"/sub")
		if err != nil {
			return nil, fmt.Errorf("dial %s from %s: %w", addr, src, err)
		}
		if br != nil {
			buffered := br.Buffered()
			ws.PutReader(br)
			if buffered > 0 {
				_ = conn.Close()
				return nil, errors.New("server sent data before auth")
			}
		}
	} else if conn, err = d.Dial("tcp", addr); err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, src, err)
	}
	authFail := func(err error) (net.Conn, error) {
		_ = conn.Close()
		return nil, fmt.Errorf("auth k%d: %w", i, err)
	}
	body := fmt.Appendf(nil, `{"key":"k%d","room_id":%q,"accepts":[1000]}`, i, room)
	frame := (&protocol.Proto{Ver: 1, Op: protocol.OpAuth, Seq: 1, Body: body}).AppendTCP(nil)
	_ = conn.SetDeadline(time.Now().Add(2 * time.Minute))
	var reply []byte
	if tr == "ws" {
		if err := wsutil.WriteClientBinary(conn, frame); err != nil {
			return authFail(err)
		}
		h, err := ws.ReadHeader(conn)
		if err != nil {
			return authFail(err)
		}
		if h.OpCode != ws.OpBinary || h.Length < protocol.HeaderSize || h.Length > 1<<16 {
			return authFail(fmt.Errorf("unexpected message %+v", h))
		}
		reply = make([]byte, h.Length)
		if _, err := io.ReadFull(conn, reply); err != nil {
			return authFail(err)
		}
	} else {
		if _, err := conn.Write(frame); err != nil {
			return authFail(err)
		}
		reply = make([]byte, protocol.HeaderSize)
		if _, err := io.ReadFull(conn, reply); err != nil {
			return authFail(err)
		}
		if n := binary.BigEndian.Uint32(reply); n > protocol.HeaderSize {
			if n > 1<<16 {
				return authFail(fmt.Errorf("reply of %d bytes", n))
			}
			if _, err := io.CopyN(io.Discard, conn, int64(n-protocol.HeaderSize)); err != nil {
				return authFail(err)
			}
		}
	}
	if op := int32(binary.BigEndian.Uint32(reply[8:])); op != protocol.OpAuthReply {
		return authFail(fmt.Errorf("reply op %d, want %d", op, protocol.OpAuthReply))
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// loadDialSSE opens one SSE stream as key k<i> in room and reads up to
// the end of its auth event.
func loadDialSSE(d *net.Dialer, addr, room string, i int) (net.Conn, error) {
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	fail := func(err error) (net.Conn, error) {
		_ = conn.Close()
		return nil, fmt.Errorf("sse k%d: %w", i, err)
	}
	_ = conn.SetDeadline(time.Now().Add(2 * time.Minute))
	req := fmt.Sprintf("GET /sse?key=k%d&room=%s&accepts=1000 HTTP/1.1\r\nHost: %s\r\n\r\n", i, url.QueryEscape(room), addr)
	if _, err := io.WriteString(conn, req); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(conn, 512)
	status, err := br.ReadString('\n')
	if err != nil {
		return fail(err)
	}
	if status != "HTTP/1.1 200 OK\r\n" {
		return fail(fmt.Errorf("status %q", status))
	}
	for seen := false; ; {
		line, err := br.ReadString('\n')
		if err != nil {
			return fail(err)
		}
		if line == "event: auth\n" {
			seen = true
		} else if seen && line == "\n" {
			break
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT socket option.
const ipBindAddressNoPort = 24

// bindNoPort lets connect, not bind, choose the source port, so ports are
// unique per 4-tuple rather than per source address: a source address then
// serves more than one destination, and the search for a free port does
// not slow down as ports fill up. It is best effort.
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	return nil
}

// loadStats are the client process's totals.
type loadStats struct {
	bytes, frames, closed atomic.Int64
}

// read counts what the comet sends on conn until it closes.
func (st *loadStats) read(conn net.Conn, isWS bool) {
	buf := make([]byte, 4096)
	var tcp tcpFrameCounter
	var wsc wsFrameCounter
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			st.bytes.Add(int64(n))
			if isWS {
				st.frames.Add(wsc.feed(buf[:n]))
			} else {
				st.frames.Add(tcp.feed(buf[:n]))
			}
		}
		if err != nil {
			st.closed.Add(1)
			return
		}
	}
}

// tcpFrameCounter counts goim frames in a TCP byte stream, which may be cut
// anywhere.
type tcpFrameCounter struct {
	head [4]byte // packLen being collected
	hn   int
	skip int64 // bytes left of the current frame
}

func (c *tcpFrameCounter) feed(b []byte) (frames int64) {
	for len(b) > 0 {
		if c.skip > 0 {
			k := min(c.skip, int64(len(b)))
			c.skip -= k
			b = b[k:]
			continue
		}
		k := copy(c.head[c.hn:], b)
		c.hn += k
		b = b[k:]
		if c.hn == len(c.head) {
			c.hn = 0
			c.skip = max(int64(binary.BigEndian.Uint32(c.head[:]))-int64(len(c.head)), 0)
			frames++
		}
	}
	return frames
}

// wsFrameCounter counts goim frames in a stream of server WebSocket
// messages: the inner frames of an op-9 carrier, else one per message.
type wsFrameCounter struct {
	state int // 0 WebSocket header, 1 goim header, 2 inner frames, 3 skip
	head  [14]byte
	hn    int
	hneed int
	left  int64 // payload bytes left in the current message
	outer [protocol.HeaderSize]byte
	on    int
	inner tcpFrameCounter
}

func (c *wsFrameCounter) feed(b []byte) (frames int64) {
	for len(b) > 0 {
		switch c.state {
		case 0:
			if c.hneed == 0 {
				c.hneed = 2
			}
			k := copy(c.head[c.hn:c.hneed], b)
			c.hn += k
			b = b[k:]
			if c.hn < c.hneed {
				continue
			}
			if c.hneed == 2 {
				extra := 0
				switch c.head[1] & 0x7f {
				case 126:
					extra = 2
				case 127:
					extra = 8
				}
				if c.head[1]&0x80 != 0 {
					extra += 4
				}
				if extra > 0 {
					c.hneed += extra
					continue
				}
			}
			var length int64
			switch l := c.head[1] & 0x7f; l {
			case 126:
				length = int64(binary.BigEndian.Uint16(c.head[2:]))
			case 127:
				length = int64(binary.BigEndian.Uint64(c.head[2:]) & (1<<63 - 1))
			default:
				length = int64(l)
			}
			opcode := ws.OpCode(c.head[0] & 0x0f)
			c.hn, c.hneed, c.left, c.on = 0, 0, length, 0
			switch {
			case length == 0:
			case opcode == ws.OpBinary || opcode == ws.OpText:
				c.state = 1
			default:
				c.state = 3
			}
		case 1:
			k := int(min(int64(len(c.outer)-c.on), c.left, int64(len(b))))
			copy(c.outer[c.on:], b[:k])
			c.on += k
			c.left -= int64(k)
			b = b[k:]
			switch {
			case c.on == len(c.outer) && int32(binary.BigEndian.Uint32(c.outer[8:])) == protocol.OpRaw:
				c.inner = tcpFrameCounter{}
				c.state = 2
			case c.on == len(c.outer):
				frames++
				c.state = 3
			}
			if c.left == 0 {
				c.state = 0
			}
		case 2, 3:
			k := min(c.left, int64(len(b)))
			if c.state == 2 {
				frames += c.inner.feed(b[:k])
			}
			c.left -= k
			b = b[k:]
			if c.left == 0 {
				c.state = 0
			}
		}
	}
	return frames
}
