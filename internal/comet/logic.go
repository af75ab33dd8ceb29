package comet

import (
	"fmt"

	"github.com/goim/goim/internal/rpcauth"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
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
	conn, err := grpc.NewClient(r.Scheme()+":///logic", append(opts, keys.DialOptions()...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("comet: logic client: %w", err)
	}
	return conn, r, nil
}
