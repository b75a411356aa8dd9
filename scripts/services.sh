#!/usr/bin/env bash
# Makes sure the services the tests use are up on this machine:
#   Redis     127.0.0.1:6379
#   RabbitMQ  127.0.0.1:5672 (guest/guest)
# and that Debian's chromium (the console's browser test) and promtool (the
# metrics lint) are installed.
# Installs them from Debian's packages when missing, starts them when
# stopped, and waits until both accept connections. Idempotent.
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
# The console's browser test (gateway/console_browser_test.go) drives it.
command -v chromium >/dev/null || missing+=(chromium)
# promtool (Debian's prometheus package) lints the /metrics pages in a test.
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "services: installing ${missing[*]} from Debian's packages"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! listening 6379; then
  echo "services: starting redis-server"
  dir=/var/lib/redis; log=/var/log/redis/ci.log
  [ -w "$dir" ] || { dir=$(mktemp -d); log=$dir/redis.log; }
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir "$dir" --logfile "$log"
fi
if ! listening 5672; then
  echo "services: starting rabbitmq-server"
  sudo_ rabbitmq-server -detached
fi

for i in $(seq 1 120); do
  if listening 6379 && listening 5672; then
    exit 0
  fi
  sleep 0.5
done
echo "services: Redis (6379) or RabbitMQ (5672) did not come up within 60s" >&2
exit 1
