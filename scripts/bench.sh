#!/usr/bin/env bash
# Full-path benchmarks: a goim cluster as separate processes on loopback,
# loaded by goim-bench client and push processes, with each service's CPU
# seconds (utime+stime from /proc over the measured window) and RSS.
#
#   scripts/bench.sh idle       RSS per idle authenticated connection, and after they all leave
#   scripts/bench.sh room       one room, pushes at a rate: delivered, push->receive latency, deliveries per comet CPU-second
#   scripts/bench.sh unicast    mids pushes at a rate, one connection per user: push->receive latency
#   scripts/bench.sh flood      closed-loop HTTP push flood: accepts per logic CPU-second, share delivered
#   scripts/bench.sh connect    connection bursts: handshakes (and disconnects) per comet and per logic CPU-second
#
# Knobs (environment): CLIENTS (connections), TRANSPORT (tcp|ws, and sse for
# idle: Server-Sent Events streams on the comet's WebSocket port), RATE
# (pushes/s), DURATION (push phase, seconds), CONCURRENCY (pusher), COMETS (comet
# processes, 127.0.0.11 and up), PER_PROC (connections per client process,
# at most ~19,000: the per-process open-file limit), ROOMS (flood: rooms the
# clients spread over), KIND (flood: room|mids|keys), BURSTS (connect),
# REDIS (a real Redis, default 127.0.0.1:6379), LINGER (job's [room] linger,
# e.g. 0 or 50ms; unset: job's default), PACE (comet's [bucket]
# room_linger_factor, e.g. 0; unset: comet's default), URING (comet's
# [bucket] io_uring, true or false; unset: comet's default), AUTH (insecure: goim v2's
# plain JSON, the default; jwt: HS256 tokens logic verifies, each with a
# rooms claim of its connection's room; logic then chooses the keys, so not
# with KIND=keys), OUT (results directory),
# PROFILE=1 (CPU profiles: the client processes' into OUT, and 10 s of each
# service's from its admin listener in the middle of the push phase),
# RELIABLE=1 (every client opts in to reliable delivery: goim-bench conns
# -reliable, pushes in op-18 envelopes, acks in op-19 frames; a duplicate
# or a gap in a stream fails the run; not with TRANSPORT=sse), STREAMS
# (on|off: logic's [stream] enabled; unset: logic's default), ROOM_STREAM=1
# (logic's [stream] rooms = ["live://*"]: every benchmark room is
# recoverable, each room push appended to its Redis stream; needs streams
# on), LOGICS (1 or 2 logic processes; with 2, each stream's pushes go to
# them in turn, so both push to one room concurrently; their CPU is
# summed as logic's).
#
# CPU seconds are printed for infra, logic, job, the comets, the clients
# and the Redis server (the process listening on REDIS's port, when this
# machine runs it and /proc shows it; else "not measured"), and, for the
# push scenarios, per accepted push. Redis may serve others too: its
# figure counts whatever they asked of it meanwhile.
#
# The processes: goim -infra-only (embedded Kafka-protocol broker kfake and
# bilibili/discovery's server), the real Redis, logic, job, COMETS comets,
# and ceil(CLIENTS/PER_PROC) goim-bench conns processes plus one push
# process, all on this machine's 2 cores. Every figure printed comes from
# goim-bench's JSON summaries and /proc; the run's files stay in OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario="${1:-}"
case "$scenario" in
  idle|room|unicast|flood|connect) ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac

CLIENTS="${CLIENTS:-}"
TRANSPORT="${TRANSPORT:-tcp}"
case "$TRANSPORT/$scenario" in
  tcp/*|ws/*|sse/idle) ;;
  *) echo "TRANSPORT=$TRANSPORT: want tcp or ws (or sse for idle)" >&2; exit 2 ;;
esac
SECONDS_="${DURATION:-30}"
CONCURRENCY="${CONCURRENCY:-50}"
COMETS="${COMETS:-1}"
PER_PROC="${PER_PROC:-5000}"
ROOMS="${ROOMS:-100}"
KIND="${KIND:-room}"
BURSTS="${BURSTS:-3}"
REDIS="${REDIS:-127.0.0.1:6379}"
AUTH="${AUTH:-insecure}"
RELIABLE="${RELIABLE:-}"
STREAMS="${STREAMS:-}"
ROOM_STREAM="${ROOM_STREAM:-}"
LOGICS="${LOGICS:-1}"
case "$LOGICS" in
  1|2) ;;
  *) echo "LOGICS=$LOGICS: want 1 or 2" >&2; exit 2 ;;
esac
case "$RELIABLE" in
  ''|0) RELIABLE= ;;
  1) [ "$TRANSPORT" != sse ] || { echo "RELIABLE=1: SSE connections get no envelopes" >&2; exit 2; } ;;
  *) echo "RELIABLE=$RELIABLE: want 1 or unset" >&2; exit 2 ;;
esac
case "$STREAMS" in
  ''|on|off) ;;
  *) echo "STREAMS=$STREAMS: want on or off (unset: logic's default)" >&2; exit 2 ;;
esac
case "$ROOM_STREAM" in
  ''|0) ROOM_STREAM= ;;
  1) [ "$STREAMS" != off ] || { echo "ROOM_STREAM=1 needs streams on (STREAMS=on or unset)" >&2; exit 2; } ;;
  *) echo "ROOM_STREAM=$ROOM_STREAM: want 1 or unset" >&2; exit 2 ;;
esac
# The reliable knobs as the BENCH lines show them (nothing when unset).
rel_tag=""
[ -z "$RELIABLE$STREAMS$ROOM_STREAM" ] || rel_tag="reliable=${RELIABLE:-0} streams=${STREAMS:-default} room_stream=${ROOM_STREAM:-0}"
[ "$LOGICS" = 1 ] || rel_tag="$rel_tag logics=$LOGICS"
run_id="$(date +%s)-$$"
OUT="${OUT:-/tmp/goim-bench}/$scenario-$run_id"
BIN="${OUT%/*}/bin"
mkdir -p "$OUT" "$BIN"

echo "== bench $scenario: results in $OUT"
go build -o "$BIN/" ./cmd/goim ./cmd/logic ./cmd/job ./cmd/comet ./cmd/goim-bench

ulimit -n 20000 2>/dev/null || true
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

die() { echo "bench: $*" >&2; exit 1; }

# cpu PID: utime+stime of PID in clock ticks.
cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
TICK="$(getconf CLK_TCK)"
# rss PID: resident set in KiB.
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# secs TICKS: ticks as seconds.
secs() { awk -v t="$1" -v k="$TICK" 'BEGIN { printf "%.2f", t / k }'; }
# div A B: A/B with one decimal, or "-" when B is 0.
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.1f", a / b }'; }

# metric ADMIN NAME: the sum of every series of NAME on an admin listener.
metric() {
  curl -fsS -m 5 "http://$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
# gc ADMIN: a forced garbage collection (the heap profile endpoint runs one).
gc() { curl -fsS -m 10 -o /dev/null "http://$1/debug/pprof/heap?gc=1"; }

# ready ADMIN PID NAME: wait until /readyz answers 200.
ready() {
  for _ in $(seq 300); do
    kill -0 "$2" 2>/dev/null || die "$3 exited: $(tail -5 "$OUT/$3.log")"
    if curl -fsS -m 2 -o /dev/null "http://$1/readyz" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "$3 not ready after 30 s: $(curl -sS -m 2 "http://$1/readyz"; tail -5 "$OUT/$3.log")"
}

# start NAME CMD...: start a service in the background, logging to OUT.
start() {
  local name="$1"; shift
  "$@" >"$OUT/$name.log" 2>&1 &
  pids+=("$!")
  eval "pid_${name//-/_}=$!"
}

# --- the cluster -----------------------------------------------------------
env="bench-$run_id"
topic="goim-push-bench-$run_id"
disc='[discovery]
nodes = ["127.0.0.1:17171"]
env = "'"$env"'"
poll_timeout = "5s"
fetch_interval = "1s"'

cat >"$OUT/infra.toml" <<EOF
[kafka]
port = 19092
partitions = 4
[discovery]
listen = "127.0.0.1:17171"
[logic.auth]
insecure = true
[logic.kafka]
topic = "$topic"
EOF
start infra "$BIN/goim" -infra-only -conf "$OUT/infra.toml" -redis "$REDIS"
for _ in $(seq 100); do
  curl -fsS -m 2 -o /dev/null "http://127.0.0.1:17171/discovery/fetch?appid=x&env=$env&status=1" 2>/dev/null && break
  sleep 0.1
done

# The internal gRPC secret every service reads (the services are run as in
# production: calls between them carry it).
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$OUT/rpc.secret"
rpc_secret="secret_file = \"$OUT/rpc.secret\""

case "$AUTH" in
  insecure) auth_conf="insecure = true"; auth_args=() ;;
  jwt)
    [ "$KIND" != keys ] || die "AUTH=jwt: logic chooses the keys, so KIND=keys cannot name them"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$OUT/hmac.key"
    auth_conf="hmac_key_file = \"$OUT/hmac.key\""; auth_args=(-hmac-key-file "$OUT/hmac.key") ;;
  *) die "AUTH $AUTH: want insecure or jwt" ;;
esac
# The push API's bearer token: logic reads it from tokens_file, the push
# process from -token-file (never on a command line).
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$OUT/http-token"
chmod 600 "$OUT/http-token"
push_auth=(-token-file "$OUT/http-token")
cat >"$OUT/logic.toml" <<EOF
host = "logic-bench"
[http]
bind = "127.0.0.1:13111"
tokens_file = "$OUT/http-token"
[rpc]
bind = "127.0.0.1:13119"
$rpc_secret
[auth]
$auth_conf
[node]
tcp_port = 13101
ws_port = 13102
[redis]
addr = "$REDIS"
prefix = "bench:$run_id:"
[kafka]
brokers = ["127.0.0.1:19092"]
topic = "$topic"
[admin]
addr = "127.0.0.1:13112"
$disc
EOF
if [ -n "$STREAMS$ROOM_STREAM" ]; then
  echo "[stream]" >>"$OUT/logic.toml"
  case "$STREAMS" in
    on) echo "enabled = true" >>"$OUT/logic.toml" ;;
    off) echo "enabled = false" >>"$OUT/logic.toml" ;;
  esac
  # Every room of the scenarios below is live://...
  [ -z "$ROOM_STREAM" ] || echo 'rooms = ["live://*"]' >>"$OUT/logic.toml"
fi
start logic "$BIN/logic" -conf "$OUT/logic.toml"
ready 127.0.0.1:13112 "$pid_logic" logic
push_api="http://127.0.0.1:13111"
logic_rpc='"127.0.0.1:13119"'
if [ "$LOGICS" = 2 ]; then
  # The second logic: the same config on ports 1312x.
  sed -e 's/^host = "logic-bench"/host = "logic-bench-2"/' -e 's/127\.0\.0\.1:1311\([129]\)/127.0.0.1:1312\1/' \
    "$OUT/logic.toml" >"$OUT/logic-2.toml"
  start logic-2 "$BIN/logic" -conf "$OUT/logic-2.toml"
  ready 127.0.0.1:13122 "$pid_logic_2" logic-2
  push_api="$push_api,http://127.0.0.1:13121"
  logic_rpc="$logic_rpc, \"127.0.0.1:13129\""
fi

comet_ips=()
for i in $(seq "$COMETS"); do
  ip="127.0.0.$((10 + i))"
  comet_ips+=("$ip")
  cat >"$OUT/comet-$i.toml" <<EOF
host = "comet-bench-$i"
[tcp]
bind = ["$ip:13101"]
[websocket]
bind = ["$ip:13102"]
[rpc]
bind = "$ip:13109"
$rpc_secret
[logic]
addrs = [$logic_rpc]
[node]
addrs = ["$ip"]
[admin]
addr = "$ip:13110"
# The load comes from a few loopback addresses, thousands of clients each:
# no per-IP, connection, frame or room limits.
[limits]
max_conns = 0
max_conns_per_ip = 0
auth_rate_per_ip = 0.0
pending_auth_per_ip = 0
frames_per_second = 0
max_rooms = 0
$disc
EOF
  if [ -n "${PACE:-}${URING:-}" ]; then
    echo "[bucket]" >>"$OUT/comet-$i.toml"
    [ -z "${PACE:-}" ] || echo "room_linger_factor = $PACE" >>"$OUT/comet-$i.toml"
    [ -z "${URING:-}" ] || echo "io_uring = $URING" >>"$OUT/comet-$i.toml"
  fi
  start "comet-$i" "$BIN/comet" -conf "$OUT/comet-$i.toml"
  eval "ready $ip:13110 \$pid_comet_$i comet-$i"
done

cat >"$OUT/job.toml" <<EOF
host = "job-bench"
[kafka]
brokers = ["127.0.0.1:19092"]
topic = "$topic"
group = "goim-job-bench-$run_id"
[rpc]
$rpc_secret
[logic]
addrs = [$logic_rpc]
[admin]
addr = "127.0.0.1:13114"
$disc
EOF
if [ -n "${LINGER:-}" ]; then
  printf '[room]\nlinger = "%s"\n' "$LINGER" >>"$OUT/job.toml"
fi
start job "$BIN/job" -conf "$OUT/job.toml"
ready 127.0.0.1:13114 "$pid_job" job
for _ in $(seq 200); do
  [ "$(metric 127.0.0.1:13114 goim_job_comets)" = "$COMETS" ] && break
  sleep 0.1
done
[ "$(metric 127.0.0.1:13114 goim_job_comets)" = "$COMETS" ] || die "job does not see $COMETS comets"
echo "cluster up: logic, job, $COMETS comet(s) at ${comet_ips[*]}, Redis $REDIS, kfake + discovery (infra)"

# The Redis server's pid: the process listening on REDIS's port, when
# REDIS is on this machine and /proc shows it; empty otherwise, and
# redis_why says why.
redis_pid=""
redis_why=""
redis_port="${REDIS##*:}"
case "${REDIS%:*}" in
  127.*|localhost|::1|"[::1]")
    redis_pid="$(ss -ltnpH "sport = :$redis_port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)"
    [ -n "$redis_pid" ] || redis_pid="$(pgrep -f "redis-server .*:$redis_port" 2>/dev/null | head -1 || true)"
    if [ -z "$redis_pid" ]; then
      redis_why="no process found listening on port $redis_port"
    elif ! cpu "$redis_pid" >/dev/null 2>&1; then
      redis_why="/proc/$redis_pid/stat not readable"; redis_pid=""
    fi ;;
  *) redis_why="$REDIS is not on this machine" ;;
esac
if [ -n "$redis_pid" ]; then
  echo "Redis server: pid $redis_pid (its CPU is measured)"
else
  echo "Redis server: CPU not measured ($redis_why)"
fi

# services: name=pid of every service process.
services() {
  echo "infra=$pid_infra logic=$pid_logic job=$pid_job"
  [ "$LOGICS" = 1 ] || echo "logic-2=$pid_logic_2"
  for i in $(seq "$COMETS"); do eval "echo comet-$i=\$pid_comet_$i"; done
}
# snap FILE: every service's CPU ticks, one "name ticks" line each.
snap() {
  {
    services | tr ' ' '\n' | while IFS== read -r n p; do echo "$n $(cpu "$p")"; done
    local t=0
    for p in "${conns_pids[@]}"; do t=$(( t + $(cpu "$p" 2>/dev/null || echo 0) )); done
    echo "clients $t"
    local r
    if [ -n "$redis_pid" ] && r="$(cpu "$redis_pid" 2>/dev/null)"; then echo "redis $r"; fi
  } >"$1"
}
# redissecs A B: the Redis server's CPU seconds between snapshots, or
# nothing when either lacks it.
redissecs() {
  local a b
  a="$(awk '$1 == "redis" { print $2 }' "$1")"
  b="$(awk '$1 == "redis" { print $2 }' "$2")"
  if [ -n "$a" ] && [ -n "$b" ]; then secs "$(( b - a ))"; fi
}
# cpusecs A B NAME: NAME's CPU seconds between snapshots A and B.
cpusecs() { secs "$(( $(awk -v n="$3" '$1 == n { print $2 }' "$2") - $(awk -v n="$3" '$1 == n { print $2 }' "$1") ))"; }
# cometsecs A B: all comets' CPU seconds between snapshots.
cometsecs() {
  local t=0
  for i in $(seq "$COMETS"); do
    t=$(( t + $(awk -v n="comet-$i" '$1 == n { print $2 }' "$2") - $(awk -v n="comet-$i" '$1 == n { print $2 }' "$1") ))
  done
  secs "$t"
}
# logicsecs A B: every logic's CPU seconds between snapshots.
logicsecs() {
  local s
  s="$(cpusecs "$1" "$2" logic)"
  if [ "$LOGICS" = 2 ]; then s="$(awk -v a="$s" -v b="$(cpusecs "$1" "$2" logic-2)" 'BEGIN { printf "%.2f", a + b }')"; fi
  echo "$s"
}
cpu_report() {
  local line="cpu seconds: infra $(cpusecs "$1" "$2" infra) logic $(logicsecs "$1" "$2") job $(cpusecs "$1" "$2" job)"
  line="$line comets $(cometsecs "$1" "$2") clients $(cpusecs "$1" "$2" clients)"
  local r
  r="$(redissecs "$1" "$2")"
  if [ -n "$r" ]; then line="$line; redis CPU s $r"; else line="$line; redis CPU not measured${redis_why:+ ($redis_why)}"; fi
  echo "$line"
}
# usper N SECONDS: SECONDS per N in microseconds, or "-" (no N, or no
# SECONDS: not measured).
usper() { awk -v n="$1" -v s="$2" 'BEGIN { if (n + 0 == 0 || s == "") print "-"; else printf "%.1f", s * 1e6 / n }'; }
# per_push A B: each service's CPU per push logic accepted (push.json).
per_push() {
  local n
  n="$(summary "$OUT/push.json" 's["push"]["accepted"]')"
  echo "cpu us per accepted push ($n): logic $(usper "$n" "$(logicsecs "$1" "$2")") job $(usper "$n" "$(cpusecs "$1" "$2" job)")" \
    "comets $(usper "$n" "$(cometsecs "$1" "$2")") redis $(usper "$n" "$(redissecs "$1" "$2")")"
}
# cpu_fields: the BENCH line's CPU per accepted push (microseconds) over
# the push phase, and Redis's CPU seconds ("-": not measured).
cpu_fields() {
  local n r
  n="$(summary "$OUT/push.json" 's["push"]["accepted"]')"
  r="$(redissecs "$OUT/cpu0" "$OUT/cpu1")"
  echo "logic_us_per_push=$(usper "$n" "$(logicsecs "$OUT/cpu0" "$OUT/cpu1")")" \
    "job_us_per_push=$(usper "$n" "$(cpusecs "$OUT/cpu0" "$OUT/cpu1" job)")" \
    "comet_us_per_push=$(usper "$n" "$(cometsecs "$OUT/cpu0" "$OUT/cpu1")")" \
    "redis_cpu_s=${r:--} redis_us_per_push=$(usper "$n" "$r")"
}
# reliable_fields: with RELIABLE, the BENCH line's reliable counts over
# every stream: messages, duplicates, gaps, ids acked.
reliable_fields() {
  [ -n "$RELIABLE" ] || return 0
  python3 - "$OUT/merge.json" <<'PY'
import json, sys
r = (json.load(open(sys.argv[1])).get("conns") or {}).get("reliable") or {}
st = (r.get("streams") or {}).values()
print("rel_msgs=%d rel_dups=%d rel_gaps=%d rel_acked=%d" % (sum(v["messages"] for v in st), sum(v["duplicates"] for v in st),
      sum(v["gaps"] for v in st), r.get("acked_ids", 0)))
PY
}
# conn_total: open connections over every comet.
conn_total() {
  local t=0
  for ip in "${comet_ips[@]}"; do t=$(( t + $(metric "$ip:13110" goim_comet_connections) )); done
  echo "$t"
}
# wait_conns N SECONDS: wait until the comets hold N connections.
wait_conns() {
  for _ in $(seq $(( $2 * 10 ))); do
    [ "$(conn_total)" -ge "$1" ] && return 0
    sleep 0.1
  done
  die "$(conn_total) connections after $2 s, want $1"
}
addrs() {
  local a=() port=13101
  [ "$TRANSPORT" != tcp ] && port=13102 # ws, and sse on the WebSocket listener
  for ip in "${comet_ips[@]}"; do a+=("$ip:$port"); done
  (IFS=,; echo "${a[*]}")
}

# conns_start N HOLD ARGS...: ceil(N/PER_PROC) conns processes for HOLD,
# each from its own source addresses (127.0.1.x, 127.0.2.x, ...).
conns_files=()
conns_pids=()
conns_start() {
  local n="$1" hold="$2"; shift 2
  local procs=$(( (n + PER_PROC - 1) / PER_PROC )) first=0
  for k in $(seq "$procs"); do
    local m=$(( n - first < PER_PROC ? n - first : PER_PROC ))
    local f="$OUT/conns-$k.json" prof=()
    [ -n "${PROFILE:-}" ] && prof=(-cpuprofile "$OUT/conns-$k.prof")
    [ -z "$RELIABLE" ] || prof+=(-reliable)
    "$BIN/goim-bench" conns "${prof[@]}" -q -run "$run_id" -transport "$TRANSPORT" -addrs "$(addrs)" \
      -src "127.0.$k.1-127.0.$k.8" -n "$m" -first "$first" -duration "$hold" -json "$f" "${auth_args[@]}" "$@" \
      >"$OUT/conns-$k.txt" 2>"$OUT/conns-$k.log" &
    conns_pids+=("$!"); pids+=("$!"); conns_files+=("$f")
    first=$(( first + m ))
  done
}
conns_wait() { for p in "${conns_pids[@]}"; do wait "$p" || true; done; conns_pids=(); }
# profiles: with PROFILE set, 10 s CPU profiles of logic, job and comet-1
# from their admin listeners, starting 3 s from now (in the background).
profiles() {
  [ -n "${PROFILE:-}" ] || return 0
  local a
  for a in logic=127.0.0.1:13112 job=127.0.0.1:13114 comet-1="${comet_ips[0]}:13110"; do
    (sleep 3; curl -fsS -m 30 -o "$OUT/${a%%=*}.prof" "http://${a#*=}/debug/pprof/profile?seconds=10" || true) &
  done
}
# judge: the CPU snapshot at the end of the push phase, then, once the
# conns processes have ended, merge's verdict and the CPU report.
judge() {
  snap "$OUT/cpu1"
  conns_wait
  "$BIN/goim-bench" merge -json "$OUT/merge.json" "${conns_files[@]}" "$OUT/push.json" >"$OUT/merge.txt" 2>&1 || true
  cat "$OUT/merge.txt"
  cpu_report "$OUT/cpu0" "$OUT/cpu1"
  per_push "$OUT/cpu0" "$OUT/cpu1"
}
# comets_metric NAME: NAME summed over every comet (NAME may carry its
# labels, e.g. 'x_total{outcome="read"}').
comets_metric() {
  local t=0 ip
  for ip in "${comet_ips[@]}"; do t=$(( t + $(metric "$ip:13110" "$1") )); done
  echo "$t"
}
# room_stream_fields READS0: with ROOM_STREAM, the BENCH line's counts of
# the comets' room sequencer (gaps filled live, read once per room, passed
# to the members) and of the members' own stream reads since READS0.
room_stream_fields() {
  [ -n "$ROOM_STREAM" ] || return 0
  echo "room_gaps_filled=$(comets_metric 'goim_comet_room_gaps_total{outcome="filled"}')" \
    "room_gaps_read=$(comets_metric 'goim_comet_room_gaps_total{outcome="read"}')" \
    "room_gaps_passed=$(comets_metric 'goim_comet_room_gaps_total{outcome="passed"}')" \
    "member_stream_reads=$(( $(comets_metric goim_comet_stream_fetches_total) - $1 ))"
}
summary() { python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# --- scenarios -------------------------------------------------------------
case "$scenario" in
idle)
  CLIENTS="${CLIENTS:-10000}"
  settle=30
  comet="${comet_ips[0]}:13110"
  sleep 5; gc "$comet"; sleep 1
  rss0=$(rss "$pid_comet_1")
  hold=$(( 75 + CLIENTS / 500 ))
  conns_start "$CLIENTS" "${hold}s" -room live://idle -heartbeat 30s -dial-concurrency 200
  wait_conns "$CLIENTS" "$hold"
  sleep "$settle"; gc "$comet"; sleep 1
  rss1=$(rss "$pid_comet_1")
  conns_wait
  for _ in $(seq 300); do [ "$(conn_total)" = 0 ] && break; sleep 0.1; done
  sleep "$settle"; gc "$comet"; sleep 1
  rss2=$(rss "$pid_comet_1")
  sleep 60; gc "$comet"; sleep 1
  rss3=$(rss "$pid_comet_1")
  echo "comet RSS KiB: idle start $rss0, with $CLIENTS $TRANSPORT connections $rss1, ${settle}s after they left $rss2, $((settle + 60))s after $rss3"
  echo "BENCH idle transport=$TRANSPORT conns=$CLIENTS rss_per_conn_bytes=$(( (rss1 - rss0) * 1024 / CLIENTS )) after_leave_ratio=$(div "$rss2" "$rss0") after_leave_later_ratio=$(div "$rss3" "$rss0")"
  ;;
room)
  CLIENTS="${CLIENTS:-10000}"
  RATE="${RATE:-200}"
  hold=$(( SECONDS_ + 30 + CLIENTS / 500 ))
  conns_start "$CLIENTS" "${hold}s" -room live://1000 -heartbeat 30s -dial-concurrency 200
  wait_conns "$CLIENTS" "$hold"
  sleep 2
  reads0=$(comets_metric goim_comet_stream_fetches_total)
  fanouts0=$(comets_metric goim_comet_room_fanout_batches_count)
  snap "$OUT/cpu0"
  profiles
  "$BIN/goim-bench" push -q -run "$run_id" -api "$push_api" "${push_auth[@]}" -kind room -room live://1000 \
    -rate "$RATE" -duration "${SECONDS_}s" -concurrency "$CONCURRENCY" -json "$OUT/push.json" >"$OUT/push.txt" 2>"$OUT/push.log" || true
  sleep 2
  judge
  received=$(summary "$OUT/merge.json" 's["delivery"]["received"]')
  echo "BENCH room transport=$TRANSPORT clients=$CLIENTS rate=$RATE seconds=$SECONDS_ comets=$COMETS" \
    "delivered_pct=$(summary "$OUT/merge.json" 'round(100*s["delivery"]["delivered_ratio"],3)')" \
    "p50_ms=$(summary "$OUT/merge.json" 's["delivery"]["latency_ms"]["p50"]')" \
    "p99_ms=$(summary "$OUT/merge.json" 's["delivery"]["latency_ms"]["p99"]')" \
    "deliveries_per_comet_cpu_s=$(div "$received" "$(cometsecs "$OUT/cpu0" "$OUT/cpu1")")" \
    "frames_per_read=$(summary "$OUT/merge.json" 's["conns"]["frames_per_read"]')" \
    "room_fanouts=$(( $(comets_metric goim_comet_room_fanout_batches_count) - fanouts0 ))" \
    $(cpu_fields) $(reliable_fields) $(room_stream_fields "$reads0") $rel_tag
  ;;
unicast)
  CLIENTS="${CLIENTS:-1000}"
  RATE="${RATE:-1000}"
  hold=$(( SECONDS_ + 30 + CLIENTS / 500 ))
  conns_start "$CLIENTS" "${hold}s" -room "" -heartbeat 30s
  wait_conns "$CLIENTS" "$hold"
  sleep 2
  snap "$OUT/cpu0"
  profiles
  "$BIN/goim-bench" push -q -run "$run_id" -api "$push_api" "${push_auth[@]}" -kind mids -mids "1-$CLIENTS" \
    -rate "$RATE" -duration "${SECONDS_}s" -concurrency "$CONCURRENCY" -json "$OUT/push.json" >"$OUT/push.txt" 2>"$OUT/push.log" || true
  sleep 2
  judge
  echo "BENCH unicast transport=$TRANSPORT clients=$CLIENTS rate=$RATE seconds=$SECONDS_" \
    "delivered_pct=$(summary "$OUT/merge.json" 'round(100*s["delivery"]["delivered_ratio"],3)')" \
    "p50_ms=$(summary "$OUT/merge.json" 's["delivery"]["latency_ms"]["p50"]')" \
    "p99_ms=$(summary "$OUT/merge.json" 's["delivery"]["latency_ms"]["p99"]')" \
    "p999_ms=$(summary "$OUT/merge.json" 's["delivery"]["latency_ms"]["p999"]')" \
    $(cpu_fields) $(reliable_fields) $rel_tag
  ;;
flood)
  CLIENTS="${CLIENTS:-200}"
  SECONDS_="${DURATION:-20}"
  hold=$(( SECONDS_ + 40 ))
  rooms=$(seq -s, -f 'live://f%g' 1 "$ROOMS")
  case "$KIND" in
    room) conns_start "$CLIENTS" "${hold}s" -room "$rooms" -heartbeat 30s; target=(-room "$rooms") ;;
    mids) conns_start "$CLIENTS" "${hold}s" -room "" -heartbeat 30s; target=(-mids "1-$CLIENTS") ;;
    keys) conns_start "$CLIENTS" "${hold}s" -room "" -heartbeat 30s -key-prefix fk-; target=(-keys "fk-[0-$((CLIENTS - 1))]") ;;
    *) die "KIND $KIND: want room, mids or keys" ;;
  esac
  wait_conns "$CLIENTS" "$hold"
  sleep 2
  snap "$OUT/cpu0"
  profiles
  "$BIN/goim-bench" push -q -run "$run_id" -api "$push_api" "${push_auth[@]}" -kind "$KIND" "${target[@]}" \
    -flood -duration "${SECONDS_}s" -concurrency "$CONCURRENCY" -json "$OUT/push.json" >"$OUT/push.txt" 2>"$OUT/push.log" || true
  judge
  accepted=$(summary "$OUT/push.json" 's["push"]["accepted"]')
  echo "BENCH flood kind=$KIND clients=$CLIENTS concurrency=$CONCURRENCY seconds=$SECONDS_" \
    "accepted=$accepted accepted_per_s=$(summary "$OUT/push.json" 's["push"]["accepted_per_s"]')" \
    "accepts_per_logic_cpu_s=$(div "$accepted" "$(logicsecs "$OUT/cpu0" "$OUT/cpu1")")" \
    "delivered_pct=$(summary "$OUT/merge.json" 'round(100*s["delivery"]["delivered_ratio"],3)')" \
    "lost=$(summary "$OUT/merge.json" 's["delivery"]["lost"]')" \
    $(cpu_fields) $(reliable_fields) $rel_tag
  ;;
connect)
  CLIENTS="${CLIENTS:-5000}"
  for b in $(seq "$BURSTS"); do
    conns_files=()
    snap "$OUT/cpu0-$b"
    start0=$(date +%s%N)
    conns_start "$CLIENTS" 300s -room live://connect -heartbeat 30s -dial-concurrency "${DIAL_CONCURRENCY:-200}"
    wait_conns "$CLIENTS" 120
    snap "$OUT/cpu1-$b"
    wall=$(( ($(date +%s%N) - start0) / 1000000 ))
    for p in "${conns_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    conns_wait
    for _ in $(seq 300); do [ "$(conn_total)" = 0 ] && break; sleep 0.1; done
    # The disconnects: from the last connection up until 3 s after the
    # clients left (the comet's disconnect workers and logic's session
    # deletions are done well within that).
    sleep 3
    snap "$OUT/cpu2-$b"
    cpu_report "$OUT/cpu0-$b" "$OUT/cpu1-$b"
    echo "BENCH connect burst=$b transport=$TRANSPORT auth=$AUTH conns=$CLIENTS wall_ms=$wall" \
      "handshakes_per_comet_cpu_s=$(div "$CLIENTS" "$(cometsecs "$OUT/cpu0-$b" "$OUT/cpu1-$b")")" \
      "handshakes_per_logic_cpu_s=$(div "$CLIENTS" "$(cpusecs "$OUT/cpu0-$b" "$OUT/cpu1-$b" logic)")" \
      "disconnects_per_comet_cpu_s=$(div "$CLIENTS" "$(cometsecs "$OUT/cpu1-$b" "$OUT/cpu2-$b")")" \
      "disconnects_per_logic_cpu_s=$(div "$CLIENTS" "$(cpusecs "$OUT/cpu1-$b" "$OUT/cpu2-$b" logic)")" $rel_tag
  done
  ;;
esac
echo "comet RSS KiB at the end: $(for i in $(seq "$COMETS"); do eval "rss \$pid_comet_$i"; done | tr '\n' ' ')"
