// Package rpc is logic's gRPC service, goim.logic.Logic, which comets
// call: the server it runs on (NewServer: keepalive that accepts comets'
// pings, message limits, the shared-secret check, a per-method request
// counter and a last-resort panic guard) and the adapter (Register) that
// turns each call into a call of logic's Service (the Service interface)
// and the Service's errors into the gRPC codes comets act on.
//
// A connection's session enters logic here: a comet's Connect or
// ConnectBatch becomes Service.Connect or Service.ConnectBatch, which
// writes the session to Redis.
package rpc

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip" // comets may compress RenewOnline, as goim v2's did
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/goim/goim/internal/logging"
	"github.com/goim/goim/internal/rpcauth"
)

// Limits and keepalive. Comets ping every 30 s even without calls in
// flight; the server allows pings down to MinPing (goim v2's servers
// refused their own clients' pings and sent GOAWAY).
const (
	MinPing     = 10 * time.Second
	MaxRecvSize = 16 << 20 // a RenewOnline of a comet with many rooms
	pingEvery   = time.Minute
	pingTimeout = 20 * time.Second
)

// the gzip import registers the gzip codec.
var _ = gzip.Name

// NewServer returns a gRPC server with logic's options. Its metrics are
// registered on reg; panics in handlers are logged and answered Internal.
// Every call must carry one of keys' secrets (unless keys are insecure);
// one without is answered Unauthenticated before its handler runs and
// counted in goim_logic_rpc_unauthenticated_total (and, by its code, in
// goim_logic_rpc_requests_total).
func NewServer(reg prometheus.Registerer, logger *slog.Logger, keys *rpcauth.Keys) (*grpc.Server, error) {
	logger = logging.OrDiscard(logger)
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "goim", Subsystem: "logic", Name: "rpc_requests_total",
		Help: "gRPC calls comets made, by method and status code.",
	}, []string{"method", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "goim", Subsystem: "logic", Name: "rpc_duration_seconds",
		Help:    "gRPC call latency by method.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"method"})
	for _, c := range []prometheus.Collector{calls, latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("logic: rpc: register metrics: %w", err)
		}
	}
	unauth, err := rpcauth.NewCounter(reg, "logic")
	if err != nil {
		return nil, fmt.Errorf("logic: rpc: %w", err)
	}
	intercept := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		method := path.Base(info.FullMethod)
		defer func() {
			if p := recover(); p != nil {
				logger.Error("logic: rpc handler panicked", "method", method, "panic", p, "stack", string(debug.Stack()))
				resp, err = nil, status.Error(codes.Internal, "internal error")
			}
			calls.WithLabelValues(method, status.Code(err).String()).Inc()
			latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
		}()
		return handler(ctx, req)
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRecvSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: MinPing, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: pingEvery, Timeout: pingTimeout}),
		grpc.UnaryInterceptor(intercept), // outermost: counts refused calls too
	}
	return grpc.NewServer(append(opts, keys.ServerOptions(unauth, logger)...)...), nil
}
