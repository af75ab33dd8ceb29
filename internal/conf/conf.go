// Package conf holds the helpers every service's configuration is built on.
//
// Each service declares
//
//	type Config struct{ ... }      // every field comment gives unit and default
//	func Default() Config          // the defaults, as code
//	func Load(path string) (Config, error)
//	func (c Config) Validate() error
//
// Load starts from Default() and calls [Load] with a pointer to it, so keys
// absent from the file keep their default. Unknown keys are an error
// ([ErrUnknownKey]). Then the environment overrides keys ([ApplyEnv]: the
// variable GOIM_HTTP_BIND sets http.bind), so the precedence is variable,
// then file, then default. Durations are [Duration] fields written as Go
// duration strings ("5s", "250ms"). Validate collects every problem in a
// [Problems] and returns [Problems.Err].
//
// A TOML array replaces the default slice, but the underlying decoder reuses
// the default's elements when the default slice is long enough, so an element
// of an array of tables can inherit fields of the default element with the
// same index. Keep defaults of arrays of tables empty and fill per-element
// defaults in code.
package conf

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Load reads the TOML file at path and decodes it strictly into v, which must
// be a non-nil pointer to a struct, normally already filled with defaults,
// then overrides keys from the process environment. It is [Decode] with the
// file's contents, and the file's path as name, then [ApplyEnv] with
// os.LookupEnv. A missing file yields an error wrapping fs.ErrNotExist; a
// variable that does not parse, one wrapping [ErrEnv].
func Load(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err // *fs.PathError: names the file and wraps fs.ErrNotExist etc.
	}
	if err := Decode(path, string(data), v); err != nil {
		return err
	}
	return ApplyEnv(v, os.LookupEnv)
}

// Decode decodes the TOML document data strictly into v, which must be a
// non-nil pointer to a struct. Fields whose keys are absent from data are left
// as they are. Every error message starts with name. Syntax and type errors
// keep the line number and key reported by the TOML decoder. Keys with no
// matching field make Decode fail with an error wrapping [ErrUnknownKey] that
// names each of them; v has then been partly decoded and should be discarded.
func Decode(name, data string, v any) error {
	if rv := reflect.ValueOf(v); rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("%s: conf.Decode needs a non-nil pointer to a struct, got %T", name, v)
	}
	md, err := toml.Decode(data, v)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if keys := unknownKeys(md.Undecoded()); len(keys) > 0 {
		return fmt.Errorf("%s: %w: %s", name, ErrUnknownKey, strings.Join(keys, ", "))
	}
	return nil
}

// unknownKeys renders the undecoded keys as dotted paths, in file order,
// without duplicates (an array of tables repeats its keys) and without the
// keys inside an unknown table: reporting the table is enough.
func unknownKeys(undecoded []toml.Key) []string {
	var out []string
	seen := make(map[string]bool, len(undecoded))
	for _, k := range undecoded {
		seen[k.String()] = true
	}
	for _, k := range undecoded {
		s := k.String()
		if slices.Contains(out, s) || hasUnknownParent(k, seen) {
			continue
		}
		out = append(out, s)
	}
	return out
}

func hasUnknownParent(k toml.Key, seen map[string]bool) bool {
	for i := 1; i < len(k); i++ {
		if seen[k[:i].String()] {
			return true
		}
	}
	return false
}

// Validator is a config that can check itself.
type Validator interface{ Validate() error }

// LoadValid reads path over c (the defaults), applies GOIM_* environment
// overrides (see Load) and validates the result; errors name path.
func LoadValid[T Validator](path string, c T) (T, error) {
	var zero T
	if err := Load(path, &c); err != nil {
		return zero, err
	}
	if err := c.Validate(); err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
