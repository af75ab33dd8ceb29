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
	"log/slog"
	"os"

	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/service"
)

func main() { service.Exit("logic", run(os.Args[1:])) }

func run(args []string) error {
	return service.Run(args, service.Main[logic.Config, *logic.Server]{
		Name: "logic", Conf: "configs/logic.toml", Load: logic.Load, Check: logic.CheckFiles,
		GCPercent: admin.ServiceGCPercent,
		Admin:     func(c logic.Config) admin.Config { return c.Admin },
		New: func(c logic.Config, env service.Env) (*logic.Server, error) {
			return logic.New(c, logic.Deps{Logger: env.Logger, Registry: env.Registry})
		},
		ShutdownOnError: true,
		Started: func(log *slog.Logger, _ logic.Config, srv *logic.Server, adminAddr string) {
			log.Info("logic serving", "http", srv.HTTPAddr(), "rpc", srv.RPCAddr(), "admin", adminAddr)
		},
		// Logs and counts the result; a failure keeps the keys in use.
		Reload: func(srv *logic.Server) { _ = srv.Reload() },
		Stop: func(c logic.Config, _ *logic.Server, _ os.Signal) service.Stop {
			return service.Stop{Timeout: c.ShutdownTimeout.D()}
		},
	})
}
