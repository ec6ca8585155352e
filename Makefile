# Blacktree developer targets. Everything runs through the Go toolchain:
# buf and the protoc plugins are pinned tool dependencies in go.mod.
GO        ?= go
BIN       ?= bin
PKGS      ?= ./...
TESTFLAGS ?= -race -count=1 -timeout 30m

.PHONY: services all build generate generate-python check-generated lint breaking vet fmt-check test fuzz ci demo images chaos bench bench-builds clean

all: build

## build: compile the three binaries into ./bin
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## generate: regenerate Go code from proto/ (buf + local plugins)
generate:
	$(GO) tool buf generate

## generate-python: regenerate clients/python/blacktree_gen (Debian protoc + grpc_python_plugin; bash scripts/ensure-tools)
generate-python:
	$(GO) tool buf generate --template buf.gen.python.yaml

## check-generated: fail when the committed generated code (Go and Python) is stale
check-generated: generate generate-python
	@git diff --exit-code -- gen clients/python/blacktree_gen || { echo "generated code is stale: run 'make generate generate-python' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- gen clients/python/blacktree_gen)" || { git status --porcelain -- gen clients/python/blacktree_gen; echo "untracked generated files: run 'make generate generate-python' and commit"; exit 1; }

## lint: buf lint on the proto sources
lint:
	$(GO) tool buf lint

## breaking: buf breaking against the main branch (no-op on main itself)
breaking:
	@if git rev-parse --verify -q main >/dev/null; then $(GO) tool buf breaking --against '.git#branch=main'; else echo "breaking: no main branch to compare against"; fi

## vet: go vet and gofmt
vet:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

## test: the test suite (needs RabbitMQ and a Docker engine; see README).
## The end-to-end suite runs last, from its own directory so that its
## scenario report (detection times, ledgers) is printed.
test: services
	$(GO) test $(TESTFLAGS) $$($(GO) list $(PKGS) | grep -v '/e2e$$')
	cd e2e && $(GO) test $(TESTFLAGS)

## services: start RabbitMQ and a Docker engine and install git/protoc/python
## deps when missing (Debian packages; idempotent, quick when all is there)
services:
	bash scripts/ensure-rabbitmq
	bash scripts/ensure-dockerd
	bash scripts/ensure-tools

## demo: the main job end to end (starts RabbitMQ and Docker when missing)
demo:
	bash scripts/demo

## images: container images blacktree/hub:dev, blacktree/worker:dev and blacktree/btctl:dev from static binaries built here, FROM scratch, offline (IMAGE_PREFIX, IMAGE_TAG; deploy/README.md)
images:
	bash scripts/build-images

## chaos: the chaos test for CHAOS_DURATION (default 15m) with a fresh seed, or CHAOS_SEED to replay one (needs RabbitMQ's packages; docs/design/chaos.md)
CHAOS_DURATION ?= 15m
CHAOS_SEED     ?= $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
chaos: services
	cd e2e && BLACKTREE_CHAOS_SEED=$(CHAOS_SEED) BLACKTREE_CHAOS_DURATION=$(CHAOS_DURATION) $(GO) test -race -count=1 -timeout 60m -run '^TestChaos$$' -v .

## fuzz: run the request-decoding fuzzer for a while
fuzz:
	$(GO) test -run=NONE -fuzz=FuzzDecodeValidate -fuzztime=60s ./internal/jobspec/

## bench: dispatch path vs. raw RabbitMQ, a 10,000-worker fleet, failure detection, log streaming; rewrites docs/BENCHMARKS.md (needs RabbitMQ; a few minutes; BENCHFLAGS adds btbench flags)
bench:
	$(GO) run ./cmd/btbench --out docs/BENCHMARKS.md $(BENCHFLAGS)

## bench-builds: time to image against a hand-run docker build, cache affinity against spread on a fleet of engines (scripts/dockerd-fleet); rewrites docs/BENCHMARKS-builds.md and docs/bench/builds.json (needs root, RabbitMQ, Docker; ~6 min; BENCHFLAGS adds btbench-builds flags)
bench-builds: services
	mkdir -p docs/bench
	$(GO) run ./cmd/btbench-builds --json docs/bench/builds.json --out docs/BENCHMARKS-builds.md $(BENCHFLAGS)

## ci: everything .ci/run checks after starting services
ci: lint breaking check-generated vet test
