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
	"log/slog"
	"os"

	"github.com/goim/goim/internal/admin"
	"github.com/goim/goim/internal/job"
	"github.com/goim/goim/internal/service"
)

func main() { service.Exit("job", run(os.Args[1:])) }

func run(args []string) error {
	return service.Run(args, service.Main[job.Config, *job.Job]{
		Name: "job", Conf: "configs/job.toml", Load: job.Load,
		Check:     func(c job.Config) ([]string, error) { return nil, job.CheckFiles(c) },
		GCPercent: admin.ServiceGCPercent,
		Admin:     func(c job.Config) admin.Config { return c.Admin },
		New: func(c job.Config, env service.Env) (*job.Job, error) {
			return job.New(c, job.Deps{Logger: env.Logger, Registry: env.Registry, AdminAddr: env.AdminAddr})
		},
		ShutdownOnError: true,
		Started: func(log *slog.Logger, c job.Config, _ *job.Job, adminAddr string) {
			log.Info("job running", "topic", c.Kafka.Topic, "group", c.Kafka.Group, "admin", adminAddr)
		},
		Stop: func(c job.Config, _ *job.Job, _ os.Signal) service.Stop {
			return service.Stop{Timeout: c.ShutdownTimeout.D()}
		},
	})
}
