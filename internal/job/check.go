package job

import "fmt"

// CheckFiles opens and parses every secret file cfg names, as New would,
// without building anything: the internal gRPC secret of [rpc] (or
// GOIM_RPC_SECRET). -check-config runs it after Load, so a missing,
// unreadable or malformed file is found before a deployment rather than
// at start.
func CheckFiles(cfg Config) error {
	if _, err := cfg.RPC.Load(); err != nil {
		return fmt.Errorf("job: %w", err)
	}
	return nil
}
