package job

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/job/cometpool"
	"github.com/goim/goim/internal/kafkasec"
	"github.com/goim/goim/internal/logging"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrClosed is returned by Start after Shutdown.
var ErrClosed = errors.New("job: closed")

// retryDelay spaces attempts to reach Kafka while it is down.
const retryDelay = time.Second

// Job consumes the push topic as a member of the consumer group and
// delivers each push to the comets it targets (see partition for the
// delivery rules and cometpool for the calls).
type Job struct {
	cfg       Config
	log       *slog.Logger
	metrics   *metrics
	pool      *cometpool.Pool
	deferrals *reporter // reports deferred deliveries to logic; nil when [logic] is off
	seed      maphash.Seed
	disc      *discovery.Client // nil without discovery nodes
	sarama    *sarama.Config
	adminAddr func() string // Deps.AdminAddr

	ctx         context.Context // cancelled when shutdown begins: stops consuming
	cancel      context.CancelFunc
	drainCtx    context.Context // cancelled when the shutdown deadline passes
	drainCancel context.CancelFunc
	abort       chan struct{} // closed by kill: a simulated crash
	killOnce    sync.Once
	wg          sync.WaitGroup

	consuming atomic.Bool // a group session is running
	comets    atomic.Bool // the comet list is known

	mu           sync.Mutex // guards the fields below
	started      bool
	closing      bool
	group        sarama.ConsumerGroup
	registration *discovery.Registration

	stopOnce sync.Once
	shutErr  error
}

// Deps are what job uses from outside. A nil Logger discards; a nil
// Registry keeps the metrics in a private registry.
type Deps struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// AdminAddr, when set, returns the admin listener's address (called at
	// Start): job serves nothing else, so that is the address it
	// registers in discovery ("http://" + it). Without one it registers
	// "job://" + host (discovery requires an address).
	AdminAddr func() string
}

// New checks cfg and builds a job; it starts nothing and connects to
// nothing (see Start).
func New(cfg Config, deps Deps) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := logging.OrDiscard(deps.Logger)
	reg := admin.OrPrivate(deps.Registry)
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	sec, err := cfg.Kafka.Security()
	if err != nil {
		return nil, fmt.Errorf("job: kafka: %w", err)
	}
	sc := saramaConfig(cfg, sec)
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("job: kafka: consumer settings: %w", err)
	}
	sec.Log(log, "job: kafka")
	keys, err := cfg.RPC.Load()
	if err != nil {
		return nil, fmt.Errorf("job: %w", err)
	}
	keys.Log(log, "job")
	pool, err := cometpool.New(cfg.Comet, log, reg, keys.DialOptions()...)
	if err != nil {
		return nil, err
	}
	j := &Job{
		adminAddr: deps.AdminAddr,
		cfg:       cfg,
		log:       log,
		metrics:   m,
		pool:      pool,
		seed:      maphash.MakeSeed(),
		sarama:    sc,
		abort:     make(chan struct{}),
	}
	if len(cfg.Discovery.Nodes) > 0 {
		dc := cfg.Discovery
		if dc.Host == "" {
			dc.Host = cfg.Host
		}
		if j.disc, err = discovery.New(dc, log); err != nil {
			return nil, fmt.Errorf("job: %w", err)
		}
	}
	if j.deferrals, err = newReporter(cfg.Logic, keys, m, log); err != nil {
		return nil, fmt.Errorf("job: %w", err)
	}
	j.ctx, j.cancel = context.WithCancel(context.Background())
	j.drainCtx, j.drainCancel = context.WithCancel(context.Background())
	return j, nil
}

// saramaConfig is the consumer group's configuration: manual commits of
// offsets marked only after delivery (at least once), timestamps for
// max_age, sticky assignment so a rebalance moves few partitions; TLS and
// SASL as sec says.
func saramaConfig(cfg Config, sec *kafkasec.Security) *sarama.Config {
	k := cfg.Kafka
	c := sarama.NewConfig()
	c.ClientID = "goim-job"
	c.Version, _ = sarama.ParseKafkaVersion(k.Version) // validated
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.AutoCommit.Enable = false
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	if k.InitialOffset == OffsetNewest {
		c.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	c.Consumer.Group.Session.Timeout = k.SessionTimeout.D()
	c.Consumer.Group.Heartbeat.Interval = k.SessionTimeout.D() / 3
	c.Consumer.Group.Rebalance.Timeout = k.RebalanceTimeout.D()
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	c.Net.DialTimeout = 3 * time.Second
	c.Metadata.Retry.Max = 1
	sec.Apply(c)
	return c
}

// Start follows the comets (discovery or the static list), registers
// goim.job and starts consuming once the comets are known. Kafka may be
// down: job keeps trying to join the group.
func (j *Job) Start() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closing {
		return ErrClosed
	}
	if j.started {
		return errors.New("job: already started")
	}
	j.started = true
	j.deferrals.start(j.ctx, &j.wg, j.disc)
	known := make(chan struct{})
	if j.disc == nil {
		j.pool.Update(j.cfg.Comets)
		j.comets.Store(true)
		close(known)
	} else {
		w := j.disc.Watch(j.ctx, discovery.AppComet)
		j.wg.Go(func() { j.followComets(w, known) })
		ctx, cancel := context.WithTimeout(j.ctx, j.cfg.Discovery.RequestTimeout.D())
		var err error
		addr := "job://" + j.cfg.Host
		if j.adminAddr != nil && j.adminAddr() != "" {
			addr = discovery.HTTPAddr(j.adminAddr())
		}
		j.registration, err = j.disc.Register(ctx, discovery.Instance{AppID: discovery.AppJob, Hostname: j.cfg.Host, Addrs: []string{addr}})
		cancel()
		if err != nil {
			j.log.Error("job: discovery registration failed (job works without it)", "err", err)
		}
	}
	j.wg.Go(func() {
		select {
		case <-known:
			j.consume()
		case <-j.ctx.Done():
		}
	})
	return nil
}

// followComets keeps the pool in step with goim.comet in discovery.
func (j *Job) followComets(w *discovery.Watcher, known chan struct{}) {
	first := true
	for {
		select {
		case <-j.ctx.Done():
			return
		case <-w.Changed():
		}
		comets := make(map[string]string)
		for _, ins := range w.Instances() {
			if j.cfg.CometZone != "" && ins.Zone != j.cfg.CometZone {
				continue
			}
			if hp, ok := ins.GRPC(); ok {
				comets[ins.Hostname] = hp
			}
		}
		j.pool.Update(comets)
		j.log.Info("job: comets", "count", len(comets))
		if first {
			first = false
			j.comets.Store(true)
			close(known)
		}
	}
}

// consume runs consumer group sessions until shutdown, re-joining after
// errors (Kafka down, a rebalance that failed).
func (j *Job) consume() {
	h := &handler{j: j}
	for j.ctx.Err() == nil {
		group, err := j.joinGroup()
		if err != nil {
			j.log.Warn("job: cannot reach Kafka; retrying", "err", err)
			j.sleep(retryDelay)
			continue
		}
		errs := make(chan struct{})
		go func() { // ends when the group is closed
			defer close(errs)
			for err := range group.Errors() {
				j.metrics.errors.Inc()
				j.log.Warn("job: consumer group", "err", err)
			}
		}()
		for j.ctx.Err() == nil {
			if err := group.Consume(j.ctx, []string{j.cfg.Kafka.Topic}, h); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) {
					break
				}
				j.metrics.errors.Inc()
				j.log.Warn("job: consumer group session ended", "err", err)
				j.sleep(retryDelay)
			}
		}
		select {
		case <-j.abort: // kill closes the group itself, without waiting
		default:
			if err := group.Close(); err != nil {
				j.log.Warn("job: closing the consumer group", "err", err)
			}
		}
		<-errs
	}
}

// joinGroup creates the consumer group client (it connects to a broker).
func (j *Job) joinGroup() (sarama.ConsumerGroup, error) {
	group, err := sarama.NewConsumerGroup(j.cfg.Kafka.Brokers, j.cfg.Kafka.Group, j.sarama)
	if err != nil {
		return nil, err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closing {
		_ = group.Close()
		return nil, ErrClosed
	}
	j.group = group
	return group, nil
}

// sleep waits d or until shutdown.
func (j *Job) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-j.ctx.Done():
	}
}

// Ready reports whether job is consuming: it knows the comets and is in a
// consumer group session (admin /readyz).
func (j *Job) Ready() error {
	switch {
	case !j.comets.Load():
		return errors.New("job: waiting for the comet list from discovery")
	case !j.consuming.Load():
		return errors.New("job: not in a consumer group session (Kafka unreachable, or rebalancing)")
	}
	return nil
}

// Shutdown stops job gracefully and is idempotent: it stops fetching,
// flushes the room batches, waits for the calls in flight, commits, leaves
// the group and discovery, closes the comet connections and sends the
// deferred deliveries still queued to logic. At ctx's deadline what is
// left is cut off (and delivered again by the next owner of its
// partition; unsent reports are dropped).
func (j *Job) Shutdown(ctx context.Context) error {
	j.stopOnce.Do(func() { j.shutErr = j.shutdown(ctx) })
	return j.shutErr
}

func (j *Job) shutdown(ctx context.Context) error {
	j.mu.Lock()
	j.closing = true
	reg := j.registration
	j.mu.Unlock()
	stop := context.AfterFunc(ctx, j.drainCancel)
	defer stop()
	if reg != nil {
		if err := reg.Cancel(ctx); err != nil {
			j.log.Warn("job: discovery cancel failed", "err", err)
		}
	}
	j.cancel()
	j.wg.Wait()
	err := j.pool.Close(ctx)
	j.deferrals.stop(ctx) // after the pool: its last calls may report
	if j.disc != nil {
		_ = j.disc.Close()
	}
	j.drainCancel()
	return err
}

// kill simulates a crash, for tests: the partitions stop at once without
// flushing or committing, the group is closed without a final commit and
// the comet calls are cut off. Offsets committed before stay.
func (j *Job) kill() {
	j.killOnce.Do(func() {
		close(j.abort)
		j.mu.Lock()
		j.closing = true
		group := j.group
		j.mu.Unlock()
		j.cancel()
		if group != nil {
			_ = group.Close()
		}
		j.wg.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = j.pool.Close(ctx)
		j.deferrals.stop(ctx)
		if j.disc != nil {
			_ = j.disc.Close()
		}
	})
}

// handler is the sarama consumer group handler: one partition per claim.
type handler struct{ j *Job }

func (h *handler) Setup(s sarama.ConsumerGroupSession) error {
	h.j.metrics.rebalances.Inc()
	h.j.consuming.Store(true)
	h.j.log.Info("job: group session", "generation", s.GenerationID(), "claims", s.Claims())
	return nil
}

func (h *handler) Cleanup(sarama.ConsumerGroupSession) error {
	h.j.consuming.Store(false)
	return nil
}

func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	newPartition(h.j, s, c).run(c.Messages())
	return nil
}
