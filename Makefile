# sqlgate: see `make help`.
SHELL = bash -o pipefail
.SHELLFLAGS = -ec
.DEFAULT_GOAL = help

CARGO ?= cargo
APT_PACKAGES = mariadb-server mariadb-client curl jq sysbench iputils-ping iproute2 fonts-dejavu-core python3

##@ General

.PHONY: help
help: ## Show this help.
	@scripts/make-help.sh make $(MAKEFILE_LIST)

##@ Local system

.PHONY: deps
deps: ## Install the OS packages the local system and tests need (apt-get), when missing.
	@scripts/os-packages.sh --for "make deps" $(APT_PACKAGES)
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

TO ?=
.PHONY: switchover
switchover: ## Planned switchover of the local cluster to TO=worker-N (default: the first running worker); reads never stop, writes are held.
	local/cluster.sh switchover $(TO)

.PHONY: failover
failover: ## Promote the running worker with the most of the lost primary's writes, and re-point the others (after the primary died).
	local/cluster.sh failover

.PHONY: reliability
reliability: deps ## Switchover and failover under load on clusters of their own; rewrites the figures in docs/reliability.md.
	rm -f target/reliability.jsonl
	SQLGATE_RELIABILITY_OUT=$(CURDIR)/target/reliability.jsonl $(CARGO) test --locked -p gatekeeper --test topology -- --test-threads 1
	scripts/reliability-doc.py target/reliability.jsonl docs/reliability.md

.PHONY: faults
faults: deps ## Faults under load (a worker killed, frozen or lagging, the manager killed, the proxy restarted), each on a cluster of its own; rewrites the fault figures in docs/reliability.md.
	rm -f target/faults.jsonl
	SQLGATE_FAULTS_STEADY_S=8 SQLGATE_RELIABILITY_OUT=$(CURDIR)/target/faults.jsonl $(CARGO) test --locked -p gatekeeper --test faults -- --test-threads 1
	scripts/reliability-doc.py target/faults.jsonl docs/reliability.md

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

.PHONY: api-contract
api-contract: deps ## docs/openapi.yaml against a throwaway stack: contract tests, then schemathesis per key role (API_CONTRACT_SEED, API_CONTRACT_MAX_EXAMPLES).
	@scripts/os-packages.sh --for "make api-contract" python3-venv
	scripts/api-contract/run.sh

.PHONY: netns-test
netns-test: deps ## The deployed network as real hosts: network namespaces, nftables from terraform/security.tf, end to end (root; SKIP otherwise).
	$(CARGO) build --locked -p proxy -p gatekeeper
	SQLGATE_BIN_DIR=$(CURDIR)/target/debug local/netns/test.sh

.PHONY: test
test: deps lint test-rust test-smoke api-contract netns-test $(if $(wildcard mk/deploy.mk),deploy-check) $(if $(wildcard mk/bench.mk),loadtest-check) ## Everything CI runs.
	@echo "make test: all checks passed"

-include mk/*.mk
