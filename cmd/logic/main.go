// Command logic serves the push HTTP API (docs/push-api.md), the gRPC
// service comets authenticate connections through, and the online and
// nodes answers. See configs/logic.toml.
//
//	logic -conf configs/logic.toml
//	logic -conf configs/logic.toml -check-config
//
// SIGINT or SIGTERM stops it gracefully within shutdown_timeout: new
// pushes get 503, in-flight ones finish, it leaves discovery, then exits.
// SIGHUP reloads the connection token verification keys ([auth] key
// files and keys_dir); a failed reload keeps the keys in use.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/buildinfo"
	"github.com/goim/goim/internal/logging"
	"github.com/goim/goim/internal/logic"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "logic:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("logic", flag.ContinueOnError)
	confPath := fs.String("conf", "configs/logic.toml", "config file")
	check := fs.Bool("check-config", false, "validate the config file, open and parse every key, certificate and secret file it names, and exit")
	logf := logging.AddFlags(fs)
	version := buildinfo.AddFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if version.Print(os.Stdout, "logic") {
		return nil
	}
	log, err := logf.New(os.Stderr)
	if err != nil {
		return err
	}
	cfg, err := logic.Load(*confPath)
	if err != nil {
		return err
	}
	if *check {
		// Beyond Validate: read the credentials and open and parse every
		// key, certificate and secret file the config names.
		warnings, err := logic.CheckFiles(cfg)
		for _, w := range warnings {
			fmt.Println(*confPath + ": warning: " + w)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", *confPath, err)
		}
		fmt.Println(*confPath + ": ok")
		return nil
	}
	log.Info("logic starting", "version", buildinfo.Version())
	gcPercent, fromEnv := admin.SetGCPercent(admin.ServiceGCPercent)
	log.Info("garbage collector target", "percent", gcPercent, "from_GOGC", fromEnv)

	// Signals are caught before anything serves: a SIGHUP sent once the
	// process answers must not kill it (SIGHUP's default action).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	reg := admin.NewRegistry()
	srv, err := logic.New(cfg, logic.Deps{Logger: log, Registry: reg})
	if err != nil {
		return err
	}
	adm, err := admin.New(cfg.Admin, reg, srv.Ready, log)
	if err != nil {
		_ = srv.Shutdown(context.Background())
		return err
	}
	if err := adm.Start(); err != nil {
		_ = srv.Shutdown(context.Background())
		return err
	}
	if err := srv.Start(); err != nil {
		_ = srv.Shutdown(context.Background())
		_ = adm.Shutdown(context.Background())
		return err
	}
	log.Info("logic serving", "http", srv.HTTPAddr(), "rpc", srv.RPCAddr(), "admin", adm.Addr())

	sig := <-sigs
	for sig == syscall.SIGHUP {
		_ = srv.Reload() // logs and counts the result; a failure keeps the keys in use
		sig = <-sigs
	}
	signal.Stop(sigs)
	log.Info("logic stopping", "signal", sig.String())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	defer cancel()
	err = errors.Join(srv.Shutdown(ctx), adm.Shutdown(ctx))
	log.Info("logic stopped", "err", err)
	return err
}
