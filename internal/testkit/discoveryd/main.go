// Command discoveryd runs bilibili/discovery's server
// (internal/discovery/embedded) as a process of its own, for tests that
// need discovery for longer than the embedded server may live inside a
// -race test binary: the library writes a field without synchronisation
// 60 s after it starts, which the race detector reports (see
// internal/discovery/embedded). In a separate process built without -race
// it is harmless.
//
//	discoveryd -addr 127.0.0.1:7171
//
// It serves until SIGINT or SIGTERM, then exits 0. The library cannot be
// shut down gracefully, so exiting is the shutdown.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/goim/goim/internal/discovery/embedded"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "discoveryd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("discoveryd", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:7171", `listen address, "host:port" with a fixed non-zero port`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Subscribe before starting, so a signal sent as soon as the server
	// answers is not lost.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := embedded.StartServer(*addr, log); err != nil {
		return err
	}
	log.Info("discoveryd serving", "addr", *addr)
	sig := <-sigs
	log.Info("discoveryd stopping", "signal", sig.String())
	return nil
}
