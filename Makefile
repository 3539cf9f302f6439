# sqlgate: see `make help`.
SHELL = bash -o pipefail
.SHELLFLAGS = -ec
.DEFAULT_GOAL = help

CARGO ?= cargo
APT_PACKAGES = mariadb-server mariadb-client curl jq sysbench iputils-ping iproute2 fonts-dejavu-core python3

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Local system

.PHONY: deps
deps: ## Install the OS packages the local system and tests need (apt-get), when missing.
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing:$$missing"; sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y -qq $$missing >/dev/null 2>&1 || { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing >/dev/null; }; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)"; exit 1; }

.PHONY: build
build: ## Build release binaries of the services.
	$(CARGO) build --release --locked -p proxy -p gatekeeper

.PHONY: up
up: deps build ## Start the cluster, proxy and gatekeeper locally; print a working curl.
	local/stack.sh up

.PHONY: down
down: ## Stop everything `make up` started.
	local/stack.sh down

.PHONY: status
status: ## Show each process and each worker's replication state.
	local/stack.sh status

##@ Quality

.PHONY: fmt
fmt: ## Format the Rust code.
	$(CARGO) fmt --all

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings as errors.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: test-rust
test-rust: deps ## Unit and integration tests (start real clusters on free ports).
	$(CARGO) test --workspace --locked

.PHONY: test-smoke
test-smoke: deps ## What a new user does: up on spare ports, the printed curl, up again, down.
	local/smoke-test.sh

.PHONY: test
test: deps lint test-rust test-smoke $(if $(wildcard mk/deploy.mk),deploy-check) $(if $(wildcard mk/bench.mk),loadtest-check) ## Everything CI runs.
	@echo "make test: all checks passed"

-include mk/*.mk
