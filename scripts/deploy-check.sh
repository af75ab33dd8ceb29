#!/usr/bin/env bash
# Runs every shell block of docs/deploy.md, in order, in one bash process
# (set -euo pipefail), on this machine's loopback, and fails when one
# fails. So the guide's commands are the ones that work.
#
#   scripts/deploy-check.sh            (make deploy-check)
#   KEEP=1 scripts/deploy-check.sh     keep the scratch directory
#   TIMEOUT=600                        bound on the whole run, seconds
#
# How the guide's production hosts map onto one machine:
#   - the block fenced "```sh hosts" (the hosts' addresses) is replaced by
#     the loopback addresses below, which must define the same names;
#   - absolute paths under /etc, /usr/local, /var/lib and /run move into a
#     scratch directory ($ROOT), in the blocks, in the unit files and in
#     the config files installed under /etc/goim (install is wrapped);
#   - systemctl is a shell function that runs a unit's ExecStart with its
#     EnvironmentFile in the background (enable --now, start, stop with the
#     unit's KillSignal and TimeoutStopSec, restart, daemon-reload);
#   - Kafka is kfake (internal/testkit/kafkastandin) with three brokers, and
#     kafka-topics.sh a link to the same program, which speaks the Kafka
#     protocol to it for --create and --describe;
#   - Redis is the real redis-server (and redis-cli) of this machine.
# The generated script may name no address outside 127.0.0.0/8: the check
# refuses to run one that does. Every process it started is stopped at
# the end (by its PID); on failure the last lines of every log are shown.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
DOC="docs/deploy.md"

for tool in go redis-server redis-cli openssl curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "deploy-check: $tool is needed" >&2; exit 1; }
done

WORK="$(mktemp -d /tmp/goim-deploy-check.XXXXXX)"
ROOT="$WORK/root"
mkdir -p "$ROOT" "$WORK/standins" "$WORK/logs" "$WORK/pids"

# The loopback stand-ins for the guide's hosts: one 127.0.77.x address per
# private address, 127.0.78.x for the comets' public ones.
HOSTS='DISC1_IP=127.0.77.2
DISC2_IP=127.0.77.3
REDIS_IP=127.0.77.10
REDIS2_IP=127.0.77.11
RC1_IP=127.0.77.12
RC2_IP=127.0.77.13
RC3_IP=127.0.77.14
KAFKA=127.0.77.20:9092,127.0.77.20:9093,127.0.77.20:9094
LOGIC1_IP=127.0.77.30
LOGIC2_IP=127.0.77.31
COMET1_IP=127.0.77.40
COMET1_PUBLIC=127.0.78.40
COMET2_IP=127.0.77.41
COMET2_PUBLIC=127.0.78.41
COMET3_IP=127.0.77.42
COMET3_PUBLIC=127.0.78.42
JOB1_IP=127.0.77.50
JOB2_IP=127.0.77.51'

kafka_pid=""
cleanup() {
  status=$?
  set +e
  # The units still running, last started first (jobs before comets
  # before logic before discovery), each given 10 s.
  if [ -f "$WORK/started" ]; then
    for unit in $(tac "$WORK/started"); do
      f="$WORK/pids/$unit"
      [ -e "$f" ] || continue
      pid="$(cat "$f")"
      rm -f "$f"
      kill -TERM "$pid" 2>/dev/null || continue
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null
    done
  fi
  # Daemonized redis-servers write their pid files under $ROOT/run. A
  # redis-server that cannot save refuses SIGTERM: SIGKILL after 5 s.
  rpids=""
  for f in $(find "$ROOT/run" -name '*.pid' 2>/dev/null); do
    pid="$(cat "$f" 2>/dev/null)"
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && rpids="$rpids $pid"
  done
  for pid in $rpids; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  if [ -n "$kafka_pid" ]; then kill -TERM "$kafka_pid" 2>/dev/null; wait "$kafka_pid" 2>/dev/null; fi
  if [ "$status" -ne 0 ]; then
    for log in "$WORK"/logs/*.log; do
      [ -e "$log" ] || continue
      echo "--- $(basename "$log"), last lines:" >&2
      tail -n 20 "$log" >&2
    done
    echo "deploy-check: FAILED (status $status); files kept in $WORK" >&2
  elif [ "${KEEP:-0}" = 1 ]; then
    echo "deploy-check: files kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# The hosts block of the guide must name exactly the variables above.
doc_vars="$(awk '/^```sh hosts$/ { on = 1; next } on && /^```$/ { exit } on && /^[A-Z0-9_]+=/ { sub(/=.*/, ""); print }' "$DOC" | sort)"
our_vars="$(printf '%s\n' "$HOSTS" | sed 's/=.*//' | sort)"
if [ "$doc_vars" != "$our_vars" ]; then
  echo "deploy-check: the hosts block of $DOC and this script's HOSTS name different variables:" >&2
  diff <(echo "$doc_vars") <(echo "$our_vars") >&2 || true
  exit 1
fi

# rewrite: absolute paths under /etc, /usr/local, /var/lib and /run into $ROOT.
rewrite() {
  sed -E "s#(^|[[:space:]\"'=:(,>])/(etc|usr/local|var/lib|run)/#\1$ROOT/\2/#g"
}

# The guide's shell blocks as one script, each announced with its line.
{
  echo 'set -euo pipefail'
  echo ". '$WORK/prelude.sh'"
  awk -v hosts="$HOSTS" '
    /^```sh( hosts)?$/ && !on { on = 1; n++; info = $0; printf "echo \"== deploy.md block %d (line %d)\"\n", n, NR + 1
                                if (info == "```sh hosts") { print hosts; skip = 1 } ; next }
    on && /^```$/ { on = 0; skip = 0; next }
    on && !skip { print }
  ' "$DOC" | rewrite
} > "$WORK/doc.sh"
blocks="$(grep -c '^echo "== deploy.md block' "$WORK/doc.sh")"
if [ "$blocks" -lt 10 ]; then
  echo "deploy-check: only $blocks shell blocks found in $DOC" >&2
  exit 1
fi
if other="$(grep -Eo '\b[0-9]{1,3}(\.[0-9]{1,3}){3}\b' "$WORK/doc.sh" | grep -v '^127\.' | sort -u)" && [ -n "$other" ]; then
  echo "deploy-check: the generated script names addresses outside loopback: $other" >&2
  exit 1
fi

# Stand-ins and the prelude every block runs with.
go build -o "$WORK/standins/kafkastandin" ./internal/testkit/kafkastandin
ln -s kafkastandin "$WORK/standins/kafka-topics.sh"
cat > "$WORK/prelude.sh" <<EOF
export PATH="$ROOT/usr/local/bin:$WORK/standins:\$PATH"
WORK='$WORK'
ROOT='$ROOT'
EOF
cat >> "$WORK/prelude.sh" <<'EOF'
# unit_field FILE KEY: the value of KEY= in a unit file, paths rewritten.
unit_field() {
  sed -n "s/^$2=//p" "$1" | tail -n 1 |
    sed -E "s#(^|[[:space:]\"'=:(,>])/(etc|usr/local|var/lib|run)/#\1$ROOT/\2/#g"
}
unit_file() {
  local tmpl="${1%%@*}@.service"
  [ "$tmpl" = "$1@.service" ] && tmpl="$1.service"
  echo "$ROOT/etc/systemd/system/$tmpl"
}
unit_start() {
  local unit="$1" file inst exec envfile
  file="$(unit_file "$unit")"
  [ -f "$file" ] || { echo "systemctl: no unit file $file" >&2; return 1; }
  inst="${unit#*@}"
  exec="$(unit_field "$file" ExecStart)"; exec="${exec//%i/$inst}"
  envfile="$(unit_field "$file" EnvironmentFile)"; envfile="${envfile//%i/$inst}"
  if [ -f "$WORK/pids/$unit" ] && kill -0 "$(cat "$WORK/pids/$unit")" 2>/dev/null; then
    return 0 # already running, as systemctl start
  fi
  (
    set +u
    set -a
    if [ -n "$envfile" ]; then . "${envfile#-}"; fi
    set +a
    eval "exec $exec"
  ) >>"$WORK/logs/$unit.log" 2>&1 </dev/null &
  echo $! > "$WORK/pids/$unit"
  echo "$unit" >> "$WORK/started"
  echo "systemctl: started $unit (pid $!)"
}
unit_stop() {
  local unit="$1" file pid sig timeout
  file="$(unit_file "$unit")"
  [ -f "$WORK/pids/$unit" ] || return 0
  pid="$(cat "$WORK/pids/$unit")"
  sig="$(unit_field "$file" KillSignal)"; sig="${sig:-SIGTERM}"
  timeout="$(unit_field "$file" TimeoutStopSec)"; timeout="${timeout:-90}"
  kill -s "${sig#SIG}" "$pid" 2>/dev/null || true
  for _ in $(seq $((timeout * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "systemctl: $unit did not stop within ${timeout}s: killed" >&2
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$WORK/pids/$unit"
    return 1
  fi
  wait "$pid" 2>/dev/null || true
  rm -f "$WORK/pids/$unit"
  echo "systemctl: stopped $unit"
}
# install is the real one; config files it puts under $ROOT/etc/goim get
# their own /etc paths (the secret files they name) moved into $ROOT too.
install() {
  command install "$@"
  local f
  for f in "$ROOT"/etc/goim/*.toml; do
    [ -e "$f" ] && sed -i -E "s#\"/(etc|usr/local|var/lib|run)/#\"$ROOT/\1/#g" "$f"
  done
  return 0
}
systemctl() {
  local cmd="$1"; shift
  case "$cmd" in
    daemon-reload) ;;
    enable)
      [ "${1:-}" = --now ] || { echo "systemctl stand-in: only enable --now" >&2; return 1; }
      shift
      local u; for u in "$@"; do unit_start "$u"; done ;;
    start) local u; for u in "$@"; do unit_start "$u"; done ;;
    stop|disable) local u; for u in "$@"; do unit_stop "$u"; done ;;
    restart) local u; for u in "$@"; do unit_stop "$u"; unit_start "$u"; done ;;
    *) echo "systemctl stand-in: $cmd is not supported" >&2; return 1 ;;
  esac
}
EOF

# Kafka: three brokers on the KAFKA host's address.
kafka_host="$(printf '%s\n' "$HOSTS" | sed -n 's/^KAFKA=\([^:]*\):.*/\1/p')"
"$WORK/standins/kafkastandin" -host "$kafka_host" -ports 9092,9093,9094 >"$WORK/logs/kafka.log" 2>&1 &
kafka_pid=$!
for _ in $(seq 50); do
  grep -q brokers "$WORK/logs/kafka.log" && break
  kill -0 "$kafka_pid" 2>/dev/null || { cat "$WORK/logs/kafka.log" >&2; exit 1; }
  sleep 0.1
done

# The guide's Redis, replica and Sentinel run on 127.0.77.x beside the
# machine's own Redis at 127.0.0.1:6379, which other tests share: the
# guide must never reconfigure it (a replica that does not announce its
# own address is listed by the primary as 127.0.0.1:6379, and Sentinel
# then turns that Redis into a replica). Its role is checked at the end.
shared_role="$(redis-cli -h 127.0.0.1 -p 6379 role 2>/dev/null | head -n 1 || true)"
echo "deploy-check: running $blocks blocks of $DOC (scratch root $ROOT)"
began=$(date +%s)
# A bound on the whole run: a command that waits forever fails the check.
timeout --kill-after=10 "${TIMEOUT:-600}" bash "$WORK/doc.sh" 2>&1 | tee "$WORK/logs/doc.log"
now_role="$(redis-cli -h 127.0.0.1 -p 6379 role 2>/dev/null | head -n 1 || true)"
if [ "$now_role" != "$shared_role" ]; then
  echo "deploy-check: the shared Redis at 127.0.0.1:6379 changed role ($shared_role -> $now_role): the guide reconfigured a Redis it does not own" >&2
  exit 1
fi
echo "deploy-check: ok, $blocks blocks of $DOC in $(( $(date +%s) - began ))s"
