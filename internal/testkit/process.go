package testkit

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Build compiles the command in the current directory (a test of a cmd/
// package) into a temporary directory and returns the binary's path.
func Build(tb testing.TB, name string) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// ProcessCPU is the user+system CPU time process pid has used, from
// /proc/<pid>/stat (Linux; 10 ms resolution).
func ProcessCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The fields after the command name (in parentheses): utime and stime
	// are the 12th and 13th.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// WaitReady waits until the admin listener at addr answers /readyz with
// 200 (the service started and its dependencies answer).
func WaitReady(tb testing.TB, addr string, timeout time.Duration) {
	tb.Helper()
	WaitFor(tb, timeout, func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", resp.StatusCode, b)
		}
		return nil
	})
}

// CheckVersion runs bin -version and checks that it prints one line,
// "<name> <version> commit <revision>[ (modified)] <go version>", and
// exits 0 without reading a config file.
func CheckVersion(tb testing.TB, bin, name string) {
	tb.Helper()
	out, err := exec.Command(bin, "-version", "-conf", "/nonexistent/config.toml").CombinedOutput()
	if err != nil {
		tb.Fatalf("%s -version: %v\n%s", name, err, out)
	}
	line := strings.TrimSuffix(string(out), "\n")
	f := strings.Fields(line)
	if strings.Contains(line, "\n") || len(f) < 5 || f[0] != name || f[2] != "commit" || !strings.HasPrefix(f[len(f)-1], "go") {
		tb.Fatalf("%s -version printed %q, want %q", name, out, name+" <version> commit <revision> <go version>")
	}
}

// CheckBuildInfo fetches the /metrics of the admin listener at addr and
// checks that it exports goim_build_info with value 1.
func CheckBuildInfo(tb testing.TB, addr string) {
	tb.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "goim_build_info{") && strings.Contains(l, `commit="`) && strings.Contains(l, `go="go`) &&
			strings.Contains(l, `version="`) && strings.HasSuffix(l, "} 1") {
			return
		}
	}
	tb.Fatalf("%s/metrics has no goim_build_info{version,commit,go} 1:\n%s", addr, b)
}
