# Everyday commands. `make` (or `make help`) lists them.
# Example: make test ARGS="-p strata" (scripts/test.sh also reads TEST_DATABASE_URL).

SHELL := /bin/bash
CARGO ?= cargo

.DEFAULT_GOAL := help

.PHONY: help dev run build test coverage lint fmt \
	start-infra stop-infra wipe-infra infra-logs infra-url

help: ## List the targets
	@echo "Usage: make <target>"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN { FS = ":.*## " } { printf "  %-12s %s\n", $$1, $$2 }'

dev: ## Run the service in development mode (APP_ENV=development, reads .env.development)
	APP_ENV=development $(CARGO) run -p app -- run

run: ## Run the service from a release build
	$(CARGO) run --release -p app -- run

build: ## Build the workspace
	$(CARGO) build --workspace

test: ## Run all tests (starts the system PostgreSQL when it does not answer; ARGS=... passes on)
	./scripts/test.sh $(ARGS)

coverage: ## Test coverage as an HTML report (needs cargo-llvm-cov)
	@if ! $(CARGO) llvm-cov --version >/dev/null 2>&1; then \
		echo "cargo-llvm-cov is not installed. Install it with:"; \
		echo "  cargo install cargo-llvm-cov"; \
		echo "  rustup component add llvm-tools-preview"; \
		exit 1; \
	fi
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) llvm-cov nextest --workspace --html; \
	else \
		$(CARGO) llvm-cov --workspace --html; \
	fi
	@echo "Coverage report: $$($(CARGO) metadata --no-deps --format-version 1 | sed -E 's/.*"target_directory":"([^"]*)".*/\1/')/llvm-cov/html/index.html"

lint: ## Check formatting and run clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

start-infra: ## Start PostgreSQL on 127.0.0.1:15432 (Docker if available, else a local cluster)
	./scripts/infra.sh start

stop-infra: ## Stop the infrastructure, keeping its data
	./scripts/infra.sh stop

wipe-infra: ## Stop the infrastructure and delete its data
	./scripts/infra.sh wipe

infra-logs: ## Follow the PostgreSQL log
	./scripts/infra.sh logs -f

infra-url: ## Print the DATABASE_URL of the infrastructure
	@./scripts/infra.sh url
