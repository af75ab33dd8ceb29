// Package logging builds a service's *slog.Logger from its command-line
// flags: -log-level (debug, info, warn, error; default info) and
// -log-format (text or json; default text). Every service command
// registers both with one call:
//
//	logf := logging.AddFlags(fs)
//	if err := fs.Parse(args); err != nil { ... }
//	log, err := logf.New(os.Stderr)
//
// text is log/slog's key=value handler, for a terminal; json writes one
// JSON object per line (time, level, msg, then the attributes), for log
// collectors.
package logging

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// Formats -log-format accepts.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Flags holds the values of -log-level and -log-format.
type Flags struct {
	Level  string
	Format string
}

// AddFlags registers -log-level and -log-format on fs.
func AddFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.Level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.Format, "log-format", FormatText, "text (key=value lines) or json (one JSON object per line)")
	return f
}

// New returns a logger writing to w at the flags' level in the flags'
// format, or an error naming the flag whose value is not valid.
func (f *Flags) New(w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(f.Level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch f.Format {
	case FormatText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case FormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("-log-format: %q is not %q or %q", f.Format, FormatText, FormatJSON)
	}
}

// OrDiscard returns l, or a logger that discards everything when l is nil
// (a service built without a logger).
func OrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
