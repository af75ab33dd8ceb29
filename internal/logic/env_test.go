package logic

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/httpapi"
	"github.com/goim/goim/internal/rpcauth"
)

// TestEnvOverrides: Load applies GOIM_ variables over the file (addresses,
// the discovery env, lists, durations), a bad value names its variable,
// and the push API tokens of GOIM_HTTP_TOKENS still add to the file's
// (each token counted once) instead of replacing them.
func TestEnvOverrides(t *testing.T) {
	const (
		fileToken = "file-token-0123456789abcdef"
		envToken  = "env-token-0123456789abcdef"
	)
	dir := t.TempDir()
	tokensFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokensFile, []byte("listed-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "logic.toml")
	if err := os.WriteFile(path, []byte(`
[http]
bind = ":3111"
tokens = ["`+fileToken+`"]
tokens_file = "`+tokensFile+`"
[auth]
insecure = true
[rpc]
insecure = true
[discovery]
env = "dev"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(rpcauth.EnvSecret, "")
	t.Setenv("GOIM_HTTP_BIND", "127.0.0.1:4111")
	t.Setenv("GOIM_DISCOVERY_ENV", "prod")
	t.Setenv("GOIM_DISCOVERY_NODES", "10.0.0.2:7171, 10.0.0.3:7171")
	t.Setenv("GOIM_KAFKA_BROKERS", "k1:9092,k2:9092")
	t.Setenv("GOIM_NODE_HEARTBEAT", "1m")
	t.Setenv(httpapi.EnvTokens, envToken+","+fileToken) // one new token, one the file has
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Bind != "127.0.0.1:4111" || cfg.Discovery.Env != "prod" ||
		!slices.Equal(cfg.Discovery.Nodes, []string{"10.0.0.2:7171", "10.0.0.3:7171"}) ||
		!slices.Equal(cfg.Kafka.Brokers, []string{"k1:9092", "k2:9092"}) || cfg.Node.Heartbeat != conf.Duration(time.Minute) {
		t.Errorf("overrides not applied: bind %q env %q nodes %q brokers %q heartbeat %v",
			cfg.HTTP.Bind, cfg.Discovery.Env, cfg.Discovery.Nodes, cfg.Kafka.Brokers, cfg.Node.Heartbeat)
	}
	if !slices.Equal(cfg.HTTP.Tokens, []string{fileToken}) {
		t.Errorf("http.tokens = %q: GOIM_HTTP_TOKENS must add to the file's tokens, not replace them", cfg.HTTP.Tokens)
	}
	creds, err := cfg.HTTP.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{envToken, fileToken, "listed-token-0123456789abcdef"}; !sameSet(creds.Full, want) || len(creds.Full) != len(want) {
		t.Errorf("full-scope tokens %q, want each of %q once", creds.Full, want)
	}

	t.Setenv("GOIM_NODE_HEARTBEAT_MAX", "two")
	t.Setenv("GOIM_REDIS_PASSWORD_FILE", "") // blank: unset
	_, err = Load(path)
	if !errors.Is(err, conf.ErrEnv) || !strings.Contains(err.Error(), `GOIM_NODE_HEARTBEAT_MAX (key node.heartbeat_max): "two"`) {
		t.Errorf("Load with a bad variable: %v, want an error naming GOIM_NODE_HEARTBEAT_MAX and its value", err)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
