# PlaceBrain auth service. `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
PKG   := github.com/placebrain/auth

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build bin/authd
	$(GO) build -o bin/authd ./cmd/authd

.PHONY: run
run: build ## Run authd on :50051 in development mode: embedded SQLite in ./data, e-mails (with codes) in the log
	@exec ./bin/authd serve --dev

# Packages whose tests run once per database backend.
DB_PKGS := ./cmd/authd ./cmd/authfaults ./internal/auth ./internal/grpcapi ./internal/mail ./internal/migrate ./internal/server ./internal/store

.PHONY: test
test: ## Run all tests: unit + SQLite suite, then the PostgreSQL suite (skipped, and said so, without PostgreSQL; fatal under CI)
	@echo "== unit tests and the SQLite suite"
	$(GO) test -count=1 $(TESTFLAGS) ./...
	@if $(GO) run ./internal/testutil/pgcheck; then \
	  echo "== PostgreSQL suite"; \
	  TEST_BACKEND=postgres $(GO) test -count=1 $(TESTFLAGS) $(DB_PKGS); \
	else \
	  echo "PostgreSQL suite SKIPPED: no PostgreSQL answers at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres); only the SQLite suite ran."; \
	  if [ -n "$$CI" ]; then echo "CI requires the PostgreSQL suite: failing."; exit 1; fi; \
	fi

.PHONY: test-race
# -short skips only TestLoginFloods: it measures the hashing pool's fairness
# at bcrypt cost 12 in real time, which the race detector's slowdown voids.
test-race: ## Run the test suites once under the race detector (-short): everything on SQLite, then the PostgreSQL packages (fatal under CI without PostgreSQL)
	@echo "== race detector: unit tests and the SQLite suite"
	$(GO) test -race -short -count=1 $(TESTFLAGS) ./...
	@if $(GO) run ./internal/testutil/pgcheck; then \
	  echo "== race detector: PostgreSQL suite"; \
	  TEST_BACKEND=postgres $(GO) test -race -short -count=1 $(TESTFLAGS) $(DB_PKGS); \
	else \
	  echo "PostgreSQL race suite SKIPPED: no PostgreSQL answers at TEST_DATABASE_URL"; \
	  if [ -n "$$CI" ]; then echo "CI requires the PostgreSQL suite: failing."; exit 1; fi; \
	fi

.PHONY: test-v
test-v: ## Run all tests verbosely (as CI does)
	@$(MAKE) --no-print-directory test TESTFLAGS=-v

.PHONY: bench
bench: build ## Load test authd on PostgreSQL and SQLite, measure the ceilings, write BENCHMARKS.md (about 10 minutes; wants an idle machine)
	$(GO) run ./cmd/authbench -authd bin/authd -out BENCHMARKS.md $(BENCH_FLAGS)

.PHONY: bench-short
bench-short: build ## The load test briefly (8 callers, 0.5 s cells), as CI runs it: checks the tool and every scenario; figures to the terminal only
	$(GO) run ./cmd/authbench -authd bin/authd -duration 500ms -conc 8

.PHONY: bench-go
bench-go: ## Go benchmarks (token, OTP, normalization, error mapping; the rotation in process on SQLite and PostgreSQL vs its direct SQL), benchstat format
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./internal/token/ ./internal/otp/ ./internal/identity/
	$(GO) test -run '^$$' -bench ToStatus -benchmem -count 6 ./internal/grpcapi/
	$(GO) test -run '^$$' -bench Refresh -benchtime 2s -count 6 ./cmd/authbench/
	TEST_BACKEND=postgres $(GO) test -run '^$$' -bench Refresh -benchtime 2s -count 6 ./cmd/authbench/

.PHONY: faults
faults: build ## Fault suite: break PostgreSQL's link, SMTP, authd processes under load; write RELIABILITY.md (about 3 minutes; needs PostgreSQL)
	$(GO) run ./cmd/authfaults -authd bin/authd -out RELIABILITY.md

.PHONY: faults-short
faults-short: build ## The fault suite with shorter phases, as CI runs it (under 3 minutes); figures to the terminal only
	$(GO) run ./cmd/authfaults -authd bin/authd -short

FUZZTIME ?= 10s
FUZZ_TARGETS := FuzzNormalizeEmail:./internal/identity FuzzNormalizeUsername:./internal/identity \
  FuzzVerify:./internal/token FuzzHashRefreshToken:./internal/token FuzzRequestDecoding:./internal/grpcapi

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 10s)
	@for t in $(FUZZ_TARGETS); do \
	  name=$${t%%:*}; pkg=$${t#*:}; echo "== $$name ($$pkg, $(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

.PHONY: generate
generate: generate-ent generate-proto ## Regenerate ent and protobuf code

.PHONY: generate-ent
generate-ent: ## Regenerate ent/ from schema/
	$(GO) generate ./ent

.PHONY: generate-proto
generate-proto: ## Regenerate proto/authpb from proto/auth.proto (needs protoc: apt-get install protobuf-compiler)
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler"; exit 1; }
	protoc --proto_path=proto \
	  --plugin=protoc-gen-go=$$($(GO) tool -n protoc-gen-go) \
	  --plugin=protoc-gen-go-grpc=$$($(GO) tool -n protoc-gen-go-grpc) \
	  --go_out=proto/authpb --go_opt=paths=source_relative --go_opt=Mauth.proto=$(PKG)/proto/authpb \
	  --go-grpc_out=proto/authpb --go-grpc_opt=paths=source_relative --go-grpc_opt=Mauth.proto=$(PKG)/proto/authpb \
	  auth.proto

.PHONY: generate-check
generate-check: generate ## Fail when generated code differs from what is committed
	@git diff --exit-code --stat -- ent proto || { echo "generated code is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- ent proto)" || { git status --short -- ent proto; echo "untracked generated files"; exit 1; }

.PHONY: migration
migration: ## Write a new migration and the end state from schema changes: make migration name=add_x (needs PostgreSQL at DEV_DATABASE_URL)
	@test -n "$(name)" || { echo "usage: make migration name=add_x"; exit 1; }
	$(GO) run ./cmd/entmigrate diff $(name)

.PHONY: migrate-hash
migrate-hash: ## Rewrite each atlas.sum from its files (after merging branches that each added a migration)
	$(GO) run ./cmd/entmigrate hash

.PHONY: migrate-state
migrate-state: ## Rewrite each end state (migrations/<dialect>.schema.hcl) from its files, e.g. after a merge
	$(GO) run ./cmd/entmigrate state

.PHONY: migrate-check
migrate-check: ## Fail when schema/ and migrations/ disagree, atlas.sum is stale or an end state is not what the files build
	$(GO) run ./cmd/entmigrate check

.PHONY: migrate-lint
migrate-lint: ## Lint the migration files after the baseline with atlas.hcl's policy (needs PostgreSQL at DEV_DATABASE_URL)
	$(GO) run ./cmd/authd migrate lint --config atlas.hcl

.PHONY: vet
vet: ## go vet and gofmt
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^ent/'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '^ent/'); echo "gofmt needed"; exit 1; }

# database/sql/driver (interfaces only) comes with github.com/google/uuid,
# whose UUID is a driver.Valuer; database/sql itself must not.
.PHONY: layering-check
layering-check: ## Fail when the domain package (internal/auth) depends on ent, database/sql, a database driver, or a metrics or tracing library
	@bad=$$($(GO) list -deps ./internal/auth | grep -E '^(entgo\.io/ent(/|$$)|database/sql$$|github\.com/jackc/pgx|modernc\.org/sqlite|github\.com/prometheus/|go\.opentelemetry\.io/)' || true); \
	test -z "$$bad" || { echo "internal/auth must not depend on database code, Prometheus or OpenTelemetry; it does, through:"; echo "$$bad"; exit 1; }

.PHONY: contract-check
contract-check: ## Fail when the project's proto changes anything of the platform contract (proto/contract/auth.proto)
	$(GO) test -count=1 -run 'TestContract' ./internal/grpcapi/

.PHONY: check
check: vet layering-check generate-check migrate-check migrate-lint contract-check ## Everything CI checks besides the tests
