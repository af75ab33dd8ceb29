package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binaries are the commands the suite runs, built once per test binary.
type binaries struct {
	logic, job, comet, discovery string
}

// buildBinaries compiles the four commands in one go build (which builds
// them in parallel) into a temporary directory. The services are built
// without -race: the race detector runs in the test binary, and the
// service binaries would cost twice the CPU under it (GOIM_E2E_RACE=1
// builds them with -race; a race then shows in their logs and makes them
// exit 66).
func buildBinaries(t *testing.T) binaries {
	t.Helper()
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if os.Getenv("GOIM_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "github.com/goim/goim/cmd/logic", "github.com/goim/goim/cmd/job",
		"github.com/goim/goim/cmd/comet", "github.com/goim/goim/cmd/discovery")
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return binaries{
		logic:     filepath.Join(dir, "logic"),
		job:       filepath.Join(dir, "job"),
		comet:     filepath.Join(dir, "comet"),
		discovery: filepath.Join(dir, "discovery"),
	}
}

// process is a service the suite started. Its stdout and stderr go to a
// file in the test's temporary directory, whose tail the suite prints
// when it fails.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when the process has exited
	err     error         // cmd.Wait's result, set before exited closes
}

// startProcess starts bin with args; t fails if it cannot. The process
// belongs to owner (the top-level test, for a process that outlives the
// subtest starting it): at owner's cleanup it is killed if it still runs,
// and when owner failed the tail of its log is printed.
func startProcess(t, owner *testing.T, name, bin string, args ...string) *process {
	t.Helper()
	return startProcessEnv(t, owner, name, nil, bin, args...)
}

// startProcessEnv is startProcess with env ("NAME=value") added to the
// process's environment (see childEnv).
func startProcessEnv(t, owner *testing.T, name string, env []string, bin string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(owner.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &process{name: name, cmd: exec.Command(bin, args...), logPath: logPath, exited: make(chan struct{})}
	p.cmd.Env = childEnv(env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	owner.Cleanup(func() {
		p.kill()
		// Services built with GOIM_E2E_RACE=1 report races in their logs.
		if log := p.log(); strings.Contains(log, "WARNING: DATA RACE") {
			race := log[strings.Index(log, "WARNING: DATA RACE"):]
			owner.Errorf("%s: the race detector reported a data race:\n%s", name, race[:min(len(race), 6000)])
		}
		if owner.Failed() {
			owner.Logf("--- %s (%s), last lines of its log:\n%s", name, p.state(), p.tail(40))
		}
	})
	return p
}

// childEnv is the test's environment without any GOIM_ variable, plus
// env: the services read secrets from GOIM_ variables (GOIM_RPC_SECRET,
// GOIM_HTTP_TOKENS, ...), which win over their config files, so one set
// in the developer's shell must not reach the suite's processes.
func childEnv(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOIM_") {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

// running reports whether the process has not exited.
func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// state describes how the process ended, or that it runs.
func (p *process) state() string {
	if p.running() {
		return "running"
	}
	if p.err == nil {
		return "exited 0"
	}
	return p.err.Error()
}

// signal sends sig to the process.
func (p *process) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
}

// kill sends SIGKILL (kill -9) and waits for the exit.
func (p *process) kill() {
	if p.running() {
		_ = p.cmd.Process.Kill()
	}
	<-p.exited
}

// waitExit waits up to timeout for the process to exit and returns its
// exit error (nil for status 0).
func (p *process) waitExit(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s still running %v later; log tail:\n%s", p.name, timeout, p.tail(40))
		return nil
	}
}

// failIfExited fails the test when the process has exited: a service that
// died explains a condition that is never met.
func (p *process) failIfExited(t *testing.T) {
	t.Helper()
	if !p.running() {
		t.Fatalf("%s exited (%s); log tail:\n%s", p.name, p.state(), p.tail(40))
	}
}

// log returns the whole log so far.
func (p *process) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// tail returns the last n lines of the log.
func (p *process) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
