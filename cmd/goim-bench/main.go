// Command goim-bench loads a goim cluster and checks what it delivers:
// client connections that record every push they receive, an HTTP pusher
// that numbers and timestamps every push, and the accounting of what was
// delivered, lost, duplicated or out of order, per room and per user.
//
//	goim-bench conns -n 10000 -src 127.0.0.2-127.0.0.20 -room live://1000 -run r1 -duration 60s -json c1.json
//	goim-bench push  -kind room -room live://1000 -rate 200 -duration 30s -run r1 -json p.json
//	goim-bench merge -json all.json c1.json c2.json p.json
//	goim-bench run   -n 2000 -room live://1000 -rate 200 -duration 10s
//	goim-bench conns -n 2500 -addrs 127.0.0.4:3101 -reconnect -api http://127.0.0.1:3111 -duration 5m
//
// With -reconnect a connection the server ends comes back as a goim client
// would: it waits the backoff /goim/nodes/weighted hints and dials the
// nodes it lists; the summary counts drops, reconnects, attempts and the
// time from drop to auth reply.
//
// With -reliable every connection opts in to reliable delivery: each push
// arrives in an op-18 envelope, whose inner frame is accounted as a plain
// push, and whose stream position is checked (a duplicate or a gap fails
// the run, like a lost push); ids are acked in op-19 frames of up to 64
// within 100ms, as a goim client does.
//
// run does both in one process and judges delivery; conns and push run in
// separate processes (several conns, one push, say) and merge judges their
// JSON summaries afterwards. A progress line goes to stderr every second,
// the summary to stdout (as text, and as JSON with -json). Targets must be
// loopback unless -allow-remote is given.
//
// Exit status: 0 when the run passed, 1 when it failed (pushes lost or
// misrouted, connections failed or dropped, nothing accepted) or could not
// run, 2 for a usage error (a remote target without -allow-remote included).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/goim/goim/internal/bench"
	"github.com/goim/goim/internal/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: goim-bench conns|push|run|merge [flags]; -h after a command lists its flags
  conns   open client connections, hold them and record what they receive
  push    send pushes to logic's HTTP API at a rate or as a flood
  run     conns and push in one process, then judge delivery
  merge   judge the JSON summaries of conns and push processes of one run
  -version  print the version, commit and Go version`

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// run runs one command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return exitUsage
	}
	var c command
	switch args[0] {
	case "conns":
		c = &connsCmd{}
	case "push":
		c = &pushCmd{}
	case "run":
		c = &runCmd{}
	case "merge":
		c = &mergeCmd{}
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return exitOK
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, "goim-bench", buildinfo.Version())
		return exitOK
	default:
		fmt.Fprintf(stderr, "goim-bench: unknown command %q\n%s\n", args[0], usage)
		return exitUsage
	}
	fs := flag.NewFlagSet("goim-bench "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &outputFlags{}
	o.register(fs)
	c.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if c.wantsArgs() != (fs.NArg() > 0) {
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "goim-bench %s: unexpected arguments %q\n", args[0], fs.Args())
		} else {
			fmt.Fprintf(stderr, "goim-bench %s: name the summary files to merge\n", args[0])
		}
		return exitUsage
	}
	out := bench.Output{Log: slog.New(slog.NewTextHandler(stderr, nil))}
	if !o.quiet {
		out.Progress = stderr
	}
	stopProfile, err := o.profile()
	if err != nil {
		fmt.Fprintf(stderr, "goim-bench %s: %v\n", args[0], err)
		return exitFail
	}
	s, err := c.run(ctx, fs.Args(), out, stderr)
	stopProfile()
	if err != nil {
		fmt.Fprintf(stderr, "goim-bench %s: %v\n", args[0], err)
		if errors.Is(err, bench.ErrUsage) || errors.Is(err, bench.ErrRemote) {
			return exitUsage
		}
		return exitFail
	}
	if err := o.write(s, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "goim-bench %s: %v\n", args[0], err)
		return exitFail
	}
	if !s.OK {
		return exitFail
	}
	return exitOK
}

// command is one subcommand.
type command interface {
	register(fs *flag.FlagSet)
	wantsArgs() bool
	run(ctx context.Context, args []string, out bench.Output, stderr io.Writer) (*bench.Summary, error)
}

// outputFlags are every command's output flags.
type outputFlags struct {
	json       string
	quiet      bool
	cpuProfile string
}

func (o *outputFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&o.json, "json", "", "also write the summary as JSON to this file (- for stdout; the text summary then goes to stderr)")
	fs.BoolVar(&o.quiet, "q", false, "no progress line")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the tool's own CPU profile to this file (go tool pprof)")
}

// profile starts the CPU profile when asked; stop ends it.
func (o *outputFlags) profile() (stop func(), err error) {
	if o.cpuProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(o.cpuProfile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// write writes the text summary, and the JSON one when asked.
func (o *outputFlags) write(s *bench.Summary, stdout, stderr io.Writer) error {
	text := stdout
	if o.json == "-" {
		text = stderr
	}
	if err := bench.WriteText(text, s); err != nil {
		return err
	}
	switch o.json {
	case "":
		return nil
	case "-":
		return bench.WriteJSON(stdout, s)
	}
	f, err := os.Create(o.json)
	if err != nil {
		return err
	}
	if err := bench.WriteJSON(f, s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// connsFlags configure connections (conns and run).
type connsFlags struct {
	cfg         bench.ConnsConfig
	addrs, src  string
	rooms       string
	accepts     string
	api         string
	hmacKeyFile string
}

func (f *connsFlags) register(fs *flag.FlagSet, withAPI bool) {
	c := &f.cfg
	fs.IntVar(&c.N, "n", 1000, "connections to open")
	fs.IntVar(&c.First, "first", 0, "global index of the first connection (several conns processes: mids and keys follow it)")
	fs.StringVar(&c.Transport, "transport", bench.TransportTCP, "tcp, ws or sse (Server-Sent Events on the comet's WebSocket port: receive only, no heartbeats sent)")
	fs.StringVar(&f.addrs, "addrs", "", "comet client addresses host:port, comma-separated, used round-robin (default: ask -api)")
	if withAPI {
		fs.StringVar(&f.api, "api", "", "logic's HTTP base URL(s), comma-separated, to ask /goim/nodes/weighted for comets when -addrs is empty and on every -reconnect (in turn, one failing, the next)")
		fs.BoolVar(&c.Reconnect, "reconnect", false, "a connection the server or the network ends reconnects as a goim client does: it waits the backoff /goim/nodes/weighted hints (base_delay x factor^attempt up to max_delay, +-jitter), then dials the nodes it lists (needs -api)")
	}
	fs.StringVar(&c.WSPath, "ws-path", "/sub", "WebSocket path")
	fs.StringVar(&c.SSEPath, "sse-path", "/sse", "SSE path (-transport sse; the auth goes in its query)")
	fs.StringVar(&f.src, "src", "", "source addresses, round-robin: 127.0.0.2-127.0.0.20, 127.0.0.2-20 or a list (default: the kernel's choice)")
	fs.Float64Var(&c.DialRate, "dial-rate", 0, "new connections per second at most (0: no cap)")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 100, "handshakes in progress at most")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", 10*time.Second, "bound on dial, upgrade and auth of one connection")
	fs.DurationVar(&c.Heartbeat, "heartbeat", 30*time.Second, "heartbeat period of each connection")
	fs.StringVar(&f.rooms, "room", "live://1000", "room(s) to join, comma-separated: connection i joins the (i mod count)-th; empty joins none")
	fs.Int64Var(&c.MidStart, "mid-start", 1, "user id of the first connection")
	fs.IntVar(&c.MidCount, "mid-count", 0, "users the connections belong to, cycling (0: one user per connection, mid = mid-start + index)")
	fs.StringVar(&c.KeyPrefix, "key-prefix", "", "connection i asks for key <prefix><index> (empty: the server chooses keys)")
	fs.StringVar(&f.hmacKeyFile, "hmac-key-file", "", "authenticate with HS256 tokens signed with this file's bytes (logic's auth.hmac_key_file) instead of goim v2's plain JSON")
	fs.StringVar(&f.accepts, "accepts", "1000", "ops the connections receive for keys, mids and all pushes, comma-separated")
	fs.StringVar(&c.Platform, "platform", "web", "platform in the auth body")
	fs.IntVar(&c.ReadBuffer, "read-buffer", 1024, "read buffer per connection, bytes")
	fs.BoolVar(&c.Reliable, "reliable", false, "opt in to reliable delivery: pushes arrive in op-18 envelopes (their stream positions checked: a duplicate or a gap fails the run), ids are acked in op-19 frames of up to 64 within 100ms (not with -transport sse)")
}

// config completes the config from the flags: lists, the comets (asking
// logic when no -addrs), the file limit.
func (f *connsFlags) config(ctx context.Context, run string, allowRemote bool, stderr io.Writer) (bench.ConnsConfig, error) {
	c := f.cfg
	c.Run, c.AllowRemote = run, allowRemote
	c.Rooms = bench.SplitList(f.rooms)
	var err error
	if f.hmacKeyFile != "" {
		key, err := os.ReadFile(f.hmacKeyFile)
		if err != nil {
			return c, fmt.Errorf("%w: -hmac-key-file: %v", bench.ErrUsage, err)
		}
		c.HMACKey = bytes.TrimRight(key, "\r\n") // as logic reads it
	}
	if c.Accepts, err = bench.ParseInt32List(f.accepts); err != nil {
		return c, fmt.Errorf("%w: -accepts: %v", bench.ErrUsage, err)
	}
	if f.src != "" {
		if c.Src, err = bench.ParseAddrRange(f.src); err != nil {
			return c, fmt.Errorf("%w: -src: %v", bench.ErrUsage, err)
		}
	}
	c.APIs = bench.SplitList(f.api)
	c.Addrs = bench.SplitList(f.addrs)
	if len(c.Addrs) == 0 {
		if len(c.APIs) == 0 {
			return c, fmt.Errorf("%w: give -addrs or -api", bench.ErrUsage)
		}
		var errs []error
		for _, api := range c.APIs {
			addrs, err := bench.ResolveNodes(ctx, api, c.Transport, c.Platform, allowRemote)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			c.Addrs = addrs
			fmt.Fprintf(stderr, "goim-bench: comets from %s: %s\n", api, strings.Join(c.Addrs, ", "))
			break
		}
		if len(c.Addrs) == 0 {
			return c, errors.Join(errs...)
		}
	}
	limit, err := bench.RaiseFileLimit()
	if err != nil {
		fmt.Fprintf(stderr, "goim-bench: cannot raise the open-file limit: %v\n", err)
	}
	if limit > 0 && uint64(c.N)+200 > limit {
		return c, fmt.Errorf("%w: -n %d needs about %d open files; this process may open %d (split the connections over several processes)",
			bench.ErrUsage, c.N, c.N+200, limit)
	}
	return c, nil
}

// pushFlags configure the pusher (push and run).
type pushFlags struct {
	cfg       bench.PushConfig
	tokenFile string
	op        int
	speed     int
	rooms     string
	mids      string
	keys      string
}

func (f *pushFlags) register(fs *flag.FlagSet, withRoom bool) {
	c := &f.cfg
	fs.StringVar(&c.API, "api", "http://127.0.0.1:3111", "logic's HTTP base URL, or several comma-separated: each stream's pushes go to them in turn")
	fs.StringVar(&c.Token, "token", "", "bearer token for the push API ([http] tokens); other users see it in the process list: prefer -token-file or "+bench.EnvToken)
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the push API's bearer token (its first token line: logic's tokens_file will do); without it or -token, the "+bench.EnvToken+" variable")
	fs.StringVar(&c.Kind, "kind", bench.KindRoom, "keys, mids, room or all")
	fs.IntVar(&f.op, "op", 1000, "push operation")
	if withRoom {
		fs.StringVar(&f.rooms, "room", "live://1000", "-kind room: rooms type://id, comma-separated, one per push round-robin")
	}
	fs.StringVar(&f.mids, "mids", "", "-kind mids: user ids and ranges (1-1000,2000), one per push round-robin")
	fs.StringVar(&f.keys, "keys", "", "-kind keys: connection keys, comma-separated; bk-[0-999] is bk-0 ... bk-999")
	fs.IntVar(&f.speed, "speed", 0, "-kind all: the speed parameter (connections/s; 0 as fast as possible)")
	fs.Float64Var(&c.Rate, "rate", 100, "open loop: pushes per second")
	fs.IntVar(&c.Concurrency, "concurrency", 50, "requests in flight at most (open loop) or senders (flood)")
	fs.BoolVar(&c.Flood, "flood", false, "closed loop: each sender sends again as soon as it is answered")
	fs.IntVar(&c.Count, "count", 0, "stop after this many pushes (0: no count bound)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "stop sending after this long")
	fs.IntVar(&c.Size, "size", bench.DefaultBodySize, fmt.Sprintf("body size, bytes (at most %d)", bench.MaxBodySize))
	fs.DurationVar(&c.HTTPTimeout, "http-timeout", 10*time.Second, "bound on one request")
}

func (f *pushFlags) config(run string, allowRemote bool) (bench.PushConfig, error) {
	c := f.cfg
	c.Run, c.AllowRemote = run, allowRemote
	c.Op, c.Speed = int32(f.op), int32(f.speed)
	if int(c.Op) != f.op || int(c.Speed) != f.speed {
		return c, fmt.Errorf("%w: -op and -speed must fit an int32", bench.ErrUsage)
	}
	c.Rooms = bench.SplitList(f.rooms)
	var err error
	if c.Token, err = bench.ResolveToken(f.tokenFile, c.Token); err != nil {
		return c, err
	}
	if f.mids != "" {
		if c.Mids, err = bench.ParseInt64List(f.mids); err != nil {
			return c, fmt.Errorf("%w: -mids: %v", bench.ErrUsage, err)
		}
	}
	if f.keys != "" {
		if c.Keys, err = bench.ParseKeys(f.keys); err != nil {
			return c, fmt.Errorf("%w: -keys: %v", bench.ErrUsage, err)
		}
	}
	return c, nil
}

// runFlags are -run and -allow-remote.
type runFlags struct {
	run         string
	allowRemote bool
}

func (f *runFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.run, "run", "", "run id in every push body; conns and push processes of one run must share it (default: random)")
	fs.BoolVar(&f.allowRemote, "allow-remote", false, "allow non-loopback comets, API and source addresses")
}

// id returns the run id, a random one when none was given (said on
// stderr, for the other processes of the run).
func (f *runFlags) id(stderr io.Writer) string {
	if f.run == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		f.run = hex.EncodeToString(b)
		fmt.Fprintf(stderr, "goim-bench: run id %s\n", f.run)
	}
	return f.run
}

type connsCmd struct {
	runFlags
	conns connsFlags
	hold  time.Duration
}

func (c *connsCmd) register(fs *flag.FlagSet) {
	c.runFlags.register(fs)
	c.conns.register(fs, true)
	fs.DurationVar(&c.hold, "duration", time.Minute, "hold the connections this long from the start (SIGINT or SIGTERM ends earlier, with a summary)")
}

func (c *connsCmd) wantsArgs() bool { return false }

func (c *connsCmd) run(ctx context.Context, _ []string, out bench.Output, stderr io.Writer) (*bench.Summary, error) {
	cfg, err := c.conns.config(ctx, c.id(stderr), c.allowRemote, stderr)
	if err != nil {
		return nil, err
	}
	return bench.RunConns(ctx, cfg, c.hold, out)
}

type pushCmd struct {
	runFlags
	push pushFlags
}

func (c *pushCmd) register(fs *flag.FlagSet) {
	c.runFlags.register(fs)
	c.push.register(fs, true)
}

func (c *pushCmd) wantsArgs() bool { return false }

func (c *pushCmd) run(ctx context.Context, _ []string, out bench.Output, stderr io.Writer) (*bench.Summary, error) {
	cfg, err := c.push.config(c.id(stderr), c.allowRemote)
	if err != nil {
		return nil, err
	}
	return bench.RunPush(ctx, cfg, out)
}

type runCmd struct {
	runFlags
	conns    connsFlags
	push     pushFlags
	pushRoom string
	drain    time.Duration
}

func (c *runCmd) register(fs *flag.FlagSet) {
	c.runFlags.register(fs)
	c.conns.register(fs, false)
	c.push.register(fs, false)
	fs.StringVar(&c.pushRoom, "push-room", "", "-kind room: rooms to push to (default: the rooms of -room)")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "after the last push, wait at most this long for deliveries still on their way")
}

func (c *runCmd) wantsArgs() bool { return false }

func (c *runCmd) run(ctx context.Context, _ []string, out bench.Output, stderr io.Writer) (*bench.Summary, error) {
	id := c.id(stderr)
	c.conns.api = c.push.cfg.API
	if c.push.cfg.Kind == bench.KindKeys && c.conns.cfg.KeyPrefix == "" {
		c.conns.cfg.KeyPrefix = id + "-" // keys pushes need keys the pusher knows
	}
	cc, err := c.conns.config(ctx, id, c.allowRemote, stderr)
	if err != nil {
		return nil, err
	}
	c.push.rooms = c.pushRoom
	if c.push.rooms == "" {
		c.push.rooms = c.conns.rooms
	}
	pc, err := c.push.config(id, c.allowRemote)
	if err != nil {
		return nil, err
	}
	// By default mids and keys pushes go to the connections' own users
	// and keys.
	if pc.Kind == bench.KindMids && len(pc.Mids) == 0 {
		users := cc.N
		if cc.MidCount > 0 {
			users = min(cc.MidCount, cc.N)
		}
		for i := range users {
			mid := cc.MidStart + int64(cc.First+i)
			if cc.MidCount > 0 {
				mid = cc.MidStart + int64((cc.First+i)%cc.MidCount)
			}
			pc.Mids = append(pc.Mids, mid)
		}
	}
	if pc.Kind == bench.KindKeys && len(pc.Keys) == 0 {
		for i := range cc.N {
			pc.Keys = append(pc.Keys, fmt.Sprintf("%s%d", cc.KeyPrefix, cc.First+i))
		}
	}
	return bench.Run(ctx, cc, pc, c.drain, out)
}

type mergeCmd struct{}

func (c *mergeCmd) register(*flag.FlagSet) {}

func (c *mergeCmd) wantsArgs() bool { return true }

func (c *mergeCmd) run(_ context.Context, args []string, _ bench.Output, _ io.Writer) (*bench.Summary, error) {
	var in []*bench.Summary
	for _, name := range args {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		s, err := bench.ReadSummary(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		in = append(in, s)
	}
	return bench.Merge(in)
}
