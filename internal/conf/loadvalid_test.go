package conf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type validated struct {
	Name  string `toml:"name"`
	Limit int    `toml:"limit"`
}

func (v validated) Validate() error {
	var p Problems
	p.Check(v.Limit > 0, "limit", "must be > 0, got %d", v.Limit)
	return p.Err()
}

func TestLoadValid(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(good, []byte("name = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("limit = 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadValid(good, validated{Limit: 3})
	if err != nil || c.Name != "x" || c.Limit != 3 {
		t.Fatalf("LoadValid(good) = %+v, %v; want the file over the defaults", c, err)
	}
	c, err = LoadValid(bad, validated{Limit: 3})
	if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), bad+": limit: must be > 0") || c != (validated{}) {
		t.Fatalf("LoadValid(bad) = %+v, %v; want the zero config and an error naming the file and key", c, err)
	}
	if _, err := LoadValid(filepath.Join(dir, "missing.toml"), validated{Limit: 1}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadValid(missing) = %v, want ErrNotExist", err)
	}
}
