package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestFailRecover: the first failure is logged, then one a minute with
// the failures so far; the recovery is logged once, and the next failure
// is logged at once, counted from 1 again.
func TestFailRecover(t *testing.T) {
	l, c := newTest(1, time.Minute)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime}))
	const fail, ok = "refresh failed", "refresh works again"
	lines := func() []string {
		defer buf.Reset()
		if buf.Len() == 0 {
			return nil
		}
		return strings.Split(strings.TrimSpace(buf.String()), "\n")
	}

	l.Recover(log, fail, ok) // no failure yet: nothing to say
	if got := lines(); got != nil {
		t.Fatalf("recovery without failures logged %q", got)
	}
	for range 3 {
		l.Fail(log, fail, "err", "down")
	}
	if got := lines(); len(got) != 1 || got[0] != `level=WARN msg="refresh failed" err=down failures=1` {
		t.Fatalf("first failures: %q", got)
	}
	c.t = c.t.Add(time.Minute)
	l.Fail(log, fail, "err", "down")
	if got := lines(); len(got) != 1 || got[0] != `level=WARN msg="refresh failed" err=down failures=4` {
		t.Fatalf("a minute later: %q", got)
	}
	l.Recover(log, fail, ok)
	l.Recover(log, fail, ok)
	if got := lines(); len(got) != 1 || got[0] != `level=INFO msg="refresh works again" after_failures=4` {
		t.Fatalf("recovery: %q", got)
	}
	c.t = c.t.Add(time.Second) // within the minute of the last warning
	l.Fail(log, fail, "err", "down again")
	if got := lines(); len(got) != 1 || got[0] != `level=WARN msg="refresh failed" err="down again" failures=1` {
		t.Fatalf("failure after the recovery: %q", got)
	}
	// Another operation's failures are its own.
	l.Fail(log, "other failed")
	l.Recover(log, "other failed", "other works again")
	if got := lines(); len(got) != 2 || !strings.Contains(got[1], "after_failures=1") {
		t.Fatalf("another operation: %q", got)
	}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
