#!/usr/bin/env bash
# Checks the dashboard in a real browser (not part of `make test`: it needs
# Chromium and Node.js). Installs Debian's chromium and playwright-core (into
# bin/) when missing, starts `wsgate dev` on spare ports, drives the page
# (scripts/dashboard-check.js) and leaves a screenshot in bin/dashboard.png.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo; $sudo_ apt-get install -y -qq chromium >/dev/null; }
[ -d bin/node_modules/playwright-core ] || npm install --silent --prefix bin playwright-core >/dev/null
make -s build
bin/wsgate dev --listen 127.0.0.1:18480 --admin 127.0.0.1:18481 --log-level warn >bin/dashboard-dev.log 2>&1 &
dev=$!
trap 'kill $dev 2>/dev/null; wait $dev 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18481/healthz >/dev/null && break; sleep 0.1; done
NODE_PATH=bin/node_modules node scripts/dashboard-check.js http://127.0.0.1:18481/ bin/dashboard.png
echo "dashboard: ok (screenshot: bin/dashboard.png)"
