# wsgate — see README.md. `make run` starts a dev cluster, `make test` runs every test.
GO      ?= go
BIN     := bin/wsgate
PKGS    := ./...

.PHONY: build run test bench lint fuzz clean compare up down dashboard-check chaos scale million chaos

build:
	$(GO) build -trimpath -buildvcs=auto -o $(BIN) ./cmd/wsgate

run: build
	./$(BIN) dev

# The README's test command; .ci/run calls exactly this. It starts (and if
# needed installs) Redis and RabbitMQ, which the cluster tests use for real.
test: lint
	scripts/services.sh
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	cd third_party/gnet && $(GO) test -race -count=1 .

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# wsgate side by side with nginx and HAProxy (installed from Debian's packages
# when missing), then broadcast, push and rebalance; see docs/BENCHMARKS.md.
compare: build
	scripts/compare.sh

# The chaos suite at full size (cmd/wsgate/chaos_test.go; `make test` runs
# it small): kill -9 a backend and a gateway, Redis and RabbitMQ outages,
# SIGSTOP, a 10-minute soak with churn. The figures (expected, measured,
# pass/fail) go to $(CHAOS_OUT); docs/BENCHMARKS.md "Reliability" quotes them.
CHAOS_OUT ?= bin/chaos.md
chaos:
	scripts/services.sh
	mkdir -p $(dir $(CHAOS_OUT))
	rm -f $(CHAOS_OUT)
	@status=0; WSGATE_CHAOS_SCALE=full WSGATE_CHAOS_OUT=$(abspath $(CHAOS_OUT)) \
	  $(GO) test -count=1 -timeout 40m -run TestChaos -v ./cmd/wsgate || status=$$?; \
	  echo; cat $(CHAOS_OUT); exit $$status

# Short fuzzing pass over every decoder (FUZZTIME per target).
FUZZTIME ?= 20s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

# A cluster sized for N connections (ceil(N/18000) gateways on one port,
# cluster mode) and the bench against it (`wsgate bench scale`); figures in
# bin/scale-N/scale.md and bin/scale-N.json. Not part of `test`.
# `make million` is N = 1,000,000 (on this 2-core machine all 1,000,000
# connected in 282-310 s; docs/BENCHMARKS.md, "The million held").
N ?= 100000
scale: build
	scripts/services.sh
	bin/wsgate bench scale --conns $(N) --json bin/scale-$(N).json

million: build
	scripts/services.sh
	bin/wsgate bench scale --conns 1000000 --ping-interval 2m --keepalive 60s --handshake-timeout 60s --connect-rate 4500 --json bin/scale-1000000.json

# The docker compose cluster (deploy/docker-compose.yml): Redis, RabbitMQ,
# two gateways and BACKENDS demo backends. Needs a Docker engine.
BACKENDS ?= 3
COMPOSE  ?= docker compose
up:
	$(COMPOSE) -f deploy/docker-compose.yml up -d --build --scale backend=$(BACKENDS)

down:
	$(COMPOSE) -f deploy/docker-compose.yml down

# The console in headless Chromium alone (it also runs in `test`), on free
# ports, leaving a screenshot in bin/console.png.
dashboard-check:
	scripts/services.sh
	mkdir -p bin
	WSGATE_CONSOLE_SCREENSHOT=$(CURDIR)/bin/console.png $(GO) test -count=1 -run TestConsoleInBrowser -v ./gateway

clean:
	rm -rf bin
