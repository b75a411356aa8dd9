#!/bin/bash
# gcpercent-ab.sh: what the collector's target (GOGC 100, 50, 25) costs a
# gateway under churn, alternating, 3 rounds; a fresh gateway per run (one
# loop, GOMAXPROCS=1) in front of 3 static backends.
#
# HOLD=0 (the default): `wsgate bench --scenario connect --conns $CONNS`
# (default 10,000) against an empty gateway; prints the gateway's CPU per
# 1,000 handshakes.
# HOLD=15000 CONNS=3500: a full gateway: HOLD idle clients are connected and
# held first (their memory per connection is printed), then CONNS clients
# connect and leave, twice, while they stay.
#
# Ports 19301-19303, 19400 and 19411 must be free. Figures:
# docs/BENCHMARKS.md ("What a lower GOGC costs").
# Usage: make build && [HOLD=15000 CONNS=3500] scripts/gcpercent-ab.sh
set -u
cd "$(dirname "$0")/.."
HOLD=${HOLD:-0}
CONNS=${CONNS:-10000}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
for i in 1 2 3; do
	bin/wsgate backend --id b$i --listen 127.0.0.1:1930$i --admin - 2>/dev/null &
	pids+=($!)
done
for i in 1 2 3; do
	for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/1930$i) 2>/dev/null && break; sleep 0.1; done
done
clients() { curl -s 127.0.0.1:19411/api/info | sed -n 's/.*"clients":\([0-9]*\).*/\1/p'; }
churn() {
	bin/wsgate bench --addr 127.0.0.1:19400 --pids "$1" --scenario connect --conns "$CONNS" --key-prefix "churn-" \
		--procs 1 --quiet 2>/dev/null | grep '^| 127' | tail -1
}
for r in 1 2 3; do
	for g in 100 50 25; do
		GOGC=$g GOMAXPROCS=1 bin/wsgate gateway --id gw --listen 127.0.0.1:19400 --loops 1 --admin 127.0.0.1:19411 \
			--max-conns 19000 --backend b1=127.0.0.1:19301 --backend b2=127.0.0.1:19302 --backend b3=127.0.0.1:19303 2>/dev/null &
		gw=$!
		for _ in $(seq 1 50); do curl -sf 127.0.0.1:19411/readyz >/dev/null && break; sleep 0.1; done
		if [ "$HOLD" -eq 0 ]; then
			echo "GOGC=$g round $r: $(churn $gw)"
		else
			hold=$(mktemp)
			bin/wsgate bench --addr 127.0.0.1:19400 --pids $gw --scenario idle --conns "$HOLD" --procs 1 \
				--duration 40s --quiet >"$hold" 2>&1 &
			hp=$!
			for _ in $(seq 1 600); do [ "$(clients)" = "$HOLD" ] && break; sleep 0.1; done
			sleep 5 # past the hold's memory sample (2 s after its last welcome)
			echo "GOGC=$g round $r: churn $(churn $gw)"
			echo "GOGC=$g round $r: churn $(churn $gw)"
			wait $hp
			echo "GOGC=$g round $r: hold $(grep '^| 127' "$hold" | tail -1)"
			rm -f "$hold"
		fi
		kill $gw
		wait $gw 2>/dev/null
	done
done
