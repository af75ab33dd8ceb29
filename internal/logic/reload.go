package logic

import (
	"context"
	"time"
)

// hasKeyFiles reports whether the section names any key file or
// directory (something a reload can read).
func (c AuthConfig) hasKeyFiles() bool {
	return c.HMACKeyFile != "" || c.PublicKeyFile != "" || c.KeysDir != ""
}

// Reload reads the token verification keys again ([auth] hmac_key_file,
// public_key_file and every file of keys_dir): tokens are checked with the
// new keys from then on; connected clients are not affected. On error the
// keys in use stay, and the error, which names the bad file, is logged
// and returned. cmd/logic calls it on SIGHUP. Each call is counted in
// goim_logic_auth_key_reloads_total.
func (s *Server) Reload() error {
	return s.reloaded("reload", s.svc.auth.Reload())
}

// keysLoop reloads the keys every interval when a key file changed, until
// ctx ends.
func (s *Server) keysLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if reloaded, err := s.svc.auth.ReloadIfChanged(); reloaded {
				_ = s.reloaded("key files changed", err)
			}
		}
	}
}

// reloaded logs and counts the result of a reload of the keys.
func (s *Server) reloaded(why string, err error) error {
	if err != nil {
		s.svc.metrics.keyReloadError.Inc()
		s.log.Error("logic: token verification keys not reloaded; the previous keys stay in use", "reason", why, "err", err)
		return err
	}
	s.svc.metrics.keyReloadOK.Inc()
	s.logKeys("reason", why)
	return nil
}

// logKeys logs the verification keys in use (how many, the kids; never
// the keys).
func (s *Server) logKeys(args ...any) {
	n, kids := s.svc.auth.Keys()
	if n == 0 {
		return
	}
	s.log.Info("logic: token verification keys", append([]any{"keys", n, "kids", kids}, args...)...)
}
