#!/bin/bash
# gcpercent-ab.sh: the gateway's CPU per 1,000 handshakes at GOGC 100, 50
# and 25, alternating, 3 rounds; a fresh gateway per run (one loop,
# GOMAXPROCS=1) in front of 3 static backends, `wsgate bench --scenario
# connect --conns 10000` against it. Ports 19301-19303, 19400 and 19411 must
# be free. Figures: docs/BENCHMARKS.md ("What a lower GOGC costs").
# Usage: make build && scripts/gcpercent-ab.sh
set -u
cd "$(dirname "$0")/.."
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
for i in 1 2 3; do
	bin/wsgate backend --id b$i --listen 127.0.0.1:1930$i --admin - 2>/dev/null &
	pids+=($!)
done
for i in 1 2 3; do
	for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/1930$i) 2>/dev/null && break; sleep 0.1; done
done
for r in 1 2 3; do
	for g in 100 50 25; do
		GOGC=$g GOMAXPROCS=1 bin/wsgate gateway --id gw --listen 127.0.0.1:19400 --loops 1 --admin 127.0.0.1:19411 \
			--backend b1=127.0.0.1:19301 --backend b2=127.0.0.1:19302 --backend b3=127.0.0.1:19303 2>/dev/null &
		gw=$!
		for _ in $(seq 1 50); do curl -sf 127.0.0.1:19411/readyz >/dev/null && break; sleep 0.1; done
		echo "GOGC=$g round $r: $(bin/wsgate bench --addr 127.0.0.1:19400 --pids $gw --scenario connect --conns 10000 --quiet 2>/dev/null | grep '^| 127' | tail -1)"
		kill $gw
		wait $gw 2>/dev/null
	done
done
