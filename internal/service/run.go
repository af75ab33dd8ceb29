package service

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/buildinfo"
)

// Service is what Run starts and stops: *comet.Server, *logic.Server,
// *job.Job.
type Service interface {
	// Start starts serving.
	Start() error
	// Ready backs the admin listener's /readyz.
	Ready() error
	// Shutdown stops the service within ctx.
	Shutdown(ctx context.Context) error
}

// Env is what Run gives a service's constructor.
type Env struct {
	// Logger is the command's logger.
	Logger *slog.Logger
	// Registry is the admin listener's registry (admin.NewRegistry), for
	// the service's metrics.
	Registry *prometheus.Registry
	// AdminAddr returns the admin listener's bound address. Call it only
	// once the service has started (the listener opens before the
	// service starts, after the constructor returns).
	AdminAddr func() string
}

// Stop is how a service stops after a signal.
type Stop struct {
	// Timeout bounds the whole stop: Drain, then the service's and the
	// admin listener's Shutdown.
	Timeout time.Duration
	// Drain, when set, runs first, within the deadline (the comet closes
	// its clients gradually).
	Drain func(ctx context.Context)
	// Attrs are extra attributes of the "<name> stopping" log line.
	Attrs []any
}

// Main describes a service command for Run. C is the service's config,
// S the service.
type Main[C any, S Service] struct {
	// Name is the command's name: its flag set, its -version line and
	// its log messages ("<name> starting", "<name> stopping",
	// "<name> stopped").
	Name string
	// Conf is -conf's default, "configs/<name>.toml".
	Conf string
	// Load reads and validates the config file.
	Load func(path string) (C, error)
	// Check does what -check-config does beyond Load: read the
	// credentials and open and parse every key, certificate and secret
	// file the config names. warnings are printed before the result.
	Check func(C) (warnings []string, err error)
	// GCPercent, when > 0, is the garbage collector's target unless GOGC
	// sets one (admin.SetGCPercent); 0 keeps Go's default.
	GCPercent int
	// Admin is the config's [admin] section.
	Admin func(C) admin.Config
	// New builds the service, not started.
	New func(C, Env) (S, error)
	// ShutdownOnError shuts the service down (without deadline) when its
	// start or its admin listener's fails, before Run returns the error.
	ShutdownOnError bool
	// Started logs what the running service serves; adminAddr is the
	// admin listener's address.
	Started func(log *slog.Logger, cfg C, svc S, adminAddr string)
	// Reload, when set, runs at each SIGHUP (which then does not stop the
	// process). Nil leaves SIGHUP alone.
	Reload func(S)
	// Stop says how the service stops after sig (SIGINT or SIGTERM).
	Stop func(cfg C, svc S, sig os.Signal) Stop
}

// Run runs the command m describes with the arguments args (os.Args[1:])
// until SIGINT or SIGTERM has stopped it, and returns the first error
// (flags, config, start-up) or the stop's. -version and -check-config
// return once they have printed their result (to stdout); the logs go to
// stderr.
func Run[C any, S Service](args []string, m Main[C, S]) error {
	fs := flag.NewFlagSet(m.Name, flag.ContinueOnError)
	f := AddFlags(fs, m.Conf)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := f.Logger(m.Name, os.Stdout, os.Stderr)
	if log == nil {
		return err
	}
	cfg, err := m.Load(f.Conf)
	if err != nil {
		return err
	}
	if f.Check {
		warnings, err := m.Check(cfg)
		return CheckConfig(os.Stdout, f.Conf, warnings, err)
	}
	log.Info(m.Name+" starting", "version", buildinfo.Version())
	if m.GCPercent > 0 {
		percent, fromEnv := admin.SetGCPercent(m.GCPercent)
		log.Info("garbage collector target", "percent", percent, "from_GOGC", fromEnv)
	}

	// Signals are caught before anything serves: a SIGHUP sent once the
	// process answers must not kill it (SIGHUP's default action), and a
	// stop signal sent during the start stops the service once started.
	var reload []os.Signal
	if m.Reload != nil {
		reload = append(reload, syscall.SIGHUP)
	}
	sigs := Notify(reload...)
	defer signal.Stop(sigs)

	svc, adm, err := m.start(cfg, log)
	if err != nil {
		return err
	}
	m.Started(log, cfg, svc, adm.Addr())

	sig := <-sigs
	for sig == syscall.SIGHUP {
		m.Reload(svc)
		sig = <-sigs
	}
	signal.Stop(sigs)
	stop := m.Stop(cfg, svc, sig)
	log.Info(m.Name+" stopping", append([]any{"signal", sig.String()}, stop.Attrs...)...)
	ctx, cancel := context.WithTimeout(context.Background(), stop.Timeout)
	defer cancel()
	if stop.Drain != nil {
		stop.Drain(ctx)
	}
	err = errors.Join(svc.Shutdown(ctx), adm.Shutdown(ctx))
	log.Info(m.Name+" stopped", "err", err, "at", time.Now().Format(time.RFC3339))
	return err
}

// start builds the service on a new admin registry, opens the admin
// listener with the service's readiness, then starts the service. On
// error the admin listener is shut down, and the service too with
// ShutdownOnError.
func (m *Main[C, S]) start(cfg C, log *slog.Logger) (S, *admin.Server, error) {
	reg := admin.NewRegistry()
	var adm *admin.Server
	svc, err := m.New(cfg, Env{Logger: log, Registry: reg, AdminAddr: func() string { return adm.Addr() }})
	if err != nil {
		return svc, nil, err
	}
	adm, err = admin.New(m.Admin(cfg), reg, svc.Ready, log)
	if err == nil {
		if err = adm.Start(); err == nil {
			err = svc.Start()
		}
	}
	if err != nil {
		if m.ShutdownOnError {
			_ = svc.Shutdown(context.Background())
		}
		if adm != nil {
			_ = adm.Shutdown(context.Background())
		}
		return svc, nil, err
	}
	return svc, adm, nil
}
