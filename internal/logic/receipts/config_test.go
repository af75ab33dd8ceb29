package receipts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/testkit"
)

// validate runs c's Validate at the top level of a [receipts] section.
func validate(c Config) error {
	var p conf.Problems
	c.Validate(p.Sub("receipts"))
	return p.Err()
}

// secretFile writes a webhook secret and returns its path.
func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigValidate(t *testing.T) {
	key := secretFile(t, "webhook-secret\n")
	empty := secretFile(t, "\n")
	d := func(v time.Duration) conf.Duration { return conf.Duration(v) }
	cases := []struct {
		name  string
		edit  func(*Config)
		paths []string
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "disabled", edit: func(c *Config) { c.Enabled = false }},
		{name: "lowest bounds", edit: func(c *Config) {
			c.TTL = d(MinTTL)
			c.SweepInterval = d(MinSweepInterval)
			c.SweepBatch = 1
			c.MaxTargets = 1
			c.Webhook = WebhookConfig{URL: "http://127.0.0.1:1/hook", SecretFile: key, BatchSize: 1,
				FlushInterval: d(time.Millisecond), Queue: 1, Timeout: d(time.Millisecond), Retries: 0,
				RetryDelay: d(time.Millisecond), MaxRetryDelay: d(time.Millisecond)}
		}},
		{name: "highest bounds", edit: func(c *Config) {
			c.TTL = d(MaxTTL)
			c.SweepInterval = d(MaxSweepInterval)
			c.SweepBatch = MaxSweepBatch
			c.MaxTargets = MaxTargets
			c.Webhook = WebhookConfig{URL: "https://hooks.example.com/" + strings.Repeat("a", MaxURLLen-len("https://hooks.example.com/")),
				SecretFile: key, BatchSize: MaxBatchSize, FlushInterval: d(MaxDelay), Queue: MaxQueue,
				Timeout: d(MaxDelay), Retries: MaxRetries, RetryDelay: d(MaxDelay), MaxRetryDelay: d(MaxDelay)}
		}},
		{name: "below bounds", edit: func(c *Config) {
			c.TTL = d(MinTTL - time.Millisecond)
			c.SweepInterval = d(MinSweepInterval - 1)
			c.SweepBatch = 0
			c.MaxTargets = 0
			c.Webhook = WebhookConfig{BatchSize: 0, FlushInterval: 0, Queue: 0, Timeout: 0, Retries: -1,
				RetryDelay: 0, MaxRetryDelay: 0}
		}, paths: []string{"receipts.ttl", "receipts.sweep_interval", "receipts.sweep_batch", "receipts.max_targets",
			"receipts.webhook.batch_size", "receipts.webhook.flush_interval", "receipts.webhook.queue",
			"receipts.webhook.timeout", "receipts.webhook.retries", "receipts.webhook.retry_delay"}},
		{name: "above bounds", edit: func(c *Config) {
			c.TTL = d(MaxTTL + time.Millisecond)
			c.SweepInterval = d(MaxSweepInterval + 1)
			c.SweepBatch = MaxSweepBatch + 1
			c.MaxTargets = MaxTargets + 1
			c.Webhook = WebhookConfig{BatchSize: MaxBatchSize + 1, FlushInterval: d(MaxDelay + 1), Queue: MaxQueue + 1,
				Timeout: d(MaxDelay + 1), Retries: MaxRetries + 1, RetryDelay: d(time.Second), MaxRetryDelay: d(MaxDelay + 1)}
		}, paths: []string{"receipts.ttl", "receipts.sweep_interval", "receipts.sweep_batch", "receipts.max_targets",
			"receipts.webhook.batch_size", "receipts.webhook.flush_interval", "receipts.webhook.queue",
			"receipts.webhook.timeout", "receipts.webhook.retries", "receipts.webhook.max_retry_delay"}},
		{name: "max delay below the first", edit: func(c *Config) {
			c.Webhook.RetryDelay = d(time.Second)
			c.Webhook.MaxRetryDelay = d(time.Second - 1)
		}, paths: []string{"receipts.webhook.max_retry_delay"}},
		{name: "url without secret", edit: func(c *Config) { c.Webhook.URL = "https://hooks.example.com/goim" },
			paths: []string{"receipts.webhook.secret_file"}},
		{name: "missing secret file", edit: func(c *Config) {
			c.Webhook.URL = "https://hooks.example.com/goim"
			c.Webhook.SecretFile = filepath.Join(t.TempDir(), "missing")
		}, paths: []string{"receipts.webhook.secret_file"}},
		{name: "empty secret file", edit: func(c *Config) {
			c.Webhook.URL = "https://hooks.example.com/goim"
			c.Webhook.SecretFile = empty
		}, paths: []string{"receipts.webhook.secret_file"}},
		{name: "secret file without url", edit: func(c *Config) { c.Webhook.SecretFile = key }},
		{name: "missing secret file without url", edit: func(c *Config) { c.Webhook.SecretFile = filepath.Join(t.TempDir(), "missing") },
			paths: []string{"receipts.webhook.secret_file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			testkit.WantProblems(t, validate(c), tc.paths)
		})
	}
}

func TestConfigWebhookURL(t *testing.T) {
	key := secretFile(t, "webhook-secret")
	cases := []struct {
		name string
		url  string
		ok   bool
	}{
		{name: "http", url: "http://127.0.0.1:8080/hook", ok: true},
		{name: "https with query", url: "https://hooks.example.com/goim?source=logic", ok: true},
		{name: "longest", url: "https://h/" + strings.Repeat("a", MaxURLLen-len("https://h/")), ok: true},
		{name: "too long", url: "https://h/" + strings.Repeat("a", MaxURLLen-len("https://h/")+1)},
		{name: "ftp", url: "ftp://hooks.example.com/goim"},
		{name: "no scheme", url: "hooks.example.com/goim"},
		{name: "no host", url: "https:///goim"},
		{name: "user info", url: "https://user:pass@hooks.example.com/goim"},
		{name: "fragment", url: "https://hooks.example.com/goim#x"},
		{name: "malformed", url: "https://hooks.example.com/%zz"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Webhook.URL, c.Webhook.SecretFile = tc.url, key
			var paths []string
			if !tc.ok {
				paths = []string{"receipts.webhook.url"}
			}
			testkit.WantProblems(t, validate(c), paths)
		})
	}
}
