package logic

import "errors"

// CheckFiles opens and parses every key and secret file cfg names, as
// New would, without building anything: the token verification keys of
// [auth] and the internal gRPC secret of [rpc] (or GOIM_RPC_SECRET).
// -check-config runs it after Load, so a missing, unreadable or malformed
// file is found before a deployment rather than at start.
func CheckFiles(cfg Config) error {
	var errs []error
	if _, err := NewAuthenticator(cfg.Auth); err != nil {
		errs = append(errs, err)
	}
	if _, err := cfg.RPC.Load(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
