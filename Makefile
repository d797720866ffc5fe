# ampy-bus: the two commands a new user needs are `make demo` and `make test`.
GO ?= go
PKGS ?= ./...

.PHONY: demo test chaos fuzz check vet fmt generate proto bench build tools

## demo: a typed publisher and consumer over an embedded JetStream server
demo:
	$(GO) run ./cmd/ampybusctl demo

## test: gofmt'd, generated code is current, vet is clean, every test passes with -race, and every benchmark runs once (so none rots between make bench runs)
test: tools fmt check vet
	$(GO) test -race -count=1 -timeout 15m -bench . -benchtime 1x $(PKGS)

## chaos: the fault tests at full counts — brokers and group members as processes, killed with SIGKILL
chaos:
	AMPYBUS_CHAOS=full $(GO) test -count=1 -timeout 30m -v ./internal/chaos/

# Every decoder of outside input has a fuzz target; `go test` runs their
# seed corpora (testdata/fuzz and the f.Add seeds) in make test.
FUZZTIME ?= 1m
FUZZFLAGS ?=
FUZZ_TARGETS := runtime/envelope:FuzzParse runtime/envelope:FuzzTraceparent \
	runtime/ampybus:FuzzGunzipLimit runtime/ampybus:FuzzResolve runtime/ampybus:FuzzMarshaler runtime/ampybus:FuzzUnmarshaler \
	runtime/fixture:FuzzParseAndValidate gen/contract:FuzzParse \
	runtime/natsbinding:FuzzParseHeaders runtime/kafkabinding:FuzzParseHeaders

## fuzz: run each fuzz target for FUZZTIME (default 1m; FUZZTIME=10m for a release; FUZZFLAGS=-parallel=1 leaves cores free)
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== ./$$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test ./$$pkg -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0 $(FUZZFLAGS); done

# Test tools from Debian: kcat (librdkafka's client) for the Kafka interop
# tests, promtool (package prometheus) for the generated alert rules, and
# python3's protobuf and confluent-kafka for the cross-language tests.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
tools:
	@command -v kcat >/dev/null 2>&1 || { echo "installing kcat (Debian package) for the Kafka interop tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null; }
	@command -v promtool >/dev/null 2>&1 || { echo "installing promtool (Debian package prometheus) for the alert rule tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@/usr/bin/python3 -c 'import google.protobuf, confluent_kafka' >/dev/null 2>&1 || { echo "installing python3-protobuf and python3-confluent-kafka (Debian packages) for the Python tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-protobuf python3-confluent-kafka >/dev/null; }
	@{ test -f /usr/share/bash-completion/bash_completion && command -v fish >/dev/null 2>&1 && command -v zsh >/dev/null 2>&1; } || { echo "installing bash-completion, fish and zsh (Debian packages) for the shell completion tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bash-completion fish zsh >/dev/null; }

## check: fail with a diff when generated/, python/generated/, templates/observability/ or templates/security/ is stale for contract.yaml
check:
	$(GO) run ./cmd/ampybus-gen check -contract contract.yaml -proto_path proto -out generated -observability templates/observability -security templates/security -python python/generated
	$(GO) run ./cmd/ampybus-gen docs -check -contract contract.yaml -proto_path proto -out docs/contract

vet:
	$(GO) vet $(PKGS)

fmt:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed (run gofmt -w .):"; echo "$$out"; exit 1; fi

## generate: regenerate generated/, python/generated/, templates/observability/ and templates/security/ from contract.yaml
generate:
	$(GO) run ./cmd/ampybus-gen generate -contract contract.yaml -proto_path proto -out generated -observability templates/observability -security templates/security -python python/generated
	$(GO) run ./cmd/ampybus-gen docs -contract contract.yaml -proto_path proto -out docs/contract

## proto: regenerate the payload Go code, protoc-free (the .proto files are compiled in process)
proto:
	$(GO) run proto/generate.go

## bench: typed vs raw nats.go and franz-go (ampybusctl bench --compare), observability overhead and binary size; rewrites README's Performance figures
bench:
	$(GO) run ./internal/benchdoc -readme README.md

build:
	$(GO) build -o bin/ ./cmd/...
