// Command comet holds client connections (TCP, TLS, WebSocket, WSS) and
// delivers what job pushes to them. See docs/protocol.md and
// configs/comet.toml.
//
//	comet -conf configs/comet.toml
//	comet -conf configs/comet.toml -check-config
//
// SIGTERM drains (offline in discovery and logic, clients closed gradually
// over drain.window), SIGINT does the same over drain.interrupt_window; then
// the comet stops within drain.grace.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/buildinfo"
	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/logging"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "comet:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("comet", flag.ContinueOnError)
	confPath := fs.String("conf", "configs/comet.toml", "config file")
	check := fs.Bool("check-config", false, "validate the config file, open and parse every key, certificate and secret file it names, and exit")
	logf := logging.AddFlags(fs)
	version := buildinfo.AddFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if version.Print(os.Stdout, "comet") {
		return nil
	}
	log, err := logf.New(os.Stderr)
	if err != nil {
		return err
	}
	cfg, err := comet.Load(*confPath)
	if err != nil {
		return err
	}
	if *check {
		// Beyond Validate: open and parse every key, certificate and
		// secret file the config names.
		if err := comet.CheckFiles(cfg); err != nil {
			return fmt.Errorf("%s: %w", *confPath, err)
		}
		fmt.Println(*confPath + ": ok")
		return nil
	}
	log.Info("comet starting", "version", buildinfo.Version())

	reg := admin.NewRegistry()
	srv, err := comet.New(cfg, comet.Deps{Logger: log, Registry: reg})
	if err != nil {
		return err
	}
	adm, err := admin.New(cfg.Admin, reg, srv.Ready, log)
	if err != nil {
		return err
	}
	if err := adm.Start(); err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		_ = adm.Shutdown(context.Background())
		return err
	}
	log.Info("comet serving", "tcp", srv.Addrs("tcp"), "ws", srv.Addrs("ws"), "admin", adm.Addr())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	sig := <-sigs
	signal.Stop(sigs)
	window := cfg.Drain.Window.D()
	if sig == syscall.SIGINT {
		window = cfg.Drain.InterruptWindow.D()
	}
	log.Info("comet stopping", "signal", sig.String(), "drain_window", window)
	ctx, cancel := context.WithTimeout(context.Background(), window+cfg.Drain.Grace.D())
	defer cancel()
	srv.Drain(ctx, window)
	err = errors.Join(srv.Shutdown(ctx), adm.Shutdown(ctx))
	log.Info("comet stopped", "err", err, "at", time.Now().Format(time.RFC3339))
	return err
}
