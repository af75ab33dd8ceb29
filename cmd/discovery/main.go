// Command discovery runs bilibili/discovery's server (v1.2.0, the version
// goim's tests run against) as a service of its own: the registry where
// comets, logic and job register and find each other. goim v2 processes
// can share it (their naming client finds the server in its env and zone).
//
//	discovery -listen 10.0.0.2:7171 -env prod -zone sh001 -region sh
//	discovery -listen 10.0.0.3:7171 -host disc-2 -peers 10.0.0.2:7171
//
// The defaults (127.0.0.1:7171, env dev, zone sh001, region sh) are those
// of configs/*.toml. The env, zone and region are where the server
// registers itself (app infra.discovery); it serves instances of every
// env and zone. Several servers of one zone replicate to each other when
// each lists the others in -peers.
//
// SIGINT or SIGTERM removes the server's own registration (here and on
// its peers), then it exits 0. That is all the library allows of a
// graceful shutdown: its HTTP listener cannot be closed, so long polls in
// flight end with the process and clients retry on another node. The
// registry lives in memory: a restarted server is empty until services
// renew (every 30 s) or, with peers, fetches theirs at start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/goim/goim/internal/buildinfo"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/discovery/embedded"
	"github.com/goim/goim/internal/service"
)

// deregisterTimeout bounds the removal of the server's own registration
// at shutdown, replication to peers included.
const deregisterTimeout = 5 * time.Second

func main() {
	err := run(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return // -h: the flags were listed
	}
	service.Exit("discovery", err)
}

// options are the command's flags.
type options struct {
	cfg   embedded.Config
	flags *service.Flags
}

// parse reads the flags. It never starts anything.
func parse(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("discovery", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var peers string
	fs.StringVar(&o.cfg.Addr, "listen", "127.0.0.1:7171", `listen address, "host:port" with a fixed non-zero port (the server registers it as its own address, so it must be the one clients dial)`)
	fs.StringVar(&o.cfg.Env, "env", embedded.DefaultEnv, "deploy env the server registers itself in (services choose theirs in [discovery] env)")
	fs.StringVar(&o.cfg.Zone, "zone", embedded.DefaultZone, "zone the server registers itself in")
	fs.StringVar(&o.cfg.Region, "region", embedded.DefaultRegion, "region the server registers itself in")
	fs.StringVar(&o.cfg.Host, "host", "", "the server's name in its registry (default: the OS hostname); distinct for each server of a set of peers")
	fs.StringVar(&peers, "peers", "", "the other discovery servers of this zone, comma-separated host:port: replicated to, and fetched from at start")
	o.flags = service.AddFlags(fs, "") // no config file: no -conf, no -check-config
	if err := service.ParseFlagsOnly(fs, args); err != nil {
		return options{}, err
	}
	o.cfg.Peers = conf.SplitList(peers)
	for name, v := range map[string]string{"env": o.cfg.Env, "zone": o.cfg.Zone, "region": o.cfg.Region} {
		if strings.TrimSpace(v) == "" {
			return options{}, fmt.Errorf("-%s must not be empty", name)
		}
	}
	return o, nil
}

func run(args []string, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	log, err := o.flags.Logger("discovery", os.Stdout, stderr)
	if log == nil {
		return err // -version printed, or a bad -log-* value
	}
	log.Info("discovery starting", "version", buildinfo.Version())
	// Subscribe before starting, so a signal sent as soon as the server
	// answers is not lost.
	sigs := service.Notify()
	defer signal.Stop(sigs)
	srv, err := embedded.Start(o.cfg, log)
	if err != nil {
		return err
	}
	sig := <-sigs
	log.Info("discovery stopping", "signal", sig.String())
	ctx, cancel := context.WithTimeout(context.Background(), deregisterTimeout)
	defer cancel()
	if err := srv.Deregister(ctx); err != nil {
		// The process exits anyway; the registration would expire on
		// the peers after 90 s without renewal.
		log.Warn("discovery: own registration not removed everywhere", "err", err)
	}
	log.Info("discovery stopped")
	return nil
}
