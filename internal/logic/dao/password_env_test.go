package dao

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/secret"
)

// TestPasswordEnvPrecedence: after conf's generic overrides
// (GOIM_REDIS_PASSWORD_FILE sets password_file like any key),
// GOIM_REDIS_PASSWORD still wins over password_file, which still wins
// over password; in the all-in-one's [logic.redis] the generic variable
// GOIM_LOGIC_REDIS_PASSWORD sets password, the last choice.
func TestPasswordEnvPrecedence(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	type service struct {
		Redis RedisConfig `toml:"redis"`
	}
	type allinone struct {
		Logic service `toml:"logic"`
	}
	resolve := func(t *testing.T, env map[string]string) (string, secret.Source) {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		s := service{Redis: DefaultRedisConfig()}
		if err := conf.Decode("logic.toml", "[redis]\npassword = \"inline\"\n", &s); err != nil {
			t.Fatal(err)
		}
		if err := conf.ApplyEnv(&s, os.LookupEnv); err != nil {
			t.Fatal(err)
		}
		pw, src, err := s.Redis.password()
		if err != nil {
			t.Fatal(err)
		}
		return pw, src
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantSrc secret.Source
	}{
		{name: "file value", want: "inline", wantSrc: secret.SourceInline},
		{name: "password_file from the environment", env: map[string]string{"GOIM_REDIS_PASSWORD_FILE": pwFile}, want: "from-file", wantSrc: secret.SourceFile},
		{name: "GOIM_REDIS_PASSWORD wins", env: map[string]string{"GOIM_REDIS_PASSWORD_FILE": pwFile, EnvRedisPassword: "from-env"}, want: "from-env", wantSrc: secret.SourceEnv},
		{name: "blank GOIM_REDIS_PASSWORD is unset", env: map[string]string{EnvRedisPassword: "  "}, want: "inline", wantSrc: secret.SourceInline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if pw, src := resolve(t, tt.env); pw != tt.want || src != tt.wantSrc {
				t.Errorf("password %q from %s, want %q from %s", pw, src, tt.want, tt.wantSrc)
			}
		})
	}

	t.Run("all-in-one section", func(t *testing.T) {
		t.Setenv("GOIM_LOGIC_REDIS_PASSWORD", "from-section-variable")
		a := allinone{Logic: service{Redis: DefaultRedisConfig()}}
		if err := conf.ApplyEnv(&a, os.LookupEnv); err != nil {
			t.Fatal(err)
		}
		if pw, src, err := a.Logic.Redis.password(); err != nil || pw != "from-section-variable" || src != secret.SourceInline {
			t.Errorf("password %q from %s (%v), want the section variable's as the inline password", pw, src, err)
		}
	})
}
