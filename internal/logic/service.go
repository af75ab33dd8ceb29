package logic

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/logic/httpapi"
	"github.com/goim/goim/internal/logic/rpc"
)

// ErrInvalidArgument is wrapped by the errors of calls whose arguments
// cannot be served (a comet that names no server, an empty key).
var ErrInvalidArgument = errors.New("logic: invalid argument")

// Service is what logic does, behind both of its APIs: pushes to Kafka
// (HTTP), connection sessions and online reports (gRPC, from comets) and
// the answers about online counts and comet nodes. It is safe for
// concurrent use.
type Service struct {
	cfg     Config
	log     *slog.Logger
	redis   *dao.Redis
	kafka   *dao.Kafka
	auth    *Authenticator
	metrics *metrics
	online  *online
	nodes   *balancer
	comets  func() []discovery.Instance // nil without discovery
	session int64                       // ConnectReply.heartbeat: the session timeout in ns

	refreshWarn warnLimiter
	dropWarn    warnLimiter // rooms dropped from online reports
}

// The Service serves both APIs.
var (
	_ httpapi.Service            = (*Service)(nil)
	_ rpc.Service                = (*Service)(nil)
	_ interface{ Ready() error } = (*Server)(nil)
)

// sessionTimeout is what ConnectReply.heartbeat carries: how long a comet
// keeps a connection that does not heartbeat, in nanoseconds (goim v2
// sends node.heartbeat x node.heartbeat_max as a Go duration).
func sessionTimeout(n NodeConfig) int64 {
	return int64(n.Heartbeat.D() * time.Duration(n.HeartbeatMax))
}

// warnLimiter rate-limits the warnings of an operation that keeps
// failing: the first failure is logged, then at most one a minute, and
// the recovery once.
type warnLimiter struct {
	mu       sync.Mutex
	failures int
	last     time.Time
}

func (w *warnLimiter) warn(log *slog.Logger, msg string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failures++
	if w.failures == 1 || time.Since(w.last) >= time.Minute {
		log.Warn(msg, "err", err, "failures", w.failures)
		w.last = time.Now()
	}
}

func (w *warnLimiter) ok(log *slog.Logger, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failures > 0 {
		log.Info(msg, "after_failures", w.failures)
		w.failures = 0
	}
}
