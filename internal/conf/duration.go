package conf

import (
	"fmt"
	"time"
)

// Duration is a time.Duration that a TOML file must spell as a Go duration
// string ("5s", "250ms", "1h30m"). A bare TOML integer is rejected: decoded
// into a time.Duration it would silently mean nanoseconds.
//
// It is a named time.Duration rather than a struct so that defaults read as
// conf.Duration(5 * time.Second), values compare with < and ==, and
// time.Duration(d) or d.D() converts it back.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does, e.g. "5s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText encodes d as its String form, so the TOML and JSON encoders
// write it as a duration string such as "5s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration string such as "5s" with
// time.ParseDuration.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf(`%w; write a Go duration such as "5s" or "250ms"`, err)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalTOML implements toml.Unmarshaler. The TOML decoder calls it before
// trying UnmarshalText, with the raw TOML value, so it can reject every value
// that is not a string. (Through UnmarshalText alone, the integer 0 would be
// formatted as "0" and accepted.) The decoder adds the key and line to the
// error.
func (d *Duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		return d.UnmarshalText([]byte(v))
	case int64:
		return fmt.Errorf(`duration must be a string with a unit such as "5s" or "250ms", not the integer %d (a bare integer would mean nanoseconds)`, v)
	default:
		return fmt.Errorf(`duration must be a string such as "5s", not %s`, tomlType(v))
	}
}

// tomlType names the TOML type of a value as handed over by the decoder.
func tomlType(v any) string {
	switch v.(type) {
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case time.Time:
		return "a datetime"
	default:
		return fmt.Sprintf("a %T", v)
	}
}
