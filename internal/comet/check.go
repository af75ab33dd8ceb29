package comet

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// CheckFiles opens and parses every key, certificate and secret file cfg
// names, as New would, without building anything: the TLS certificate and
// key of [tls] (whenever either is set, used by a listener or not) and
// the internal gRPC secret of [rpc] (or GOIM_RPC_SECRET). -check-config
// runs it after Load, so a missing, unreadable or malformed file is found
// before a deployment rather than at start.
func CheckFiles(cfg Config) error {
	var errs []error
	if cfg.TLS.CertFile != "" || cfg.TLS.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("comet: tls: %w", err))
		}
	}
	if _, err := cfg.RPC.Load(); err != nil {
		errs = append(errs, fmt.Errorf("comet: %w", err))
	}
	return errors.Join(errs...)
}
