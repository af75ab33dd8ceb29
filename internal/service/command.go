// Package service runs the main of a goim service process. cmd/comet,
// cmd/logic and cmd/job each describe their service in a Main and hand it
// to Run, which does what every service command does, in one order: parse
// the command line (-conf, -check-config, -log-level, -log-format,
// -version), build the logger, load the config (or only check it), build
// the service on an admin registry, open the admin listener with the
// service's readiness, start the service, wait for SIGINT or SIGTERM, and
// stop the service and the listener within a shutdown deadline. What
// differs between the services (the comet's drain window, logic's SIGHUP
// reload, what each logs once it serves) is in Main's fields.
//
// cmd/discovery and cmd/goim use the parts that fit them (AddFlags,
// ParseFlagsOnly, Flags.Logger, CheckConfig, Notify, Exit): neither has
// an admin listener of its own nor stops the way Run does.
//
// The package knows no service: it must not import internal/comet,
// internal/logic or internal/job.
package service

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/goim/goim/internal/buildinfo"
	"github.com/goim/goim/internal/logging"
)

// Flags are the flags the goim service commands share: -conf and
// -check-config for those with a config file, -log-level, -log-format
// and -version.
type Flags struct {
	// Conf is -conf: the config file's path.
	Conf string
	// Check is -check-config: validate the config and the files it
	// names, then exit.
	Check bool

	log     *logging.Flags
	version *buildinfo.Flag
}

// AddFlags registers the shared flags on fs. conf is -conf's default; ""
// registers neither -conf nor -check-config (for a command without a
// config file).
func AddFlags(fs *flag.FlagSet, conf string) *Flags {
	f := &Flags{log: logging.AddFlags(fs), version: buildinfo.AddFlag(fs)}
	if conf != "" {
		fs.StringVar(&f.Conf, "conf", conf, "config file")
		fs.BoolVar(&f.Check, "check-config", false, "validate the config file, open and parse every key, certificate and secret file it names, and exit")
	}
	return f
}

// ParseFlagsOnly parses args into fs and refuses positional arguments,
// for the commands that take flags only (cmd/goim, cmd/discovery).
func ParseFlagsOnly(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (flags only; -h lists them)", fs.Args())
	}
	return nil
}

// Logger is called after parsing. When -version was given it writes
// "<name> <version line>" to stdout and returns a nil logger and a nil
// error: the command has nothing more to do. Otherwise it returns the
// logger -log-level and -log-format ask for, writing to stderr, or an
// error naming the flag whose value is not valid.
func (f *Flags) Logger(name string, stdout, stderr io.Writer) (*slog.Logger, error) {
	if f.version.Print(stdout, name) {
		return nil, nil
	}
	return f.log.New(stderr)
}

// CheckConfig ends -check-config: it writes each warning as
// "<path>: warning: <w>" to w, then returns err prefixed with the path,
// or writes "<path>: ok" when err is nil.
func CheckConfig(w io.Writer, path string, warnings []string, err error) error {
	for _, warning := range warnings {
		fmt.Fprintln(w, path+": warning: "+warning)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintln(w, path+": ok")
	return nil
}

// Notify returns a channel that receives SIGINT and SIGTERM, the signals
// that stop a goim process, and the extra signals given. The caller
// stops the delivery with signal.Stop.
func Notify(extra ...os.Signal) chan os.Signal {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGINT, syscall.SIGTERM}, extra...)...)
	return sigs
}

// Exit ends a command's main: when err is not nil it writes
// "<name>: <err>" to stderr and exits with status 1.
func Exit(name string, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
