package conf_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
)

type envConfig struct {
	Host    string            `toml:"host"`
	On      bool              `toml:"on"`
	Count   int               `toml:"count"`
	Small   int8              `toml:"small"`
	Port    uint16            `toml:"port"`
	Ratio   float64           `toml:"ratio"`
	Timeout conf.Duration     `toml:"timeout"`
	Brokers []string          `toml:"brokers"`
	Ports   []int             `toml:"ports"`
	Comets  map[string]string `toml:"comets"`
	Skipped string            `toml:"-"`
	hidden  string
	HTTP    envHTTP      `toml:"http"`
	Opt     *envOptional `toml:"opt"`
	Peers   []envPeer    `toml:"peers"`
	Level   *int         `toml:"level"`
	envEmbedded
}

type envHTTP struct {
	Bind         string   `toml:"bind"`
	Tokens       []string `toml:"tokens" env:"GOIM_HTTP_TOKENS"`
	SecretFile   string   `toml:"secret_file"`
	Password     int      `toml:"password"`
	ReadTimeout  conf.Duration
	AccessTokens []string `toml:"access_tokens" env:"GOIM_SOMETHING_ELSE"`
}

type envOptional struct {
	Depth int `toml:"depth"`
}

type envPeer struct {
	Name string `toml:"name"`
}

type envEmbedded struct {
	Flat string `toml:"flat"`
}

func envDefault() envConfig {
	return envConfig{
		Host: "h", Count: 1, Ratio: 1.5, Timeout: conf.Duration(time.Second),
		Brokers: []string{"127.0.0.1:9092"}, HTTP: envHTTP{Bind: ":3111", Tokens: []string{"file-token"}},
		hidden: "unexported: no variable",
	}
}

func lookupIn(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestEnvName(t *testing.T) {
	for path, want := range map[string]string{
		"http.bind":              "GOIM_HTTP_BIND",
		"discovery.env":          "GOIM_DISCOVERY_ENV",
		"logic.http.bind":        "GOIM_LOGIC_HTTP_BIND",
		"redis.tls-ca.file":      "GOIM_REDIS_TLS_CA_FILE",
		"host":                   "GOIM_HOST",
		`x."quoted key".ReadTTL`: "GOIM_X__QUOTED_KEY__READTTL",
	} {
		if got := conf.EnvName(path); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestEnvKeys(t *testing.T) {
	var got []string
	for _, k := range conf.EnvKeys(envDefault()) {
		s := k.Path + "=" + k.Var
		if k.Own != "" {
			s += " own:" + k.Own
		}
		if k.Hidden {
			s += " hidden"
		}
		got = append(got, s)
	}
	want := []string{
		"host=GOIM_HOST", "on=GOIM_ON", "count=GOIM_COUNT", "small=GOIM_SMALL", "port=GOIM_PORT", "ratio=GOIM_RATIO",
		"timeout=GOIM_TIMEOUT", "brokers=GOIM_BROKERS", "ports=GOIM_PORTS", "comets=GOIM_COMETS",
		"http.bind=GOIM_HTTP_BIND", "http.tokens=GOIM_HTTP_TOKENS own:GOIM_HTTP_TOKENS hidden",
		"http.secret_file=GOIM_HTTP_SECRET_FILE hidden", "http.password=GOIM_HTTP_PASSWORD hidden",
		"http.ReadTimeout=GOIM_HTTP_READTIMEOUT",
		"http.access_tokens=GOIM_HTTP_ACCESS_TOKENS own:GOIM_SOMETHING_ELSE hidden",
		"opt.depth=GOIM_OPT_DEPTH", "level=GOIM_LEVEL", "flat=GOIM_FLAT",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EnvKeys:\n got %q\nwant %q", got, want)
	}
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{
		"GOIM_HOST":               " spaced host ",
		"GOIM_ON":                 "true",
		"GOIM_COUNT":              " -42 ",
		"GOIM_SMALL":              "127",
		"GOIM_PORT":               "65535",
		"GOIM_RATIO":              "0.25",
		"GOIM_TIMEOUT":            "4m",
		"GOIM_BROKERS":            "k1:9092, k2:9092,,",
		"GOIM_PORTS":              "1,2",
		"GOIM_COMETS":             "comet-1=10.0.0.1:3109, comet-2 = 10.0.0.2:3109",
		"GOIM_HTTP_BIND":          ":4111",
		"GOIM_HTTP_TOKENS":        "env-token",       // read by the service itself
		"GOIM_HTTP_ACCESS_TOKENS": "a-token,b-token", // its tag names another variable
		"GOIM_HTTP_READTIMEOUT":   "250ms",
		"GOIM_OPT_DEPTH":          "3",
		"GOIM_LEVEL":              "7",
		"GOIM_FLAT":               "flat",
		"GOIM_SKIPPED":            "not a key",
		"GOIM_PEERS_NAME":         "not a key either",
	}
	got := envDefault()
	if err := conf.ApplyEnv(&got, lookupIn(env)); err != nil {
		t.Fatal(err)
	}
	seven := 7
	want := envDefault()
	want.Host, want.On, want.Count, want.Small, want.Port, want.Ratio = " spaced host ", true, -42, 127, 65535, 0.25
	want.Timeout = conf.Duration(4 * time.Minute)
	want.Brokers, want.Ports = []string{"k1:9092", "k2:9092"}, []int{1, 2}
	want.Comets = map[string]string{"comet-1": "10.0.0.1:3109", "comet-2": "10.0.0.2:3109"}
	want.HTTP.Bind, want.HTTP.ReadTimeout = ":4111", conf.Duration(250*time.Millisecond)
	want.HTTP.AccessTokens = []string{"a-token", "b-token"}
	want.Opt, want.Level, want.Flat = &envOptional{Depth: 3}, &seven, "flat"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ApplyEnv:\n got %+v\nwant %+v", got, want)
	}
}

func TestApplyEnvBlankAndLists(t *testing.T) {
	got := envDefault()
	err := conf.ApplyEnv(&got, lookupIn(map[string]string{
		"GOIM_HOST":    "",    // unset
		"GOIM_COUNT":   "  ",  // unset
		"GOIM_BROKERS": " , ", // the empty list
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := envDefault()
	want.Brokers = []string{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ApplyEnv:\n got %+v\nwant %+v", got, want)
	}
}

func TestApplyEnvErrors(t *testing.T) {
	const secret = "s3cret-value-never-shown"
	env := map[string]string{
		"GOIM_ON":            "maybe",
		"GOIM_COUNT":         "12x",
		"GOIM_SMALL":         "300",
		"GOIM_PORT":          "-1",
		"GOIM_RATIO":         "fast",
		"GOIM_TIMEOUT":       "5",
		"GOIM_PORTS":         "1,two",
		"GOIM_COMETS":        "comet-1",
		"GOIM_HTTP_PASSWORD": secret,
		"GOIM_HTTP_BIND":     ":4111", // fine: applied, the others reported
	}
	got := envDefault()
	err := conf.ApplyEnv(&got, lookupIn(env))
	if err == nil {
		t.Fatal("ApplyEnv accepted values that do not parse")
	}
	if !errors.Is(err, conf.ErrEnv) {
		t.Errorf("errors.Is(err, ErrEnv) = false: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`environment variable GOIM_ON (key on): "maybe": not a bool`,
		`environment variable GOIM_COUNT (key count): "12x": not a decimal integer of 64 bits`,
		`GOIM_SMALL (key small): "300": not a decimal integer of 8 bits`,
		`GOIM_PORT (key port): "-1": not a decimal unsigned integer of 16 bits`,
		`GOIM_RATIO (key ratio): "fast": not a number`,
		`GOIM_TIMEOUT (key timeout): "5": time: missing unit in duration "5"; write a Go duration such as "5s"`,
		`GOIM_PORTS (key ports): "1,two": element 1: not a decimal integer`,
		`GOIM_COMETS (key comets): "comet-1": "comet-1" is not name=value`,
		`environment variable GOIM_HTTP_PASSWORD (key http.password): not a valid int (value hidden: the key holds a secret)`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, secret) {
		t.Errorf("error shows the secret value:\n%s", msg)
	}
	if n := strings.Count(msg, "\n") + 1; n != 9 {
		t.Errorf("%d problems, want 9 (one per bad variable):\n%s", n, msg)
	}
	if got.HTTP.Bind != ":4111" {
		t.Errorf("http.bind = %q: a good variable beside bad ones was not applied", got.HTTP.Bind)
	}
}

func TestApplyEnvBadTarget(t *testing.T) {
	for _, v := range []any{envDefault(), nil, (*envConfig)(nil), new(int)} {
		if err := conf.ApplyEnv(v, lookupIn(nil)); err == nil || !strings.Contains(err.Error(), "pointer to a struct") {
			t.Errorf("ApplyEnv(%T) = %v, want a pointer-to-struct error", v, err)
		}
	}
}

// TestLoadAppliesEnv: conf.Load reads the process environment after the
// file: variable over file over default.
func TestLoadAppliesEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(path, []byte("host = \"from-file\"\ncount = 5\n[http]\nbind = \":5111\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOIM_HOST", "from-env")
	t.Setenv("GOIM_RATIO", "2.5")
	got := envDefault()
	if err := conf.Load(path, &got); err != nil {
		t.Fatal(err)
	}
	if got.Host != "from-env" || got.Count != 5 || got.Ratio != 2.5 || got.HTTP.Bind != ":5111" {
		t.Errorf("Load: host %q count %d ratio %v bind %q, want from-env 5 2.5 :5111", got.Host, got.Count, got.Ratio, got.HTTP.Bind)
	}
	t.Setenv("GOIM_COUNT", "many")
	if err := conf.Load(path, &got); !errors.Is(err, conf.ErrEnv) || !strings.Contains(err.Error(), "GOIM_COUNT") {
		t.Errorf("Load with a bad variable: %v, want an ErrEnv naming GOIM_COUNT", err)
	}
}

// FuzzApplyEnv sets every variable of envConfig to one value: ApplyEnv
// never panics, a failure names a variable, and a secret key's value never
// appears in an error.
func FuzzApplyEnv(f *testing.F) {
	for _, s := range []string{"", " ", "1", "-1", "true", "5s", "a,b", "k=v,k2=v2", ",", "=", "1e400", "0x10", "\x00", "99999999999999999999"} {
		f.Add(s)
	}
	keys := conf.EnvKeys(envDefault())
	f.Fuzz(func(t *testing.T, val string) {
		c := envDefault()
		err := conf.ApplyEnv(&c, func(string) (string, bool) { return val, true })
		if err == nil {
			return
		}
		msg := err.Error()
		if !strings.Contains(msg, "environment variable GOIM_") || !errors.Is(err, conf.ErrEnv) {
			t.Fatalf("error %q names no variable or is not ErrEnv", msg)
		}
		hidden := map[string]conf.EnvKey{}
		for _, k := range keys {
			if k.Hidden {
				hidden[k.Var] = k
			}
		}
		for _, line := range strings.Split(msg, "\n") {
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "environment variable "), " ")
			k, ok := hidden[name]
			if !ok {
				continue
			}
			prefix := "environment variable " + k.Var + " (key " + k.Path + "): not a valid "
			rest, ok := strings.CutPrefix(line, prefix)
			typ, ok2 := strings.CutSuffix(rest, " (value hidden: the key holds a secret)")
			if !ok || !ok2 || strings.ContainsAny(typ, "\" ") {
				t.Fatalf("hidden key %s: line %q is not the value-free form", k.Var, line)
			}
		}
	})
}
