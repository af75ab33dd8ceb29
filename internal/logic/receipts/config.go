// Package receipts records the delivery of pushes to reliable connections:
// a pending status per target when a push is appended to its stream, a
// delivered status when the target's client acks it, expiry after the
// stream's retention, an HTTP status answer and an optional webhook.
package receipts

import (
	"net/url"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/secret"
)

// Bounds of the configuration.
const (
	MinTTL           = time.Minute
	MaxTTL           = 30 * 24 * time.Hour
	MinSweepInterval = 10 * time.Millisecond
	MaxSweepInterval = time.Hour
	MaxSweepBatch    = 100_000
	MaxTargets       = 100_000
	MaxBatchSize     = 10_000
	MaxQueue         = 1_000_000
	MaxRetries       = 20
	MaxURLLen        = 2048
	// MinFlushInterval .. MaxDelay bound the webhook's durations
	// (flush_interval, timeout, retry_delay, max_retry_delay).
	MinFlushInterval = time.Millisecond
	MaxDelay         = time.Hour
)

// Config is logic's [receipts] section.
type Config struct {
	// Enabled records receipts for the pushes appended to user and key
	// streams, answers GET /goim/push/status and takes comets' acks.
	// false: nothing is recorded, acks are ignored and the status
	// endpoint answers -501. Default true.
	Enabled bool `toml:"enabled"`
	// TTL is how long a target stays pending: past it (counted from the
	// push) the target is expired, as its stream no longer holds the push
	// for recovery; keep it equal to [stream] ttl. The record is kept one
	// more ttl after that, so that the status endpoint can answer
	// expired and delivered. 1m..30d. Default "24h".
	TTL conf.Duration `toml:"ttl"`
	// SweepInterval is how often a logic turns pending targets past their
	// deadline into expired (and sends their webhook events). 10ms..1h.
	// Default "1s".
	SweepInterval conf.Duration `toml:"sweep_interval"`
	// SweepBatch bounds the pushes one sweep handles; the rest wait for
	// the next sweeps. 1..100000. Default 1000.
	SweepBatch int `toml:"sweep_batch"`
	// MaxTargets bounds the targets recorded for one push; the targets
	// beyond it are not tracked (goim_logic_receipts_total{status=
	// "untracked"}). 1..100000. Default 1000.
	MaxTargets int `toml:"max_targets"`
	// Webhook posts delivered and expired events to an HTTP endpoint.
	Webhook WebhookConfig `toml:"webhook"`
}

// WebhookConfig is the [receipts.webhook] section.
type WebhookConfig struct {
	// URL receives the events, POSTed as JSON arrays; http or https
	// only, at most 2048 bytes, no user:password part (use secret_file to
	// authenticate logic to it). "" turns the webhook off. Default "".
	URL string `toml:"url"`
	// SecretFile holds the HMAC-SHA256 key that signs each body
	// (X-Goim-Signature); trailing newlines are ignored. Required with
	// url; read at start and by -check-config (also without url). Default
	// "".
	SecretFile string `toml:"secret_file"`
	// BatchSize is the most events in one POST. 1..10000. Default 100.
	BatchSize int `toml:"batch_size"`
	// FlushInterval is the longest an event waits for its batch to fill
	// before it is sent. 1ms..1h. Default "1s".
	FlushInterval conf.Duration `toml:"flush_interval"`
	// Queue bounds the events waiting to be sent; events beyond it are
	// dropped and counted (goim_logic_webhook_events_total{outcome=
	// "dropped_queue"}): pushes and acks never wait for the webhook.
	// 1..1000000. Default 10000.
	Queue int `toml:"queue"`
	// Timeout bounds one POST, response included. 1ms..1h. Default "5s".
	Timeout conf.Duration `toml:"timeout"`
	// Retries is how many times a batch whose POST failed (no 2xx
	// answer) is sent again before it is dropped and counted (outcome
	// "failed"). 0..20. Default 3.
	Retries int `toml:"retries"`
	// RetryDelay is the wait before the first retry; it doubles at each
	// retry, up to max_retry_delay. 1ms..1h. Default "500ms".
	RetryDelay conf.Duration `toml:"retry_delay"`
	// MaxRetryDelay caps the wait between retries; at least retry_delay,
	// at most 1h. Default "30s".
	MaxRetryDelay conf.Duration `toml:"max_retry_delay"`
}

// DefaultConfig is the [receipts] section a config file leaves out.
func DefaultConfig() Config {
	return Config{
		Enabled:       true,
		TTL:           conf.Duration(24 * time.Hour),
		SweepInterval: conf.Duration(time.Second),
		SweepBatch:    1000,
		MaxTargets:    1000,
		Webhook: WebhookConfig{
			BatchSize:     100,
			FlushInterval: conf.Duration(time.Second),
			Queue:         10_000,
			Timeout:       conf.Duration(5 * time.Second),
			Retries:       3,
			RetryDelay:    conf.Duration(500 * time.Millisecond),
			MaxRetryDelay: conf.Duration(30 * time.Second),
		},
	}
}

// Validate records c's problems in p.
func (c Config) Validate(p *conf.Problems) {
	between(p, "ttl", c.TTL, MinTTL, MaxTTL)
	between(p, "sweep_interval", c.SweepInterval, MinSweepInterval, MaxSweepInterval)
	count(p, "sweep_batch", c.SweepBatch, 1, MaxSweepBatch)
	count(p, "max_targets", c.MaxTargets, 1, MaxTargets)

	w, wp := c.Webhook, p.Sub("webhook")
	if w.URL != "" {
		if err := checkURL(w.URL); err != "" {
			wp.Add("url", "%s", err)
		}
		wp.Check(w.SecretFile != "", "secret_file", "required with url (the key that signs each body)")
	}
	if w.SecretFile != "" {
		if _, err := secret.ReadFile(w.SecretFile); err != nil {
			wp.Add("secret_file", "%v", err)
		}
	}
	count(wp, "batch_size", w.BatchSize, 1, MaxBatchSize)
	between(wp, "flush_interval", w.FlushInterval, MinFlushInterval, MaxDelay)
	count(wp, "queue", w.Queue, 1, MaxQueue)
	between(wp, "timeout", w.Timeout, MinFlushInterval, MaxDelay)
	count(wp, "retries", w.Retries, 0, MaxRetries)
	if between(wp, "retry_delay", w.RetryDelay, MinFlushInterval, MaxDelay) {
		between(wp, "max_retry_delay", w.MaxRetryDelay, w.RetryDelay.D(), MaxDelay)
	}
}

func between(p *conf.Problems, key string, d conf.Duration, lo, hi time.Duration) bool {
	return p.Check(d.D() >= lo && d.D() <= hi, key, "must be between %v and %v, got %v", lo, hi, d)
}

func count(p *conf.Problems, key string, n, lo, hi int) bool {
	return p.Check(n >= lo && n <= hi, key, "must be between %d and %d, got %d", lo, hi, n)
}

// checkURL returns what is wrong with a webhook URL, or "".
func checkURL(s string) string {
	if len(s) > MaxURLLen {
		return "longer than 2048 bytes"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "not a URL: " + err.Error()
	case u.Scheme != "http" && u.Scheme != "https":
		return "want an http:// or https:// URL, got scheme " + `"` + u.Scheme + `"`
	case u.Host == "":
		return "no host"
	case u.User != nil:
		return "must not carry a user or password (the body is signed with secret_file)"
	case u.Fragment != "":
		return "must not have a #fragment"
	}
	return ""
}
