// Package logicclient connects a service to logic's gRPC service
// (goim.logic.Logic): a connection balanced round robin over fixed
// addresses or over the logic instances discovery lists, carrying the
// service's rpc secret. The comet uses it for every call to logic, job to
// report deferred deliveries.
package logicclient

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/rpcauth"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
)

// The connection's keepalive and message bound.
const (
	ping        = 30 * time.Second
	pingTimeout = 10 * time.Second
	maxMsgSize  = 16 << 20
)

// Dial returns a client connection to logic's gRPC service, balanced
// round robin over addrs, or, when addrs is empty, over what the returned
// resolver is fed (Follow). Every call carries keys' secret; a refusal of
// that secret is answered FailedPrecondition with a message naming who
// ("job") and what to fix. It does not wait for a connection: calls fail
// with their own deadline while logic is unreachable.
func Dial(addrs []string, who string, keys *rpcauth.Keys) (*grpc.ClientConn, *manual.Resolver, error) {
	r := manual.NewBuilderWithScheme("goim-logic")
	if len(addrs) > 0 {
		as := make([]resolver.Address, len(addrs))
		for i, a := range addrs {
			as[i] = resolver.Address{Addr: a}
		}
		r.InitialState(resolver.State{Addresses: as})
	}
	opts := []grpc.DialOption{
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: ping, Timeout: pingTimeout, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize)),
		grpc.WithChainUnaryInterceptor(secretRefused(who)),
	}
	conn, err := grpc.NewClient(r.Scheme()+":///logic", append(opts, keys.DialOptions()...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: logic client: %w", who, err)
	}
	return conn, r, nil
}

// secretRefused turns logic's refusal of the rpc secret into
// FailedPrecondition, so that it is not taken for logic refusing a
// client's token (Unauthenticated too), and the message says what to fix.
func secretRefused(who string) grpc.UnaryClientInterceptor {
	msg := who + ": logic refused this " + who + "'s rpc secret (check [rpc] secret_file or GOIM_RPC_SECRET on both)"
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err != nil && rpcauth.Refused(err) {
			return status.Error(codes.FailedPrecondition, msg)
		}
		return err
	}
}

// Follow feeds r (from Dial with no addresses) with the gRPC addresses of
// the logic instances in discovery (app goim.logic) until ctx ends,
// logging each change as who.
func Follow(ctx context.Context, c *discovery.Client, r *manual.Resolver, log *slog.Logger, who string) {
	w := c.Watch(ctx, discovery.AppLogic)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.Changed():
		}
		var addrs []resolver.Address
		for _, ins := range w.Instances() {
			if hp, ok := ins.GRPC(); ok {
				addrs = append(addrs, resolver.Address{Addr: hp})
			}
		}
		r.UpdateState(resolver.State{Addresses: addrs})
		log.Info(who+": logic instances", "count", len(addrs))
	}
}
