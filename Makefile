# wsgate — see README.md. `make run` starts a dev cluster, `make test` runs every test.
GO      ?= go
BIN     := bin/wsgate
PKGS    := ./...

.PHONY: build run test bench lint fuzz clean

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/wsgate

run: build
	./$(BIN) dev

# The README's test command; .ci/run calls exactly this. It starts (and if
# needed installs) Redis and RabbitMQ, which the cluster tests use for real.
test: lint
	scripts/services.sh
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Short fuzzing pass over every decoder (FUZZTIME per target).
FUZZTIME ?= 20s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin
