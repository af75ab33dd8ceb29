# goim: the contract for building, testing and checking. CI runs `make test`,
# `make e2e-scale`, `make deploy-check`, `make proto-check`, `make lint` and
# `make monitoring-check` (see .ci/run).

GO           ?= go
BIN          := bin
TOOLS        := $(CURDIR)/.tools
STATICCHECK_VERSION := v0.8.2
FUZZTIME     ?= 30s
# package:target pairs
FUZZ_TARGETS := ./api/protocol:FuzzReadTCP ./api/protocol:FuzzWSMessage ./api/protocol:FuzzAuthBody \
                ./internal/logic:FuzzAuthenticate ./internal/logic/httpapi:FuzzQuery ./internal/logic/httpapi:FuzzList \
                ./internal/comet:FuzzRoomGrant ./internal/logic/httpapi:FuzzTokenList ./api/protocol:FuzzRoomID \
                ./internal/secret:FuzzLines ./internal/rpcauth:FuzzValid ./api/protocol:FuzzKey \
                ./internal/conf:FuzzApplyEnv ./api/protocol:FuzzEnvelope
BENCH        ?= .
BENCHTIME    ?= 1s

.PHONY: all build run test e2e e2e-scale deploy-check lint bench fuzz proto proto-check monitoring-check clean

all: build

## build: every command under cmd/ into bin/
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

## run: the whole cluster in one process on loopback (embedded Kafka, Redis, discovery; Ctrl-C stops it)
run:
	$(GO) run ./cmd/goim -conf configs/goim.toml

## test: vet, then every test with the race detector (fuzz seed corpora included)
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

## e2e: the end-to-end suite alone (logic, job, two comets as processes; also part of test)
e2e:
	$(GO) test -race -count=1 -v ./internal/e2e/

## e2e-scale: the scale-out scenarios alone (2 logic, 2 job, 3 comets: pushes through job rebalances
## and a logic outage; 10,000 clients reconnecting after kill -9 of their comet); about 30 s, not in test
e2e-scale:
	GOIM_E2E_SCALE=1 $(GO) test -race -count=1 -v -run '^TestScaleOut$$' ./internal/e2e/

## deploy-check: run every shell block of docs/deploy.md on loopback (a whole cluster from nothing)
deploy-check:
	scripts/deploy-check.sh

## lint: formatting, vet, staticcheck, and no fmt/log printing outside cmd/
lint: $(TOOLS)/staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS)/staticcheck ./...
	@out=$$(git grep -nE '\b(fmt|log)\.Print' -- '*.go' ':!cmd/' ':!*_test.go' ':!*.pb.go'); \
		if [ -n "$$out" ]; then echo "printing outside cmd/ (inject a *slog.Logger):"; echo "$$out"; exit 1; fi

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## bench: benchmarks with allocation counts (BENCH=regexp, BENCHTIME=1s)
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) ./...

## fuzz: each fuzz target for FUZZTIME (default 30s)
fuzz:
	@for pt in $(FUZZ_TARGETS); do \
		p=$${pt%%:*}; t=$${pt##*:}; \
		echo "== $$p $$t ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
	done

## proto: regenerate the Go code of api/**/*.proto (protoc 3.21.12 from Debian)
proto:
	scripts/proto.sh

## proto-check: fail when committed generated code differs from its .proto
proto-check:
	scripts/proto.sh --check

## monitoring-check: promtool on docs/monitoring (the alert rules, their unit tests, the dashboard's
## queries) and the test that every metric they name exists (promtool: Debian's prometheus package)
monitoring-check:
	promtool check rules docs/monitoring/alerts.yml
	promtool test rules docs/monitoring/alerts_test.yml
	GOIM_REQUIRE_PROMTOOL=1 $(GO) test -count=1 ./internal/monitoring/

## clean: remove build outputs and installed tools
clean:
	rm -rf $(BIN) $(TOOLS)
