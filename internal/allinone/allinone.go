// Package allinone runs a whole goim cluster in one process, for a laptop:
// an embedded Kafka-protocol broker (kfake), an embedded Redis-protocol
// server (miniredis) and bilibili/discovery's server, then logic, job and
// one comet wired through them over loopback sockets exactly as separate
// processes would be (real gRPC, real Kafka and Redis protocols, real
// discovery). Any embedded part can be replaced by a real one
// (Config.Kafka.Brokers, Config.Redis.Addr, Config.Discovery.Nodes); it is
// then not started. cmd/goim is its command.
//
// The embedded discovery server can run only once per process and never
// stops (see internal/discovery/embedded), so a process can Start at most
// one Cluster that embeds discovery.
package allinone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/discovery/embedded"
	"github.com/goim/goim/internal/job"
	"github.com/goim/goim/internal/logging"
	"github.com/goim/goim/internal/logic"
)

// clockTick is how often the embedded Redis's clock advances: miniredis
// only expires keys when told that time passed, and logic relies on
// session and online-report TTLs.
const clockTick = 100 * time.Millisecond

// Deps are what the cluster uses from outside.
type Deps struct {
	// Logger receives the logs of logic, comet, job and the embedded
	// discovery server, each with a "service" attribute naming it.
	// Nil discards.
	Logger *slog.Logger
	// Pages are extra GET pages served on logic's HTTP listener (the demo
	// page); see logic.Deps.
	Pages map[string]http.Handler
	// InfraOnly starts only the embedded parts (Kafka, Redis, discovery),
	// not logic, comet and job: for running the services as separate
	// processes against them (scripts/bench.sh does).
	InfraOnly bool
}

// Cluster is a running all-in-one cluster. Start it with Start; Shutdown
// stops it.
type Cluster struct {
	cfg Config
	log *slog.Logger

	kafka     *kfake.Cluster           // nil with real Kafka
	redis     *miniredis.Miniredis     // nil with real Redis
	clockStop chan struct{}            // stops the embedded Redis's clock
	clockDone chan struct{}            // closed when the clock goroutine returns
	discovery bool                     // the discovery server is embedded
	logic     *logic.Server            // nil until started
	job       *job.Job                 // nil until started
	comet     *comet.Server            // nil until started
	admins    map[string]*admin.Server // service name -> its admin listener
	infraOnly bool                     // logic, comet and job are not started

	stopOnce sync.Once
	stopErr  error
}

// Start validates cfg (call Config.Wire first, as Load does), starts the
// embedded parts cfg does not replace, then logic, comet and job, and
// returns at once: WaitReady waits until every service is ready. On error
// everything started is stopped.
func Start(cfg Config, deps Deps) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, log: logging.OrDiscard(deps.Logger), admins: map[string]*admin.Server{}, infraOnly: deps.InfraOnly}
	if err := c.start(deps); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
		defer cancel()
		_ = c.shutdown(ctx)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(deps Deps) error {
	cfg := c.cfg
	if len(cfg.Kafka.Brokers) == 0 {
		kc, err := kfake.NewCluster(
			kfake.Ports(cfg.Kafka.Port),
			kfake.SeedTopics(int32(cfg.Kafka.Partitions), cfg.Logic.Kafka.Topic),
		)
		if err != nil {
			return fmt.Errorf("embedded kafka on 127.0.0.1:%d: %w", cfg.Kafka.Port, err)
		}
		c.kafka = kc
	}
	if cfg.Redis.Addr == "" {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr(cfg.Redis.Listen); err != nil {
			return fmt.Errorf("embedded redis on %s: %w", cfg.Redis.Listen, err)
		}
		c.redis = m
		c.clockStop, c.clockDone = make(chan struct{}), make(chan struct{})
		go c.redisClock()
	}
	if len(cfg.Discovery.Nodes) == 0 {
		if _, err := embedded.Start(embedded.Config{Addr: cfg.Discovery.Listen, Env: cfg.Discovery.Env},
			c.log.With("service", "discovery")); err != nil {
			return err
		}
		c.discovery = true
	}
	if c.infraOnly {
		return nil
	}

	lreg := admin.NewRegistry()
	ls, err := logic.New(cfg.Logic, logic.Deps{Logger: c.log.With("service", "logic"), Registry: lreg, Pages: deps.Pages})
	if err != nil {
		return err
	}
	c.logic = ls
	if err := c.startAdmin("logic", cfg.Logic.Admin, lreg, ls.Ready); err != nil {
		return err
	}
	if err := ls.Start(); err != nil {
		return err
	}

	creg := admin.NewRegistry()
	cs, err := comet.New(cfg.Comet, comet.Deps{Logger: c.log.With("service", "comet"), Registry: creg})
	if err != nil {
		return err
	}
	c.comet = cs
	if err := c.startAdmin("comet", cfg.Comet.Admin, creg, cs.Ready); err != nil {
		return err
	}
	if err := cs.Start(); err != nil {
		return err
	}

	jreg := admin.NewRegistry()
	js, err := job.New(cfg.Job, job.Deps{Logger: c.log.With("service", "job"), Registry: jreg,
		AdminAddr: func() string { return c.admins["job"].Addr() }})
	if err != nil {
		return err
	}
	c.job = js
	if err := c.startAdmin("job", cfg.Job.Admin, jreg, js.Ready); err != nil {
		return err
	}
	return js.Start()
}

// startAdmin starts a service's metrics, pprof and health listener.
func (c *Cluster) startAdmin(name string, cfg admin.Config, reg *prometheus.Registry, ready func() error) error {
	a, err := admin.New(cfg, reg, ready, c.log.With("service", name))
	if err != nil {
		return fmt.Errorf("%s admin: %w", name, err)
	}
	if err := a.Start(); err != nil {
		return fmt.Errorf("%s admin: %w", name, err)
	}
	c.admins[name] = a
	return nil
}

// redisClock advances the embedded Redis's clock with the wall clock, so
// that keys expire.
func (c *Cluster) redisClock() {
	defer close(c.clockDone)
	t := time.NewTicker(clockTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-c.clockStop:
			return
		case now := <-t.C:
			c.redis.FastForward(now.Sub(last))
			last = now
		}
	}
}

// Ready is nil when every service is ready, else the reasons.
func (c *Cluster) Ready() error {
	if c.infraOnly {
		return nil
	}
	var errs []error
	for _, s := range []struct {
		name  string
		ready func() error
	}{{"logic", c.logic.Ready}, {"comet", c.comet.Ready}, {"job", c.job.Ready}} {
		if err := s.ready(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
	}
	return errors.Join(errs...)
}

// WaitReady waits until Ready is nil or ctx ends; then it returns Ready's
// last answer.
func (c *Cluster) WaitReady(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := c.Ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-t.C:
		}
	}
}

// HTTPAddr is logic's HTTP API address ("" with InfraOnly).
func (c *Cluster) HTTPAddr() string {
	if c.logic == nil {
		return ""
	}
	return c.logic.HTTPAddr()
}

// Summary tells where everything listens, with a push to try and how to
// connect a client.
func (c *Cluster) Summary() string {
	var b strings.Builder
	line := func(what, where string) { fmt.Fprintf(&b, "  %-28s %s\n", what, where) }
	cfg := c.cfg
	b.WriteString("goim all-in-one is running\n\n")
	if c.kafka != nil {
		line("Kafka (embedded kfake)", fmt.Sprintf("%s  topic %s, %d partitions, in memory",
			strings.Join(c.kafka.ListenAddrs(), ","), cfg.Logic.Kafka.Topic, cfg.Kafka.Partitions))
	} else {
		line("Kafka", strings.Join(cfg.Kafka.Brokers, ",")+"  topic "+cfg.Logic.Kafka.Topic)
	}
	if c.redis != nil {
		line("Redis (embedded miniredis)", c.redis.Addr()+"  in memory")
	} else {
		line("Redis", cfg.Redis.Addr)
	}
	if c.discovery {
		line("discovery (embedded)", "http://"+cfg.Discovery.Listen+"  env "+cfg.Discovery.Env)
	} else {
		line("discovery", strings.Join(cfg.Discovery.Nodes, ",")+"  env "+cfg.Discovery.Env)
	}
	if c.infraOnly {
		b.WriteString("\nOnly the embedded parts run (-infra-only): start logic, job and comets against them.\n")
		b.WriteString("Ctrl-C stops them.\n")
		return b.String()
	}
	api := "http://" + c.logic.HTTPAddr()
	line("logic HTTP API", api)
	line("logic gRPC", c.logic.RPCAddr())
	for _, a := range c.comet.Addrs("tcp") {
		line("comet TCP", a.String())
	}
	for _, a := range c.comet.Addrs("ws") {
		line("comet WebSocket", "ws://"+a.String()+cfg.Comet.WebSocket.Path)
		if cfg.Comet.SSE.Path != "" {
			line("comet SSE (EventSource)", "http://"+a.String()+cfg.Comet.SSE.Path+"?room=live://1000")
		}
	}
	for _, a := range c.comet.Addrs("tls") {
		line("comet TCP+TLS", a.String())
	}
	for _, a := range c.comet.Addrs("wss") {
		line("comet WebSocket+TLS", "wss://"+a.String()+cfg.Comet.WebSocket.Path)
	}
	for _, name := range []string{"logic", "comet", "job"} {
		if a := c.admins[name]; a != nil {
			line(name+" admin (metrics, pprof)", "http://"+a.Addr())
		}
	}
	if cfg.Logic.Auth.Insecure {
		b.WriteString("\n!!! WARNING: [logic.auth] insecure = true: connections are NOT authenticated; any client\n" +
			"!!! may claim any user id, key and room (goim v2 JSON auth). For development only.\n")
	}
	anonymous := c.logic.AnonymousAPI()
	if anonymous {
		b.WriteString("\n!!! WARNING: [logic.http] allow_anonymous = true and no token: the push API is OPEN; anyone\n" +
			"!!! who reaches " + api + " may push to every user and room. For development only.\n")
	}
	auth := "" // the curl examples' credential
	if !anonymous {
		auth = "-H \"Authorization: Bearer $GOIM_HTTP_TOKEN\" "
	}
	b.WriteString("\nTry it:\n")
	if anonymous {
		fmt.Fprintf(&b, "  open %s/demo in a browser (it joins room live://1000)\n", api)
	} else {
		b.WriteString("  (the browser demo at /demo pushes without a token: it needs [logic.http] allow_anonymous)\n")
	}
	fmt.Fprintf(&b, "  open %s/console for the cluster's figures, a push form and a live client\n", api)
	fmt.Fprintf(&b, "  curl %s-d 'hello, room' '%s/goim/push/room?operation=1000&type=live&room=1000'\n", auth, api)
	fmt.Fprintf(&b, "  curl %s-d 'hello, user' '%s/goim/push/mids?operation=1000&mids=1'\n", auth, api)
	b.WriteString("  clients: any goim v2 client, TCP or WebSocket /sub, auth body (op 7)\n")
	b.WriteString(`    {"mid":1,"key":"","room_id":"live://1000","platform":"web","accepts":[1000]}` + "\n")
	b.WriteString("\nCtrl-C stops everything (pushes first, then job, comet, logic).\n")
	return b.String()
}

// Shutdown stops the cluster in order, each step bounded by
// shutdown_timeout: logic stops taking pushes (503), job delivers what it
// has consumed and commits, the comet drains its clients (each
// disconnects through logic), logic stops, then the embedded parts. The
// embedded discovery server keeps running until the process exits (its
// library cannot stop it). Shutdown is idempotent.
func (c *Cluster) Shutdown() error {
	c.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*c.cfg.ShutdownTimeout.D())
		defer cancel()
		c.stopErr = c.shutdown(ctx)
	})
	return c.stopErr
}

func (c *Cluster) shutdown(ctx context.Context) error {
	step := func(f func(context.Context) error) error {
		sctx, cancel := context.WithTimeout(ctx, c.cfg.ShutdownTimeout.D())
		defer cancel()
		return f(sctx)
	}
	var errs []error
	if c.logic != nil {
		c.logic.StopPushes()
	}
	if c.job != nil {
		errs = append(errs, step(c.job.Shutdown))
	}
	if c.comet != nil {
		errs = append(errs, step(func(ctx context.Context) error {
			c.comet.Drain(ctx, c.cfg.Comet.Drain.InterruptWindow.D())
			return c.comet.Shutdown(ctx)
		}))
	}
	if c.logic != nil {
		errs = append(errs, step(c.logic.Shutdown))
	}
	for _, name := range []string{"logic", "comet", "job"} {
		if a := c.admins[name]; a != nil {
			errs = append(errs, step(a.Shutdown))
		}
	}
	if c.redis != nil {
		close(c.clockStop)
		<-c.clockDone
		c.redis.Close()
	}
	if c.kafka != nil {
		c.kafka.Close()
	}
	return errors.Join(errs...)
}
