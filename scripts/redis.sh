#!/usr/bin/env bash
# Makes sure a Redis server answers on 127.0.0.1:6379 (REDIS_PORT), the tests' Redis:
# does nothing if one already does, otherwise installs Debian's redis-server
# when it is missing and starts it in the background, keeping nothing on disk.
set -euo pipefail
PORT="${REDIS_PORT:-6379}"

ping() {
  # PING over bash's /dev/tcp, so redis-cli is not needed.
  { exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  local reply
  IFS= read -r -t 2 reply <&3 || reply=""
  exec 3<&- 3>&-
  [[ "$reply" == "+PONG"* ]]
}

if ping; then
  echo "redis: answering on 127.0.0.1:$PORT"
  exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis: installing redis-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
echo "redis: starting redis-server on 127.0.0.1:$PORT"
redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no \
  --dir /tmp --logfile /tmp/goim-redis-$PORT.log
for _ in $(seq 1 50); do
  ping && { echo "redis: up"; exit 0; }
  sleep 0.1
done
echo "redis: did not answer on 127.0.0.1:$PORT; see /tmp/goim-redis-$PORT.log" >&2
exit 1
