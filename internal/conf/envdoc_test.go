package conf_test

import (
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goim/goim/internal/allinone"
	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/job"
	"github.com/goim/goim/internal/kafkasec"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/logic/httpapi"
	"github.com/goim/goim/internal/rpcauth"
)

// envServices are the configurations whose variables the environment
// section documents: each service's, and the all-in-one's own keys.
func envServices() map[string]any {
	return map[string]any{
		"logic": logic.Default(), "comet": comet.Default(), "job": job.Default(), "goim": allinoneOwn(),
	}
}

// envWithoutKey are the variables the services read that set no key.
var envWithoutKey = []string{rpcauth.EnvSecret, kafkasec.EnvSASLPassword}

// addressKey reports whether the key named name (the last element of its
// path) is an address: a listener, a peer, a list of either.
func addressKey(name string) bool {
	switch name {
	case "bind", "tls_bind", "advertise", "addr", "addrs", "brokers", "nodes", "listen", "comets":
		return true
	}
	return strings.HasSuffix(name, "_addr") || strings.HasSuffix(name, "_addrs") || strings.HasSuffix(name, "_bind")
}

// TestEnvironmentDoc: the "Environment variables" section of
// docs/configuration.md names the variable of every address, secret (a key
// whose name holds token, secret or password, but a switch, and every file
// or directory key) and the discovery env of every service, and every
// variable it names exists.
func TestEnvironmentDoc(t *testing.T) {
	data, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	start := strings.Index(doc, "\n## Environment variables\n")
	if start < 0 {
		t.Fatal(`docs/configuration.md has no "## Environment variables" section`)
	}
	sec := doc[start+1:]
	if end := strings.Index(sec[3:], "\n## "); end >= 0 {
		sec = sec[:end+3]
	}
	for _, rule := range []string{"`GOIM_`", "upper-cased", "wins over the file", "comma-separated", "value is quoted", "unless the key holds a secret"} {
		if !strings.Contains(sec, rule) {
			t.Errorf("the section does not state the rule %q", rule)
		}
	}
	documented := map[string]bool{}
	for _, v := range regexp.MustCompile(`\bGOIM_[A-Z0-9_]+\b`).FindAllString(sec, -1) {
		documented[v] = true
	}

	required := map[string]string{} // variable -> why
	for _, v := range envWithoutKey {
		required[v] = "read by the services without a key"
	}
	for name, cfg := range envServices() {
		for _, k := range conf.EnvKeys(cfg) {
			last := k.Path[strings.LastIndexByte(k.Path, '.')+1:]
			switch {
			case addressKey(last):
				required[k.Var] = name + " address " + k.Path
			case k.Hidden && k.Type.Kind() != reflect.Bool || strings.HasSuffix(last, "_file") || strings.HasSuffix(last, "_dir"):
				required[k.Var] = name + " secret or file " + k.Path
			case k.Path == "discovery.env":
				required[k.Var] = name + " discovery env"
			}
		}
	}
	for _, v := range slices.Sorted(maps.Keys(required)) {
		if !documented[v] {
			t.Errorf("the section does not name %s (%s)", v, required[v])
		}
	}

	exists := map[string]bool{}
	for _, v := range envWithoutKey {
		exists[v] = true
	}
	for _, cfg := range []any{logic.Default(), comet.Default(), job.Default(), allinone.Default()} {
		for _, k := range conf.EnvKeys(cfg) {
			exists[k.Var] = true
		}
	}
	for _, v := range slices.Sorted(maps.Keys(documented)) {
		if !exists[v] {
			t.Errorf("the section names %s, which no service reads", v)
		}
	}
}

// TestEnvNames: within one configuration no two keys share a variable,
// and every env tag names the key's own variable at the service's root
// (the variable the service reads itself): the three the code defines.
func TestEnvNames(t *testing.T) {
	own := map[string]bool{}
	for name, cfg := range map[string]any{"logic": logic.Default(), "comet": comet.Default(), "job": job.Default(), "goim": allinone.Default()} {
		seen := map[string]string{}
		for _, k := range conf.EnvKeys(cfg) {
			if prev, dup := seen[k.Var]; dup {
				t.Errorf("%s: keys %s and %s share the variable %s", name, prev, k.Path, k.Var)
			}
			seen[k.Var] = k.Path
			if k.Own == "" || name == "goim" {
				continue
			}
			if k.Own != k.Var {
				t.Errorf("%s: key %s has the env tag %q, want its variable %s", name, k.Path, k.Own, k.Var)
			}
			own[k.Own] = true
		}
	}
	want := []string{httpapi.EnvTokens, httpapi.EnvReadTokens, dao.EnvRedisPassword}
	if got := slices.Sorted(maps.Keys(own)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("variables with a meaning of their own: %v, want %v", got, want)
	}
}
