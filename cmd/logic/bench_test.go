package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The benchmarks run logic as its own process, Kafka (kfake) and the load
// in the test process, and Redis as the shared server, so the CPU time
// they report (from /proc) is logic's alone. Run them with a fixed count:
//
//	go test -run x -bench Process -benchtime 20000x ./cmd/logic/

// cpuTime is logic's CPU time so far.
func cpuTime(tb testing.TB, pid int) time.Duration { return testkit.ProcessCPU(tb, pid) }

// syscalls is the number of read-family and write-family system calls
// process pid has made so far (syscr and syscw of /proc/<pid>/io), or
// -1, -1 where that file cannot be read.
func syscalls(pid int) (r, w int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return -1, -1
	}
	r, w = -1, -1
	for line := range strings.Lines(string(b)) {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case !ok || err != nil:
		case name == "syscr":
			r = n
		case name == "syscw":
			w = n
		}
	}
	return r, w
}

// load runs n calls of do over workers goroutines and reports calls per
// second and per logic CPU-second (and, when a call carries per > 1
// connections, connections per logic CPU-second), and logic's read and
// write system calls per call.
func load(b *testing.B, p *proc, workers, per int, do func(i int) error) {
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr sync.Once
	if out := os.Getenv("GOIM_BENCH_PROFILE"); out != "" {
		go profile(b, p, out)
	}
	cpu0 := cpuTime(b, p.cmd.Process.Pid)
	r0, w0 := syscalls(p.cmd.Process.Pid)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if err := do(int(i)); err != nil {
					failed.Add(1)
					firstErr.Do(func() { b.Error(err) })
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cpuTime(b, p.cmd.Process.Pid) - cpu0
	r1, w1 := syscalls(p.cmd.Process.Pid)
	if failed.Load() > 0 {
		b.Fatalf("%d of %d calls failed", failed.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	if cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "calls/logic-cpu-s")
	}
	if r0 >= 0 && r1 >= 0 && w0 >= 0 && w1 >= 0 {
		b.ReportMetric(float64(r1-r0)/float64(b.N), "logic-reads/call")
		b.ReportMetric(float64(w1-w0)/float64(b.N), "logic-writes/call")
	}
	if cpu > 0 && per > 1 {
		b.ReportMetric(float64(b.N*per)/cpu.Seconds(), "conns/logic-cpu-s")
	}
}

// profile saves a 3-second CPU profile of logic, taken from its admin
// listener, to the file out (GOIM_BENCH_PROFILE=file).
func profile(b *testing.B, p *proc, out string) {
	resp, err := http.Get("http://" + p.adminAddr + "/debug/pprof/profile?seconds=3")
	if err != nil {
		b.Log(err)
		return
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if err := os.WriteFile(out, data, 0o644); err != nil {
		b.Log(err)
	}
}

func benchPush(b *testing.B, path func(i int) string) {
	p := startProcess(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := strings.Repeat("x", 64)
	load(b, p, 50, 1, func(i int) error {
		resp, err := p.post(client, path(i), body)
		if err != nil {
			return err
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("push: %d %s", resp.StatusCode, got)
		}
		return nil
	})
}

// BenchmarkProcessPushRoom: room pushes from 50 concurrent HTTP clients,
// each answered only after Kafka acknowledged it.
func BenchmarkProcessPushRoom(b *testing.B) {
	benchPush(b, func(i int) string { return "/goim/push/room?operation=1000&type=live&room=" + strconv.Itoa(i%100) })
}

// BenchmarkProcessPushAll: broadcasts (no Redis lookup).
func BenchmarkProcessPushAll(b *testing.B) {
	benchPush(b, func(int) string { return "/goim/push/all?operation=1000" })
}

// BenchmarkProcessPushMids: pushes to users with a session each (a Redis
// lookup, then a publish).
func BenchmarkProcessPushMids(b *testing.B) {
	p := startProcess(b)
	rpc := dialRPC(b, p)
	for mid := 1; mid <= 100; mid++ {
		if _, err := rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: "comet-" + strconv.Itoa(mid%4), Token: authToken(b, p, mid)}); err != nil {
			b.Fatal(err)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	load(b, p, 50, 1, func(i int) error {
		resp, err := p.post(client, "/goim/push/mids?operation=1000&mids="+strconv.Itoa(i%100+1), "hello")
		if err != nil {
			return err
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("push: %d %s", resp.StatusCode, got)
		}
		return nil
	})
}

// BenchmarkProcessConnect: Connect calls (JWT verification, key
// generation, a Redis write) from 32 concurrent callers, as comets make
// them during a reconnect storm.
func BenchmarkProcessConnect(b *testing.B) {
	p := startProcess(b)
	rpc := dialRPC(b, p)
	tokens := make([][]byte, 1000)
	for i := range tokens {
		tokens[i] = authToken(b, p, i+1)
	}
	load(b, p, 32, 1, func(i int) error {
		_, err := rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: "comet-1", Token: tokens[i%len(tokens)]})
		return err
	})
}

// BenchmarkProcessConnectBatch: the same connections, 32 to a
// ConnectBatch call (as a comet gathers handshakes in a burst), from 4
// concurrent callers (a comet's connect workers).
func BenchmarkProcessConnectBatch(b *testing.B) {
	const per = 32
	p := startProcess(b)
	rpc := dialRPC(b, p)
	reqs := make([]*logicpb.ConnectReq, 1024)
	for i := range reqs {
		reqs[i] = &logicpb.ConnectReq{Server: "comet-1", Token: authToken(b, p, i+1)}
	}
	load(b, p, 4, per, func(i int) error {
		j := i * per % len(reqs)
		r, err := rpc.ConnectBatch(context.Background(), &logicpb.ConnectBatchReq{Reqs: reqs[j : j+per]})
		if err != nil {
			return err
		}
		for _, res := range r.GetResults() {
			if res.GetCode() != 0 {
				return fmt.Errorf("connect refused: %d %s", res.GetCode(), res.GetMessage())
			}
		}
		return nil
	})
}

func dialRPC(tb testing.TB, p *proc) logicpb.LogicClient {
	tb.Helper()
	keys, err := rpcauth.Config{Secrets: []string{p.rpcSecret}}.Load()
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := grpc.NewClient(p.rpcAddr, append(keys.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return logicpb.NewLogicClient(conn)
}

// authToken is an auth body with an HS256 token for mid.
func authToken(tb testing.TB, p *proc, mid int) []byte {
	tb.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, logic.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   strconv.Itoa(mid),
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
		},
		Rooms: []string{"live://1"},
	}).SignedString(p.secret)
	if err != nil {
		tb.Fatal(err)
	}
	return []byte(`{"token":"` + tok + `","room_id":"live://1","accepts":[1000]}`)
}
