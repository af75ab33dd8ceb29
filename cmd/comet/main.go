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
	"log/slog"
	"os"
	"syscall"

	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/service"
)

func main() { service.Exit("comet", run(os.Args[1:])) }

func run(args []string) error {
	return service.Run(args, service.Main[comet.Config, *comet.Server]{
		Name: "comet", Conf: "configs/comet.toml", Load: comet.Load,
		Check: func(c comet.Config) ([]string, error) { return nil, comet.CheckFiles(c) },
		Admin: func(c comet.Config) admin.Config { return c.Admin },
		New: func(c comet.Config, env service.Env) (*comet.Server, error) {
			return comet.New(c, comet.Deps{Logger: env.Logger, Registry: env.Registry})
		},
		// A comet that failed to start is not shut down: its Shutdown
		// sends logic a final report, for a comet that never served.
		ShutdownOnError: false,
		Started: func(log *slog.Logger, _ comet.Config, srv *comet.Server, adminAddr string) {
			log.Info("comet serving", "tcp", srv.Addrs("tcp"), "ws", srv.Addrs("ws"), "admin", adminAddr)
		},
		Stop: func(c comet.Config, srv *comet.Server, sig os.Signal) service.Stop {
			window := c.Drain.Window.D()
			if sig == syscall.SIGINT {
				window = c.Drain.InterruptWindow.D()
			}
			return service.Stop{Timeout: window + c.Drain.Grace.D(), Attrs: []any{"drain_window", window},
				Drain: func(ctx context.Context) { srv.Drain(ctx, window) }}
		},
	})
}
