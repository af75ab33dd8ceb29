// Command job consumes the push topic as a member of a Kafka consumer
// group and delivers every push to the comets it targets, at least once
// and in order per room and per key. See configs/job.toml.
//
//	job -conf configs/job.toml
//	job -conf configs/job.toml -check-config
//
// SIGINT or SIGTERM stops it gracefully within shutdown_timeout: it stops
// fetching, flushes room batches, waits for the comet calls in flight,
// commits and leaves the group.
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
	"github.com/goim/goim/internal/job"
	"github.com/goim/goim/internal/logging"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "job:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("job", flag.ContinueOnError)
	confPath := fs.String("conf", "configs/job.toml", "config file")
	check := fs.Bool("check-config", false, "validate the config file, open and parse every key, certificate and secret file it names, and exit")
	logf := logging.AddFlags(fs)
	version := buildinfo.AddFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if version.Print(os.Stdout, "job") {
		return nil
	}
	log, err := logf.New(os.Stderr)
	if err != nil {
		return err
	}
	cfg, err := job.Load(*confPath)
	if err != nil {
		return err
	}
	if *check {
		// Beyond Validate: open and parse every key, certificate and
		// secret file the config names.
		if err := job.CheckFiles(cfg); err != nil {
			return fmt.Errorf("%s: %w", *confPath, err)
		}
		fmt.Println(*confPath + ": ok")
		return nil
	}
	log.Info("job starting", "version", buildinfo.Version())
	gcPercent, fromEnv := admin.SetGCPercent(admin.ServiceGCPercent)
	log.Info("garbage collector target", "percent", gcPercent, "from_GOGC", fromEnv)

	reg := admin.NewRegistry()
	var adm *admin.Server
	j, err := job.New(cfg, job.Deps{Logger: log, Registry: reg, AdminAddr: func() string { return adm.Addr() }})
	if err != nil {
		return err
	}
	adm, err = admin.New(cfg.Admin, reg, j.Ready, log)
	if err != nil {
		_ = j.Shutdown(context.Background())
		return err
	}
	if err := adm.Start(); err != nil {
		_ = j.Shutdown(context.Background())
		return err
	}
	if err := j.Start(); err != nil {
		_ = j.Shutdown(context.Background())
		_ = adm.Shutdown(context.Background())
		return err
	}
	log.Info("job running", "topic", cfg.Kafka.Topic, "group", cfg.Kafka.Group, "admin", adm.Addr())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	sig := <-sigs
	signal.Stop(sigs)
	log.Info("job stopping", "signal", sig.String())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	defer cancel()
	err = errors.Join(j.Shutdown(ctx), adm.Shutdown(ctx))
	log.Info("job stopped", "err", err)
	return err
}
