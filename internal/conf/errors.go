package conf

import "errors"

// ErrUnknownKey is wrapped by the error [Load] and [Decode] return when the
// TOML input holds keys that the config struct has no field for (usually a
// typo). The error message lists every such key with its dotted path.
var ErrUnknownKey = errors.New("unknown keys")

// ErrInvalid is wrapped by every problem in the error [Problems.Err] returns,
// so callers can tell a config that decoded but failed validation from an
// I/O or syntax error with errors.Is(err, conf.ErrInvalid).
var ErrInvalid = errors.New("invalid config")
