package admin

import (
	"runtime/debug"
	"testing"
)

func TestSetGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })

	// GOGC set: the runtime read it at start (simulated here); it stays.
	t.Setenv("GOGC", "250")
	debug.SetGCPercent(250)
	if p, env := SetGCPercent(ServiceGCPercent); p != 250 || !env {
		t.Fatalf("with GOGC=250: %d, %v; want 250 from GOGC", p, env)
	}
	if p := debug.SetGCPercent(250); p != 250 {
		t.Fatalf("target %d after SetGCPercent with GOGC set, want 250 kept", p)
	}

	// GOGC unset: the service's default applies.
	t.Setenv("GOGC", "")
	if p, env := SetGCPercent(ServiceGCPercent); p != ServiceGCPercent || env {
		t.Fatalf("without GOGC: %d, %v; want %d, not from GOGC", p, env, ServiceGCPercent)
	}
	if p := debug.SetGCPercent(100); p != ServiceGCPercent {
		t.Fatalf("target %d, want %d", p, ServiceGCPercent)
	}
}
