package conf_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/job"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/rpcauth"
)

// This file keeps docs/deploy.md and the files under deploy/ true where
// scripts/deploy-check.sh cannot: it runs the guide's shell blocks, so a
// wrong variable there shows as a service on a wrong address, but a
// GOIM_ variable in running text or in the container examples is never
// run. Every GOIM_ variable they name must override a key of logic, comet
// or job (conf.EnvKeys) or be one the services read themselves; every
// unit file must start a command of cmd/ on a config of configs/.

// deployFiles are the files whose GOIM_ variables are checked.
var deployFiles = []string{"../../docs/deploy.md", "../../deploy/docker/compose.yaml"}

func TestDeployVariables(t *testing.T) {
	known := map[string]bool{rpcauth.EnvSecret: true}
	for _, c := range []any{logic.Default(), comet.Default(), job.Default()} {
		for _, k := range conf.EnvKeys(c) {
			known[k.Var] = true
			if k.Own != "" {
				known[k.Own] = true
			}
		}
	}
	re := regexp.MustCompile(`GOIM_[A-Z0-9_]*[A-Z0-9]`)
	for _, path := range deployFiles {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, v := range re.FindAllString(string(b), -1) {
			if !known[v] && !slices.Contains(names, v) {
				names = append(names, v)
			}
		}
		if len(names) > 0 {
			t.Errorf("%s names variables no key has: %v", path, names)
		}
	}
}

// TestDeployUnits: each unit under deploy/systemd starts a command of cmd/
// from /usr/local/bin and, but discovery, on the shipped config of its
// kind, with the instance's env file.
func TestDeployUnits(t *testing.T) {
	for _, svc := range []string{"logic", "comet", "job", "discovery"} {
		path := "../../deploy/systemd/goim-" + svc + "@.service"
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		unit := string(b)
		if _, err := os.Stat("../../cmd/" + svc); err != nil {
			t.Errorf("%s: no cmd/%s", path, svc)
		}
		if !strings.Contains(unit, "\nExecStart=/usr/local/bin/"+svc+" ") {
			t.Errorf("%s: ExecStart does not run /usr/local/bin/%s", path, svc)
		}
		if !strings.Contains(unit, "\nEnvironmentFile=/etc/goim/%i.env\n") {
			t.Errorf("%s: no EnvironmentFile=/etc/goim/%%i.env", path)
		}
		if svc == "discovery" {
			continue
		}
		if !strings.Contains(unit, " -conf /etc/goim/"+svc+".toml\n") {
			t.Errorf("%s: ExecStart does not read /etc/goim/%s.toml", path, svc)
		}
		if _, err := os.Stat("../../configs/" + svc + ".toml"); err != nil {
			t.Errorf("%s: no configs/%s.toml", path, svc)
		}
	}
}
