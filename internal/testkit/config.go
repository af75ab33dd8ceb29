package testkit

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/goim/goim/internal/conf"
)

// ConfigFile checks a service's file under configs/: loaded (got) it
// equals want (the defaults, with whatever the file is meant to change),
// empty lists and tables counting as absent, and the file names every
// option want has except the keys in unlisted (machine-specific defaults
// documented commented out).
func ConfigFile(t *testing.T, path string, got, want any, unlisted ...string) {
	t.Helper()
	g, w := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	nilEmpty(g)
	nilEmpty(w)
	if !reflect.DeepEqual(g.Interface(), w.Interface()) {
		t.Fatalf("%s differs from the defaults:\n got %+v\nwant %+v", path, g.Interface(), w.Interface())
	}
	var file map[string]any
	md, err := toml.DecodeFile(path, &file)
	if err != nil {
		t.Fatal(err)
	}
	var inFile []string
	for _, k := range md.Keys() {
		inFile = append(inFile, k.String())
	}
	enc, err := toml.Marshal(w.Interface())
	if err != nil {
		t.Fatal(err)
	}
	var all map[string]any
	if md, err = toml.Decode(string(enc), &all); err != nil {
		t.Fatal(err)
	}
	for _, k := range md.Keys() {
		if !slices.Contains(unlisted, k.String()) && !slices.Contains(inFile, k.String()) {
			t.Errorf("%s does not list %s", path, k)
		}
	}
}

// nilEmpty sets every empty slice or map in v to nil: "[]" or "{}" in a
// file means the same as an absent key.
func nilEmpty(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				nilEmpty(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
		}
	}
}

// WantProblems checks a Validate error: nil when paths is empty, else a
// conf.ErrInvalid with exactly one problem per path, in order, each
// mentioning its key path.
func WantProblems(t *testing.T, err error, paths []string) {
	t.Helper()
	if len(paths) == 0 {
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if !errors.Is(err, conf.ErrInvalid) {
		t.Fatalf("error %v does not wrap conf.ErrInvalid", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(paths) {
		t.Fatalf("%d problems, want %d:\n%v", len(lines), len(paths), err)
	}
	for i, p := range paths {
		if !strings.Contains(lines[i], p) {
			t.Errorf("problem %d is %q, want it about %s", i, lines[i], p)
		}
	}
}
