package allinone

import (
	"testing"
	"time"

	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/logic"
)

// TestDefaultsAgree checks the timing rules between logic and comet that
// no single service's Validate can (docs/configuration.md, "Values that
// must agree across services") on the built-in defaults, the shipped
// service files and the all-in-one's file.
func TestDefaultsAgree(t *testing.T) {
	type pair struct {
		name  string
		logic logic.Config
		comet comet.Config
	}
	pairs := []pair{{name: "Default()", logic: logic.Default(), comet: comet.Default()}}
	lf, err := logic.Load("../../configs/logic.toml")
	if err != nil {
		t.Fatal(err)
	}
	cf, err := comet.Load("../../configs/comet.toml")
	if err != nil {
		t.Fatal(err)
	}
	pairs = append(pairs, pair{name: "configs/logic.toml and configs/comet.toml", logic: lf, comet: cf})
	af, err := Load("../../configs/goim.toml")
	if err != nil {
		t.Fatal(err)
	}
	pairs = append(pairs, pair{name: "configs/goim.toml", logic: af.Logic, comet: af.Comet})

	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			hb := p.logic.Node.Heartbeat.D() * time.Duration(p.logic.Node.HeartbeatMax)
			// A renewal happens at the first heartbeat after session_renew
			// (+10 % jitter); a connection silent for up to the session
			// timeout is still open and must keep its routing.
			gap := p.comet.Protocol.SessionRenew.D()*11/10 + hb
			if ttl := p.logic.Redis.SessionTTL.D(); ttl <= gap {
				t.Errorf("logic redis.session_ttl %v must exceed 1.1 × comet protocol.session_renew (%v) + node.heartbeat × heartbeat_max (%v) = %v",
					ttl, p.comet.Protocol.SessionRenew, hb, gap)
			}
			if ttl, iv := p.logic.Redis.OnlineTTL.D(), p.comet.Logic.ReportInterval.D(); ttl < 3*iv {
				t.Errorf("logic redis.online_ttl %v must be at least 3 × comet logic.report_interval %v", ttl, iv)
			}
		})
	}
	if d := logic.Default().Node; d.Heartbeat.D() != 4*time.Minute || d.HeartbeatMax != 2 {
		t.Errorf("logic's default heartbeat policy is %v × %d, want goim v2's 4m × 2", d.Heartbeat, d.HeartbeatMax)
	}
}
