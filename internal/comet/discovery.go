package comet

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/goim/goim/internal/discovery"
	"google.golang.org/grpc/resolver"
)

// Discovery app ids, goim v2's.
const (
	AppComet = "goim.comet"
	AppLogic = "goim.logic"
)

// register puts this comet in discovery as goim.comet with its gRPC
// address and load metadata. Without discovery nodes it does nothing.
func (s *Server) register(ctx context.Context) error {
	if s.disc == nil {
		return nil
	}
	reg, err := s.disc.Register(ctx, discovery.Instance{
		AppID:    AppComet,
		Hostname: s.cfg.Host,
		Addrs:    []string{"grpc://" + s.advertise()},
		Metadata: s.metadata(),
	})
	if err != nil {
		return fmt.Errorf("comet: %w", err)
	}
	s.registration = reg
	return nil
}

// metadata is what discovery says about this comet. Load and draining
// state also go to logic in every RenewOnline report, which is faster.
func (s *Server) metadata() map[string]string {
	return map[string]string{
		"weight":     strconv.Itoa(s.cfg.Node.Weight),
		"offline":    strconv.FormatBool(s.draining.Load()),
		"addrs":      strings.Join(s.cfg.Node.Addrs, ","),
		"conn_count": strconv.FormatInt(s.limits.conns.Load(), 10),
		"ip_count":   strconv.Itoa(s.limits.ips.distinct()),
	}
}

// updateMetadata sends the current metadata to discovery when it changed.
func (s *Server) updateMetadata(ctx context.Context) {
	if s.registration == nil {
		return
	}
	md := s.metadata()
	key := md["offline"] + "/" + md["conn_count"] + "/" + md["ip_count"]
	if key == s.lastMetadata {
		return
	}
	if err := s.registration.Set(ctx, md); err != nil {
		s.warns.Warn(s.log, "comet: discovery metadata update failed", "err", err)
		return
	}
	s.lastMetadata = key
}

// deregister removes this comet from discovery.
func (s *Server) deregister(ctx context.Context) {
	if s.registration == nil {
		return
	}
	if err := s.registration.Cancel(ctx); err != nil {
		s.log.Warn("comet: discovery cancel failed", "err", err)
	}
}

// advertise is the gRPC address job dials: rpc.advertise, or the bound
// port on this host's first non-loopback IPv4 address.
func (s *Server) advertise() string {
	return discovery.Advertise(s.cfg.RPC.Advertise, s.rpcLn.Addr())
}

// watchLogic feeds logic's gRPC resolver from discovery (app goim.logic)
// until ctx ends; used when logic.addrs is empty.
func (s *Server) watchLogic(ctx context.Context) {
	w := s.disc.Watch(ctx, AppLogic)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.Changed():
		}
		var addrs []resolver.Address
		for _, ins := range w.Instances() {
			for _, a := range ins.Addrs {
				if hp, ok := strings.CutPrefix(a, "grpc://"); ok {
					addrs = append(addrs, resolver.Address{Addr: hp})
				}
			}
		}
		s.logicResolver.UpdateState(resolver.State{Addresses: addrs})
		s.log.Info("comet: logic instances", "count", len(addrs))
	}
}
