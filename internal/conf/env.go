package conf

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// EnvPrefix starts the name of every variable that overrides a key.
const EnvPrefix = "GOIM_"

// EnvName is the environment variable that overrides the key at path, a
// dotted key path such as "http.bind": EnvPrefix followed by the path
// upper-cased, every byte that is not an ASCII letter or digit turned
// into "_". "http.bind" is GOIM_HTTP_BIND, the all-in-one's
// "logic.http.bind" GOIM_LOGIC_HTTP_BIND.
func EnvName(path string) string {
	b := []byte(strings.ToUpper(path))
	for i, c := range b {
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			b[i] = '_'
		}
	}
	return EnvPrefix + string(b)
}

// EnvKey is one key a variable can override.
type EnvKey struct {
	// Path is the key's dotted path, "http.bind".
	Path string
	// Var is its variable, EnvName(Path).
	Var string
	// Own is the field's env tag: the variable the service reads itself
	// for this key, with a meaning of its own. When it is Var, ApplyEnv
	// leaves the key alone (see [ApplyEnv]). "" for most keys.
	Own string
	// Hidden is true for a key whose value is a secret (its name contains
	// token, secret or password): errors never show its value.
	Hidden bool
	// Type is the key's Go type.
	Type reflect.Type
}

// EnvKeys lists the keys of the configuration v (a struct or a pointer to
// one) that variables can override, in field order.
func EnvKeys(v any) []EnvKey {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	var out []EnvKey
	_ = walkEnv(rv.Type(), "", func(k EnvKey, _ []int) error {
		out = append(out, k)
		return nil
	})
	return out
}

// ApplyEnv overrides keys of the configuration v points to with the
// environment: for every key, when lookup(EnvName(path)) is set and not
// blank, its value replaces the key's, parsed as the key's type:
//
//   - a string as it is;
//   - a bool as strconv.ParseBool does ("true", "false", "1", "0");
//   - an integer or a float in decimal;
//   - a duration (a Duration or any encoding.TextUnmarshaler) as the file
//     writes it: "5s", "4m";
//   - a list as comma-separated elements, each trimmed, empty ones
//     dropped (so "," is the empty list);
//   - a table of values (map) as comma-separated name=value pairs.
//
// Keys inside an array of tables have no variable. A variable set to the
// empty string, or blanks, counts as unset, as the secret variables
// always have. A field tagged env:"NAME" is read by the service itself
// under NAME, with a meaning of its own (GOIM_HTTP_TOKENS adds to the
// tokens of the file): ApplyEnv leaves it alone when its variable is NAME
// (in the all-in-one, nested under a section, its variable is another one
// and applies).
//
// A value that does not parse is an error naming the variable and the key;
// the value is shown unless the key holds a secret (its name contains
// token, secret or password). All such errors are joined; each wraps
// ErrEnv. v may be partly overridden then, and should be discarded.
// lookup is os.LookupEnv in the services; tests pass their own.
func ApplyEnv(v any, lookup func(string) (string, bool)) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("conf.ApplyEnv needs a non-nil pointer to a struct, got %T", v)
	}
	root := rv.Elem()
	var errs []error
	_ = walkEnv(root.Type(), "", func(k EnvKey, index []int) error {
		if k.Own == k.Var {
			return nil
		}
		val, ok := lookup(k.Var)
		if !ok || strings.TrimSpace(val) == "" {
			return nil
		}
		dst := fieldByIndexAlloc(root, index)
		if err := setValue(dst, val); err != nil {
			errs = append(errs, &envError{key: k, val: val, typ: dst.Type(), err: err})
		}
		return nil
	})
	return errors.Join(errs...)
}

// ErrEnv is wrapped by every error [ApplyEnv] returns for a variable
// whose value does not parse as its key's type.
var ErrEnv = errors.New("bad environment variable")

type envError struct {
	key EnvKey
	val string
	typ reflect.Type // the key's type
	err error
}

func (e *envError) Error() string {
	if e.key.Hidden {
		return fmt.Sprintf("environment variable %s (key %s): not a valid %s (value hidden: the key holds a secret)", e.key.Var, e.key.Path, e.typ)
	}
	return fmt.Sprintf("environment variable %s (key %s): %q: %v", e.key.Var, e.key.Path, e.val, e.err)
}

// Unwrap gives ErrEnv only for a hidden key: its parse error may quote
// the value.
func (e *envError) Unwrap() []error {
	if e.key.Hidden {
		return []error{ErrEnv}
	}
	return []error{ErrEnv, e.err}
}

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	envTagName          = "env"
)

// walkEnv calls visit for every key of struct type t, whose path is path
// ("" at the root), with the field index path leading to it. It follows the
// TOML decoder: toml tags name keys, "-" and unexported fields are skipped,
// untagged embedded structs are flattened, structs (and pointers to
// structs) are tables, slices of structs are arrays of tables (skipped),
// and everything else is one value.
func walkEnv(t reflect.Type, path string, visit func(EnvKey, []int) error, index ...int) error {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		ft := f.Type
		if ft.Kind() == reflect.Pointer && isTable(ft.Elem()) {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && isTable(ft) {
			if err := walkEnv(ft, path, visit, idx...); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		sub := name
		if path != "" {
			sub = path + "." + name
		}
		switch {
		case isTable(ft):
			if err := walkEnv(ft, sub, visit, idx...); err != nil {
				return err
			}
		case ft.Kind() == reflect.Slice && isTable(elemType(ft)):
			// An array of tables: no variable.
		default:
			k := EnvKey{Path: sub, Var: EnvName(sub), Own: f.Tag.Get(envTagName), Hidden: secretName(name), Type: f.Type}
			if err := visit(k, idx); err != nil {
				return err
			}
		}
	}
	return nil
}

// isTable reports whether the decoder fills t from a TOML table: a struct
// that does not decode itself from one value.
func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(textUnmarshalerType) && !t.Implements(textUnmarshalerType)
}

func elemType(t reflect.Type) reflect.Type {
	e := t.Elem()
	for e.Kind() == reflect.Pointer {
		e = e.Elem()
	}
	return e
}

// secretName reports whether a key named name holds a secret.
func secretName(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "token") || strings.Contains(n, "secret") || strings.Contains(n, "password")
}

// fieldByIndexAlloc is v.FieldByIndex, allocating nil pointers to structs
// on the way.
func fieldByIndexAlloc(v reflect.Value, index []int) reflect.Value {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v
}

// setValue parses s as v's type and stores it in v.
func setValue(v reflect.Value, s string) error {
	if v.Kind() == reflect.Pointer && !v.Type().Implements(textUnmarshalerType) {
		p := reflect.New(v.Type().Elem())
		if err := setValue(p.Elem(), s); err != nil {
			return err
		}
		v.Set(p)
		return nil
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshalerType) {
		return v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(strings.TrimSpace(s)))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
		return nil
	case reflect.Slice:
		parts := SplitList(s)
		out := reflect.MakeSlice(v.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setValue(out.Index(i), p); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		v.Set(out)
		return nil
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("no variable form for a table keyed by %s", v.Type().Key())
		}
		out := reflect.MakeMap(v.Type())
		for _, p := range SplitList(s) {
			name, val, ok := strings.Cut(p, "=")
			name = strings.TrimSpace(name)
			if !ok || name == "" {
				return fmt.Errorf("%q is not name=value", p)
			}
			e := reflect.New(v.Type().Elem()).Elem()
			if err := setValue(e, strings.TrimSpace(val)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			out.SetMapIndex(reflect.ValueOf(name).Convert(v.Type().Key()), e)
		}
		v.Set(out)
		return nil
	}
	return setScalar(v, strings.TrimSpace(s))
}

// setScalar parses s as a bool or a number of v's kind.
func setScalar(v reflect.Value, s string) error {
	switch v.Kind() {
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("not a bool (true or false)")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("not a decimal integer of %d bits", v.Type().Bits())
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("not a decimal unsigned integer of %d bits", v.Type().Bits())
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return errors.New("not a number")
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("no variable form for %s", v.Type())
	}
	return nil
}

// SplitList splits a comma-separated list (a list variable, a list flag
// such as cmd/goim's -kafka) at commas, trimming each element and
// dropping empty ones.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
