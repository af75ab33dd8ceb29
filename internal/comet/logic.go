package comet

import (
	"context"
	"fmt"

	"github.com/goim/goim/internal/rpcauth"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
)

// dialLogic returns a client connection to logic's gRPC service, balanced
// round robin over cfg.Addrs, or over what the returned resolver is fed
// from discovery when cfg.Addrs is empty; every call carries keys' secret.
// It does not wait for a connection: calls fail with their own deadline
// while logic is unreachable.
func dialLogic(cfg LogicConfig, keys *rpcauth.Keys) (*grpc.ClientConn, *manual.Resolver, error) {
	r := manual.NewBuilderWithScheme("goim-logic")
	if len(cfg.Addrs) > 0 {
		addrs := make([]resolver.Address, len(cfg.Addrs))
		for i, a := range cfg.Addrs {
			addrs[i] = resolver.Address{Addr: a}
		}
		r.InitialState(resolver.State{Addresses: addrs})
	}
	opts := []grpc.DialOption{
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: clientPing, Timeout: clientPingTimeout, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize)),
	}
	opts = append(opts, grpc.WithChainUnaryInterceptor(secretRefused))
	conn, err := grpc.NewClient(r.Scheme()+":///logic", append(opts, keys.DialOptions()...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("comet: logic client: %w", err)
	}
	return conn, r, nil
}

// secretRefused turns logic's refusal of this comet's rpc secret into
// FailedPrecondition, so that it is not taken for logic refusing a
// client's token (Unauthenticated too): handshakes fail as logic_error,
// not auth_rejected, and the message says what to fix.
func secretRefused(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil && rpcauth.Refused(err) {
		return status.Error(codes.FailedPrecondition,
			"comet: logic refused this comet's rpc secret (check [rpc] secret_file or GOIM_RPC_SECRET on both)")
	}
	return err
}
