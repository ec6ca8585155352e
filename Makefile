# Blacktree developer targets. Everything runs through the Go toolchain:
# buf and the protoc plugins are pinned tool dependencies in go.mod.
GO        ?= go
BIN       ?= bin
PKGS      ?= ./...
TESTFLAGS ?= -race -count=1 -timeout 30m

.PHONY: all build generate check-generated lint breaking vet fmt-check test fuzz ci demo bench clean

all: build

## build: compile the three binaries into ./bin
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## generate: regenerate Go code from proto/ (buf + local plugins)
generate:
	$(GO) tool buf generate

## check-generated: fail when the committed generated code is stale
check-generated: generate
	@git diff --exit-code -- gen || { echo "generated code is stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- gen)" || { git status --porcelain -- gen; echo "untracked generated files: run 'make generate' and commit"; exit 1; }

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

## test: the test suite (needs RabbitMQ and a Docker engine; see README)
test:
	$(GO) test $(TESTFLAGS) $(PKGS)

## fuzz: run the request-decoding fuzzer for a while
fuzz:
	$(GO) test -run=NONE -fuzz=FuzzDecodeValidate -fuzztime=60s ./internal/jobspec/

## ci: everything .ci/run checks after starting services
ci: lint breaking check-generated vet test
