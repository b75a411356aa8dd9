#!/bin/sh
# `make compare`: wsgate, nginx and HAProxy in front of the same demo
# backends, same scenarios, alternating rounds (docs/BENCHMARKS.md).
# Then the wsgate-only scenarios: broadcast and push at 18,000 clients, the
# TLS round (every target terminating TLS), and rebalance against a dev
# cluster (it needs POST /api/nodes).
# Sizes and rounds can be overridden: ROUNDS=1 ECHO_CONNS=2000 make compare.
set -e
BIN=${BIN:-bin/wsgate}
OUT=${OUT:-bin/bench-results}
ROUNDS=${ROUNDS:-3}
ECHO_CONNS=${ECHO_CONNS:-10000}
IDLE_CONNS=${IDLE_CONNS:-18000}
TLS_CONNS=${TLS_CONNS:-5000}
DURATION=${DURATION:-10s}

scripts/peers.sh
# 1. connect and echo: 10,000 connections, 64-byte messages.
$BIN bench compare --out "$OUT/echo" --rounds "$ROUNDS" --conns "$ECHO_CONNS" \
	--scenarios connect,echo --wsgate-scenarios "" --size 64 --duration "$DURATION" --quiet
# 2. idle memory (all targets) and broadcast/push (wsgate): 18,000 connections.
$BIN bench compare --out "$OUT/idle" --rounds "$ROUNDS" --conns "$IDLE_CONNS" \
	--scenarios idle --wsgate-scenarios broadcast,push --duration 5s --quiet
# 2b. the TLS round: one self-signed ECDSA P-256 certificate for every target,
# the client dials wss:// and verifies it, every connection a full handshake.
$BIN bench compare --tls --out "$OUT/tls" --rounds "$ROUNDS" --conns "$TLS_CONNS" \
	--scenarios connect,echo,idle --wsgate-scenarios "" --size 64 --duration "$DURATION" --quiet
# 3. rebalance: 18,000 clients on a 3-backend dev cluster, add then remove a node.
$BIN dev --listen 127.0.0.1:0 --admin 127.0.0.1:18181 --backends 3 --log-level warn >"$OUT/dev.log" 2>&1 &
dev=$!
trap 'kill $dev 2>/dev/null; wait $dev 2>/dev/null' EXIT
i=0
until addr=$(curl -sf http://127.0.0.1:18181/api/nodes >/dev/null && sed -n 's#.*WebSocket: *ws://\([^/]*\)/.*#\1#p' "$OUT/dev.log") && [ -n "$addr" ]; do
	i=$((i+1)); [ $i -gt 100 ] && { echo "dev cluster did not start"; exit 1; }
	sleep 0.1
done
$BIN bench --addr "$addr" --admin 127.0.0.1:18181 --name wsgate-dev --scenario rebalance \
	--conns "$IDLE_CONNS" --out "$OUT/rebalance" --quiet
# 4. plain WebSocket upstreams: wsgate --upstream against nginx and HAProxy on
# the same plain servers (8,000 idle: each proxy holds two sockets per client).
$BIN bench compare --targets passthrough,nginx,haproxy --out "$OUT/passthrough" --rounds "$ROUNDS" \
	--conns "${PASS_CONNS:-5000}" --scenarios connect,echo --wsgate-scenarios "" --size 64 --duration "$DURATION" --quiet
$BIN bench compare --targets passthrough,nginx,haproxy --out "$OUT/passthrough-idle" --rounds "$ROUNDS" \
	--conns "${PASS_IDLE_CONNS:-8000}" --scenarios idle --wsgate-scenarios "" --duration 5s --quiet
