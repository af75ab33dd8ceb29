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
	"github.com/goim/goim/internal/ratelog"
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
	// receipts records delivery receipts; nil when they are off.
	receipts Receipts
	// roomLocks serialize the append and publish of one recoverable
	// room's pushes (PushRoom), striped by room.
	roomLocks [roomStripes]sync.Mutex

	// warns rate-limits the warnings of the online refresh and of rooms
	// dropped from online reports: the first, then one a minute.
	warns *ratelog.Limiter
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
