package comet

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"sync"

	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/ratelog"
)

// registrar is this comet's entry in discovery: app goim.comet with its
// gRPC address (what job dials) and its load as discovery.CometMeta (what
// logic hands out comets by). Without discovery nodes it has no client and
// does nothing.
type registrar struct {
	client    *discovery.Client // nil without discovery nodes
	host      string
	advertise string // rpc.advertise
	meta      func() discovery.CometMeta
	log       *slog.Logger
	warns     *ratelog.Limiter

	reg  *discovery.Registration // set by register
	mu   sync.Mutex              // serialises metadata updates
	last map[string]string       // the metadata last set; guarded by mu
}

// newRegistrar returns cfg's registrar; meta reports the comet's current
// load and state.
func newRegistrar(cfg Config, meta func() discovery.CometMeta, log *slog.Logger, warns *ratelog.Limiter) (*registrar, error) {
	r := &registrar{host: cfg.Host, advertise: cfg.RPC.Advertise, meta: meta, log: log, warns: warns}
	if len(cfg.Discovery.Nodes) > 0 {
		dc := cfg.Discovery
		if dc.Host == "" {
			dc.Host = cfg.Host
		}
		var err error
		if r.client, err = discovery.New(dc, log); err != nil {
			return nil, fmt.Errorf("comet: %w", err)
		}
	}
	return r, nil
}

// register puts this comet in discovery as goim.comet with the gRPC
// address job dials (rpc.advertise, or rpcAddr's port on this host's first
// non-loopback IPv4 address) and its metadata.
func (r *registrar) register(ctx context.Context, rpcAddr net.Addr) error {
	if r.client == nil {
		return nil
	}
	reg, err := r.client.Register(ctx, discovery.Instance{
		AppID:    discovery.AppComet,
		Hostname: r.host,
		Addrs:    []string{discovery.GRPCAddr(discovery.Advertise(r.advertise, rpcAddr))},
		Metadata: r.meta().Metadata(),
	})
	if err != nil {
		return fmt.Errorf("comet: %w", err)
	}
	r.reg = reg
	return nil
}

// update sends the current metadata to discovery when it changed. Load
// and draining state also go to logic in every RenewOnline report, which
// is faster.
func (r *registrar) update(ctx context.Context) {
	if r.reg == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	md := r.meta().Metadata()
	if maps.Equal(md, r.last) {
		return
	}
	if err := r.reg.Set(ctx, md); err != nil {
		r.warns.Warn(r.log, "comet: discovery metadata update failed", "err", err)
		return
	}
	r.last = md
}

// deregister removes this comet from discovery.
func (r *registrar) deregister(ctx context.Context) {
	if r.reg == nil {
		return
	}
	if err := r.reg.Cancel(ctx); err != nil {
		r.log.Warn("comet: discovery cancel failed", "err", err)
	}
}

// close closes the discovery client.
func (r *registrar) close() {
	if r.client != nil {
		_ = r.client.Close()
	}
}
