package logic

import (
	"errors"
	"fmt"
)

// CheckFiles reads what Validate only names, as New would, without
// building anything: the push API credentials (http.tokens_file,
// http.read_tokens_file and their variables; none at all is an error
// unless http.allow_anonymous), the token verification keys of [auth] and
// the internal gRPC secret of [rpc] (or GOIM_RPC_SECRET). -check-config
// runs it after Load, so a missing, unreadable or malformed file is found
// before a deployment rather than at start. warnings says what is valid but
// unsafe: an open push API.
func CheckFiles(cfg Config) (warnings []string, err error) {
	var errs []error
	if creds, err := cfg.HTTP.Credentials(); err != nil {
		errs = append(errs, fmt.Errorf("logic: %w", err))
	} else if creds.Anonymous() {
		warnings = append(warnings, "http.allow_anonymous = true and no credential: the push API is open to anyone who reaches http.bind (development only)")
	}
	if _, err := NewAuthenticator(cfg.Auth); err != nil {
		errs = append(errs, err)
	}
	if _, err := cfg.RPC.Load(); err != nil {
		errs = append(errs, err)
	}
	return warnings, errors.Join(errs...)
}
