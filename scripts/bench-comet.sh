#!/usr/bin/env bash
# Runs the comet load tests (internal/comet/loadtest_test.go) for TCP and
# WebSocket and prints their figures:
#   - idle memory: RSS, heap and goroutine stacks per idle authenticated
#     connection, and the RSS left after every client disconnected;
#   - room fan-out: deliveries per comet CPU-second and allocations per push.
# The clients run in a second process (the test binary re-executed), so each
# process holds about GOIM_LOADTEST_CONNS sockets: keep it under `ulimit -n`.
#
# Each test and transport runs in its own `go test` process: the Go runtime
# keeps goroutine and poll descriptors for reuse, so a run after another in
# the same process would show lower per-connection memory than a fresh one.
#
#   scripts/bench-comet.sh                       every test and transport, 10,000 connections
#   GOIM_LOADTEST_CONNS=2000 scripts/bench-comet.sh
#   scripts/bench-comet.sh TestLoadIdleMemory/ws  only these (-run patterns)
#
# Other knobs (GOIM_LOADTEST_ROUNDS, _SOURCES, _DIALERS, _SETTLE,
# _HEAPPROFILE) are described at the top of internal/comet/loadtest_test.go.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -gt 0 ]; then
  runs=("$@")
else
  runs=(TestLoadIdleMemory/tcp TestLoadIdleMemory/ws TestLoadRoomFanout/tcp TestLoadRoomFanout/ws)
fi

conns="${GOIM_LOADTEST_CONNS:-10000}"
need=$((conns + 200))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null || {
    echo "bench-comet: ulimit -n is $(ulimit -n), $need needed for $conns connections per process" >&2
    exit 1
  }
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
for r in "${runs[@]}"; do
  pattern="^${r%%/*}\$"
  if [[ "$r" == */* ]]; then
    pattern="$pattern/^${r#*/}\$"
  fi
  echo "== GOIM_LOADTEST=1 go test -run '$pattern' -v -count=1 -timeout 20m ./internal/comet"
  GOIM_LOADTEST=1 go test -run "$pattern" -v -count=1 -timeout 20m ./internal/comet 2>&1 | tee -a "$log" || status=1
done

echo
echo "== comet load test figures =="
grep -o 'LOADTEST .*' "$log" | sed 's/^LOADTEST //' || echo "(no figures: see the log above)"
exit "$status"
