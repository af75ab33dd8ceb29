package dao

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
	"google.golang.org/protobuf/proto"

	"github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/kafkasec"
	"github.com/goim/goim/internal/logging"
)

// KafkaConfig is the [kafka] section of logic's configuration.
type KafkaConfig struct {
	// Brokers are the bootstrap brokers, "host:port".
	// Default ["127.0.0.1:9092"].
	Brokers []string `toml:"brokers"`
	// Topic receives every push (job consumes it). Default "goim-push-topic".
	Topic string `toml:"topic"`
	// Timeout bounds a Publish: connecting if needed, handing the message
	// over and waiting for every in-sync replica's acknowledgement (it is
	// also the broker-side ack timeout and the network timeout). A push
	// not acknowledged within it fails. Default "5s".
	Timeout conf.Duration `toml:"timeout"`
	// MaxMessageBytes is the largest message (key + value + overhead)
	// logic sends; keep it <= the topic's max.message.bytes.
	// Default 1000000.
	MaxMessageBytes int `toml:"max_message_bytes"`
	// Version is the Kafka protocol version spoken to the brokers, e.g.
	// "2.1.0"; at most the oldest broker's version. Default "2.1.0".
	Version string `toml:"version"`
	// Idempotent makes the producer idempotent: a retried batch is not
	// written twice and retries keep the order within a partition. Needs
	// version >= "0.11.0" and, on a cluster with ACLs, IDEMPOTENT_WRITE
	// (or WRITE on the topic). Default true.
	Idempotent bool `toml:"idempotent"`
	// The keys tls, tls_ca_file, tls_cert_file, tls_key_file,
	// tls_server_name, sasl_mechanism, sasl_user and sasl_password_file:
	// TLS and SASL to the brokers (managed Kafka services), as job's
	// [kafka] has them. Default: neither.
	kafkasec.Config
}

// DefaultKafkaConfig returns the defaults of KafkaConfig.
func DefaultKafkaConfig() KafkaConfig {
	return KafkaConfig{
		Brokers:         []string{"127.0.0.1:9092"},
		Topic:           "goim-push-topic",
		Timeout:         conf.Duration(5 * time.Second),
		MaxMessageBytes: 1000000,
		Version:         "2.1.0",
		Idempotent:      true,
	}
}

// Validate records every problem of c in p, with key paths relative to p.
func (c KafkaConfig) Validate(p *conf.Problems) {
	p.Brokers("brokers", c.Brokers)
	p.Check(validTopic(c.Topic), "topic", "must be 1 to 249 of [a-zA-Z0-9._-], and not . or .., got %q", c.Topic)
	p.Check(c.Timeout > 0, "timeout", "must be > 0, got %v", c.Timeout)
	p.Check(c.MaxMessageBytes > 0 && c.MaxMessageBytes < int(sarama.MaxRequestSize), "max_message_bytes",
		"must be 1..%d, got %d", sarama.MaxRequestSize-1, c.MaxMessageBytes)
	v, err := sarama.ParseKafkaVersion(c.Version)
	if p.Check(err == nil, "version", `must be a Kafka version such as "2.1.0": %v`, err) {
		p.Check(v.IsAtLeast(sarama.MinVersion), "version", "must be >= %s, got %q", sarama.MinVersion, c.Version)
		if c.Idempotent {
			p.Check(v.IsAtLeast(sarama.V0_11_0_0), "version", `must be >= "0.11.0" with idempotent = true, got %q`, c.Version)
		}
	}
	c.Config.Validate(p)
}

// validTopic reports whether t is a legal Kafka topic name.
func validTopic(t string) bool {
	if t == "" || len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for i := 0; i < len(t); i++ {
		switch ch := t[i]; {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '.', ch == '_', ch == '-':
		default:
			return false
		}
	}
	return true
}

// sarama records its client metrics (request rates, sizes and latencies
// per broker and topic) in go-metrics histograms and meters, which take a
// lock per update and a sampling step per message. logic exports none of
// them, so they are created as no-ops: go-metrics' constructors return
// no-op metrics while UseNilMetrics is set, and sarama is the only user
// of go-metrics in the process.
func init() { metrics.UseNilMetrics = true }

// reconnectDelay is how long after a failed connect Publish fails at once
// with that failure instead of trying again: an unreachable cluster costs
// one attempt per delay, not one per push.
const reconnectDelay = time.Second

// Kafka publishes pushes to the push topic. It is safe for concurrent use.
//
// The sarama producer is created by the first Publish or Ping (and again
// after a failed attempt), so logic starts, and serves connections, while Kafka is
// down; until it is up every Publish fails with ErrKafka.
//
// Publish is synchronous, as sarama's SyncProducer is: it returns nil only
// once the partition leader has the message and every in-sync replica has
// acknowledged it (acks = all). It is built like SyncProducer, on the
// AsyncProducer with a per-message result channel, so that a Publish also
// ends when its context does or after KafkaConfig.Timeout, whichever
// comes first, instead of after sarama's retries, dials and metadata
// refreshes run out.
type Kafka struct {
	topic   string
	brokers []string
	cfg     KafkaConfig
	sec     *kafkasec.Security
	version sarama.KafkaVersion
	timeout time.Duration
	log     *slog.Logger

	// mu guards the fields below. Publish holds it for reading while it
	// hands a message to prod, so that Close (write lock) never closes
	// prod under a sender. Ping reads client under mu but uses it after
	// releasing it (a metadata request can take Timeout): sarama's client
	// is safe for concurrent use, and once dispatch has closed it a request
	// fails with sarama.ErrClosedClient instead of misbehaving.
	mu         sync.RWMutex
	prod       sarama.AsyncProducer // nil until connected
	client     sarama.Client        // prod's client, set with prod; closed by dispatch after prod
	connecting chan struct{}        // closed when the running connect ends; nil if none runs
	connErr    error                // why the last connect failed
	connErrAt  time.Time            // when it failed
	probe      *kafkaProbe          // the running Ping probe; nil if none runs
	probeOKAt  time.Time            // when a Ping probe last succeeded
	closed     bool

	wg sync.WaitGroup // the connect, dispatch and Ping probe goroutines
}

// NewKafka validates cfg and returns a publisher. It starts nothing and
// does not connect: the first Publish or Ping does. A nil logger discards.
func NewKafka(cfg KafkaConfig, logger *slog.Logger) (*Kafka, error) {
	var p conf.Problems
	cfg.Validate(&p)
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("dao: kafka config: %w", err)
	}
	logger = logging.OrDiscard(logger)
	v, _ := sarama.ParseKafkaVersion(cfg.Version) // validated
	sec, err := cfg.Security()
	if err != nil {
		return nil, fmt.Errorf("dao: kafka config: %w", err)
	}
	k := &Kafka{
		topic:   cfg.Topic,
		brokers: append([]string(nil), cfg.Brokers...),
		cfg:     cfg,
		sec:     sec,
		version: v,
		timeout: cfg.Timeout.D(),
		log:     logger,
	}
	if err := k.saramaConfig().Validate(); err != nil {
		return nil, fmt.Errorf("dao: kafka: producer settings: %w", err)
	}
	sec.Log(logger, "dao: kafka")
	return k, nil
}

// saramaConfig returns the producer's settings; each producer gets its own
// (sarama keeps per-config metrics).
func (k *Kafka) saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "goim-logic"
	c.Version = k.version
	// Only the push topic's metadata, fetched on first use.
	c.Metadata.Full = false
	c.Metadata.Timeout = k.timeout
	// Publish gives up after timeout, so no single request needs longer.
	// A hung broker (accepts, never answers) costs a connect about three
	// read timeouts (ApiVersions v3, then v0, then InitProducerID), which
	// bounds Close.
	c.Net.DialTimeout = k.timeout
	c.Net.ReadTimeout = k.timeout
	c.Net.WriteTimeout = k.timeout
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Timeout = k.timeout
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Retry.Max = 3
	// FNV-1a of the key, as goim v2 (sarama's default): one key, one partition.
	c.Producer.Partitioner = sarama.NewHashPartitioner
	c.Producer.MaxMessageBytes = k.cfg.MaxMessageBytes
	if k.cfg.Idempotent {
		c.Producer.Idempotent = true
		c.Net.MaxOpenRequests = 1 // required by sarama's idempotent producer
		// One InitProducerID attempt per connect (sarama's default is 51,
		// with a read timeout each): a failed connect is retried by the
		// next Publish after reconnectDelay.
		c.Producer.Transaction.Retry.Max = 0
	}
	k.sec.Apply(c)
	return c
}

// Close stops the producer: messages already handed over are still
// delivered or failed (their Publish returns accordingly), then Close
// waits for its goroutines (a Ping probe included). With Kafka reachable that is quick; with a
// hung broker it waits for sarama's retries and for a connect in progress,
// each attempt bounded by Timeout (a few Timeouts in all). Publish after
// Close fails with ErrKafka and ErrClosed. It is idempotent.
func (k *Kafka) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		k.wg.Wait()
		return nil
	}
	k.closed = true
	p := k.prod
	k.mu.Unlock()
	if p != nil {
		p.AsyncClose() // the dispatcher drains its results and ends
	}
	k.wg.Wait()
	return nil
}

// Publish writes msg to the push topic and returns once Kafka acknowledged
// it (acks = all), or fails with an error wrapping ErrKafka. The record key
// keeps related pushes on one partition, in order: PUSH -> msg.Server,
// ROOM -> msg.Room, BROADCAST -> msg.Operation in decimal.
//
// If msg.MsgId is empty Publish sets it to NewMsgID() (so msg is modified
// and must not be shared with a concurrent reader); logic's pushes come
// with the push's id already set, shared by its per-comet PushMsgs. A msg without its
// target (PUSH without server or keys, ROOM without room, unknown type)
// or larger than MaxMessageBytes fails with ErrInvalidArgument and nothing
// is sent. (Sarama's own size check, which counts the record overhead
// too, may still refuse a message just under the limit, with ErrKafka.)
//
// An error does not prove the push was not written: it may have been
// acknowledged after Publish gave up. A retry then repeats it with the
// same msg_id, by which consumers can de-duplicate.
func (k *Kafka) Publish(ctx context.Context, msg *logic.PushMsg) error {
	key, err := recordKey(msg)
	if err != nil {
		return err
	}
	if msg.MsgId == "" {
		msg.MsgId = NewMsgID()
	}
	value, err := proto.Marshal(msg)
	if err != nil {
		return k.publishError(msg, err)
	}
	if n := len(key) + len(value); n > k.cfg.MaxMessageBytes {
		return fmt.Errorf("dao: kafka: publish %s: %w: %d bytes, over max_message_bytes (%d)",
			msg.Type, ErrInvalidArgument, n, k.cfg.MaxMessageBytes)
	}
	// Timeout is a plain timer beside ctx rather than a derived context:
	// a context.WithTimeout per push registers a child in the caller's
	// context and allocates a timer context, a cancel function and a Done
	// channel; only the rare connect path below needs a derived context.
	deadline := time.Now().Add(k.timeout)
	timer := time.NewTimer(k.timeout)
	defer timer.Stop()
	done := make(chan error, 1)
	pm := &sarama.ProducerMessage{
		Topic:    k.topic,
		Key:      sarama.StringEncoder(key),
		Value:    sarama.ByteEncoder(value),
		Metadata: done,
	}
	if err := k.send(ctx, timer.C, deadline, pm); err != nil {
		return k.publishError(msg, k.waitError(ctx, err))
	}
	select {
	case err := <-done:
		if err != nil {
			return k.publishError(msg, err)
		}
		return nil
	case <-ctx.Done():
		return k.publishError(msg, k.waitError(ctx, ctx.Err()))
	case <-timer.C:
		return k.publishError(msg, k.waitError(ctx, context.DeadlineExceeded))
	}
}

// recordKey returns the Kafka record key of msg, or an ErrInvalidArgument.
func recordKey(msg *logic.PushMsg) (string, error) {
	var what string
	switch {
	case msg == nil:
		what = "nil message"
	case msg.Type == logic.PushMsg_PUSH && msg.Server == "":
		what = "PUSH without server"
	case msg.Type == logic.PushMsg_PUSH && len(msg.Keys) == 0:
		what = "PUSH without keys"
	case msg.Type == logic.PushMsg_PUSH:
		return msg.Server, nil
	case msg.Type == logic.PushMsg_ROOM && msg.Room == "":
		what = "ROOM without room"
	case msg.Type == logic.PushMsg_ROOM:
		return msg.Room, nil
	case msg.Type == logic.PushMsg_BROADCAST:
		return strconv.FormatInt(int64(msg.Operation), 10), nil
	default:
		what = "unknown type " + msg.Type.String()
	}
	return "", fmt.Errorf("dao: kafka: publish: %w: %s", ErrInvalidArgument, what)
}

// send hands pm to the producer, connecting first if there is none. It
// gives up when ctx ends or expired fires (at deadline), with
// context.DeadlineExceeded for the latter.
func (k *Kafka) send(ctx context.Context, expired <-chan time.Time, deadline time.Time, pm *sarama.ProducerMessage) error {
	for {
		k.mu.RLock()
		if k.closed {
			k.mu.RUnlock()
			return ErrClosed
		}
		if p := k.prod; p != nil {
			defer k.mu.RUnlock()
			select {
			case p.Input() <- pm:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			case <-expired:
				return context.DeadlineExceeded
			}
		}
		k.mu.RUnlock()
		cctx, cancel := context.WithDeadline(ctx, deadline)
		err := k.connect(cctx)
		cancel()
		if err != nil {
			return err
		}
	}
}

// connect waits for a connect attempt to end, starting one unless one is
// running or the last one failed less than reconnectDelay ago (then it
// returns that failure). A nil return means "look again": the attempt may
// have failed.
func (k *Kafka) connect(ctx context.Context) error {
	k.mu.Lock()
	switch {
	case k.closed:
		k.mu.Unlock()
		return ErrClosed
	case k.prod != nil:
		k.mu.Unlock()
		return nil
	case k.connecting == nil && k.connErr != nil && time.Since(k.connErrAt) < reconnectDelay:
		err := k.connErr
		k.mu.Unlock()
		return err
	case k.connecting == nil:
		done := make(chan struct{})
		k.connecting = done
		k.wg.Go(func() { k.dial(done) })
	}
	attempt := k.connecting
	k.mu.Unlock()
	select {
	case <-attempt:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dial creates the producer and, unless Close came first, installs it and
// starts its dispatcher. It closes done when it ends.
//
// The sarama client is created separately because NewAsyncProducer leaks
// its client (connections, goroutines) when the producer cannot start (as
// when InitProducerID fails); dial closes it then, and dispatch closes it
// after the producer.
func (k *Kafka) dial(done chan struct{}) {
	defer close(done)
	client, err := sarama.NewClient(k.brokers, k.saramaConfig())
	var p sarama.AsyncProducer
	if err == nil {
		if p, err = sarama.NewAsyncProducerFromClient(client); err != nil {
			_ = client.Close()
		}
	}
	k.mu.Lock()
	k.connecting = nil
	switch {
	case err != nil:
		k.connErr, k.connErrAt = err, time.Now()
		k.mu.Unlock()
		k.log.Warn("dao: kafka: cannot create the producer", slog.Any("brokers", k.brokers), slog.Any("error", err))
	case k.closed:
		k.mu.Unlock()
		_ = p.Close() // nothing was sent: returns at once
		_ = client.Close()
	default:
		k.prod, k.client, k.connErr = p, client, nil
		k.wg.Go(func() { k.dispatch(p, client) }) // wg > 0 here (dial's own count), so this cannot race with Wait
		k.mu.Unlock()
		k.log.Info("dao: kafka: producer ready", slog.Any("brokers", k.brokers), slog.String("topic", k.topic))
	}
}

// dispatch routes each acknowledgement or failure to the Publish waiting
// for it, until the producer is closed and has delivered every result;
// then it closes the client.
func (k *Kafka) dispatch(p sarama.AsyncProducer, client sarama.Client) {
	successes, errs := p.Successes(), p.Errors()
	for successes != nil || errs != nil {
		select {
		case m, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
			deliver(m, nil)
		case e, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			err := e.Err
			if err == nil {
				err = errors.New("producer error without cause")
			}
			deliver(e.Msg, err)
		}
	}
	_ = client.Close()
}

// pingCacheFor is how long a successful Ping probe answers later Pings
// without asking a broker again.
const pingCacheFor = time.Second

// kafkaProbe is one metadata request made for Ping; the Pings that arrive
// while it runs wait for it instead of sending their own.
type kafkaProbe struct {
	done chan struct{} // closed when the probe ends
	err  error         // its result, written before done is closed
}

// Ping checks that Kafka can take pushes: the producer is connected
// (Ping connects it if needed, as Publish does) and a broker answers a
// metadata request for the push topic, within Timeout or the context,
// whichever ends first. Nothing is published. A success is remembered for
// pingCacheFor, and concurrent Pings share one request, so calling it
// every few seconds (a readiness probe) costs at most one small request
// per second. It fails with an error wrapping ErrKafka (and ErrClosed
// after Close).
//
// Like the producer, the metadata request may create the topic on a
// broker with auto.create.topics.enable (sarama's
// Metadata.AllowAutoTopicCreation is left at its default, true).
func (k *Kafka) Ping(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	p, err := k.startProbe(tctx)
	if err == nil && p != nil {
		select {
		case <-p.done:
			err = p.err
		case <-tctx.Done():
			err = tctx.Err()
		}
	}
	if err == nil {
		return nil
	}
	k.mu.RLock()
	closed := k.closed
	k.mu.RUnlock()
	switch {
	case closed:
		err = ErrClosed
	case ctx.Err() != nil:
		err = ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("no answer within %v: %w", k.timeout, err)
	}
	return &opError{kind: ErrKafka, op: "ping " + strconv.Quote(k.topic), err: err}
}

// startProbe connects if needed and returns the probe for Ping to wait
// for: the one running, or a new one. It returns nil, nil when a probe
// succeeded less than pingCacheFor ago.
func (k *Kafka) startProbe(ctx context.Context) (*kafkaProbe, error) {
	for {
		k.mu.Lock()
		switch {
		case k.closed:
			k.mu.Unlock()
			return nil, ErrClosed
		case k.client == nil:
			k.mu.Unlock()
			if err := k.connect(ctx); err != nil {
				return nil, err
			}
			continue
		case k.probe != nil:
			p := k.probe
			k.mu.Unlock()
			return p, nil
		case time.Since(k.probeOKAt) < pingCacheFor:
			k.mu.Unlock()
			return nil, nil
		}
		p := &kafkaProbe{done: make(chan struct{})}
		k.probe = p
		client := k.client
		k.wg.Go(func() { k.runProbe(p, client) }) // under mu and not closed: Close has not begun to Wait
		k.mu.Unlock()
		return p, nil
	}
}

// runProbe asks a broker for the push topic's metadata. Sarama bounds the
// request: Metadata.Timeout (Timeout) across its retries, plus at most one
// read timeout (Timeout) for the request in flight. Closing the client
// does not interrupt that request, so Close may wait for it as long; no
// broker is tried after the client is closed.
func (k *Kafka) runProbe(p *kafkaProbe, client sarama.Client) {
	err := client.RefreshMetadata(k.topic)
	k.mu.Lock()
	p.err = err
	if err == nil {
		k.probeOKAt = time.Now()
	}
	k.probe = nil
	k.mu.Unlock()
	close(p.done)
}

// deliver hands a message's result to its Publish; done has room for it
// even when that Publish already gave up.
func deliver(m *sarama.ProducerMessage, err error) {
	if m == nil {
		return
	}
	if done, ok := m.Metadata.(chan error); ok {
		done <- err
	}
}

// waitError says why a Publish stopped waiting: the caller's context, or
// Timeout.
func (k *Kafka) waitError(parent context.Context, err error) error {
	if perr := parent.Err(); perr != nil {
		return perr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("not acknowledged within %v: %w", k.timeout, err)
	}
	return err
}

func (k *Kafka) publishError(msg *logic.PushMsg, err error) error {
	op := "publish " + msg.Type.String() + " msg_id=" + msg.MsgId + " to " + strconv.Quote(k.topic)
	return &opError{kind: ErrKafka, op: op, err: err}
}
