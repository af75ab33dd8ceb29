package logic

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/logic/httpapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	_ logicpb.LogicServer        = (*rpcService)(nil)
	_ interface{ Ready() error } = (*Server)(nil)
)

// rpcService adapts Service to the generated gRPC interface: the errors it
// returns carry gRPC codes (see rpcError).
type rpcService struct {
	logicpb.UnimplementedLogicServer
	s *Service
}

// rpcError gives err the gRPC code a comet acts on: Unauthenticated for a
// refused token (the comet closes the connection as rejected),
// InvalidArgument for a bad request or an auth body that is not the auth
// JSON or whose room_id is not a valid room id (the comet closes it as
// bad_auth_body), Unavailable for Redis, DeadlineExceeded
// or Canceled when the call's context ended, Internal otherwise.
func rpcError(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Internal
	switch {
	case errors.Is(err, protocol.ErrAuthBody), errors.Is(err, protocol.ErrRoomID):
		// Not the auth JSON, or a room_id no room can have: the client's
		// bug, not a refusal.
		code = codes.InvalidArgument
	case errors.Is(err, ErrAuth):
		code = codes.Unauthenticated
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, dao.ErrInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, dao.ErrRedis), errors.Is(err, dao.ErrKafka):
		code = codes.Unavailable
	}
	return status.Error(code, err.Error())
}

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
