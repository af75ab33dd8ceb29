// Command goim runs a whole goim cluster in one process, for a laptop:
// embedded Kafka (kfake), Redis (miniredis) and bilibili/discovery, then
// logic, job and one comet wired through them on loopback, plus a browser
// demo at /demo on logic's HTTP API. See configs/goim.toml.
//
//	goim -conf configs/goim.toml
//	goim -kafka 10.0.0.5:9092 -redis 10.0.0.6:6379   real ones instead
//	goim -conf configs/goim.toml -check-config
//
// A flag given replaces the embedded part (it is then not started).
// SIGINT or SIGTERM stops everything in order: pushes first, then job,
// the comet (its clients are told to reconnect), logic, the embedded parts.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"

	"github.com/goim/goim/internal/allinone"
	"github.com/goim/goim/internal/buildinfo"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/demo"
	"github.com/goim/goim/internal/service"
)

func main() { service.Exit("goim", run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("goim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := service.AddFlags(fs, "configs/goim.toml")
	kafka := fs.String("kafka", "", "real Kafka brokers, comma-separated host:port (default: embedded kfake)")
	redis := fs.String("redis", "", "real Redis host:port (default: embedded miniredis)")
	disc := fs.String("discovery", "", "real discovery nodes, comma-separated host:port (default: embedded)")
	infraOnly := fs.Bool("infra-only", false, "start only the embedded Kafka, Redis and discovery (not logic, job, comet), to run the services as separate processes against them")
	if err := service.ParseFlagsOnly(fs, args); err != nil {
		return err
	}
	log, err := f.Logger("goim", stdout, stderr)
	if log == nil {
		return err // -version printed, or a bad -log-* value
	}
	cfg, err := allinone.Read(f.Conf)
	if err != nil {
		return err
	}
	if *kafka != "" {
		cfg.Kafka.Brokers = conf.SplitList(*kafka)
	}
	if *redis != "" {
		cfg.Redis.Addr = *redis
	}
	if *disc != "" {
		cfg.Discovery.Nodes = conf.SplitList(*disc)
	}
	cfg.Wire()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: %w", f.Conf, err)
	}
	if f.Check {
		warnings, err := cfg.CheckFiles(*infraOnly)
		return service.CheckConfig(stdout, f.Conf, warnings, err)
	}
	log.Info("goim starting", "version", buildinfo.Version())

	c, err := allinone.Start(cfg, allinone.Deps{
		Logger:    log,
		Pages:     map[string]http.Handler{"/demo": demo.Handler()},
		InfraOnly: *infraOnly,
	})
	if err != nil {
		return err
	}
	sigs := service.Notify()
	defer signal.Stop(sigs)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.ReadyTimeout.D())
	err = c.WaitReady(ctx)
	cancel()
	if err != nil {
		log.Warn("goim: not every service is ready yet; it may recover by itself", "after", cfg.ReadyTimeout, "err", err)
	}
	fmt.Fprint(stdout, c.Summary())

	sig := <-sigs
	log.Info("goim stopping", "signal", sig.String())
	err = c.Shutdown()
	log.Info("goim stopped", "err", err)
	return err
}
