# Benchmarks: the loadtest tool, sysbench baselines, and sqlgate against direct MariaDB.
# Included by the top-level Makefile (`-include mk/*.mk`).

LOADTEST ?= target/release/loadtest
SYSBENCH_TIME ?= 30
BENCH_TIME ?= 15
ARGS ?=
FONT_PACKAGES = fonts-dejavu-core

##@ Benchmarks

.PHONY: loadtest-deps
loadtest-deps: ## Install the charts' font (fonts-dejavu-core) when missing.
	@missing=""; for p in $(FONT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing:$$missing"; sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y -qq $$missing >/dev/null 2>&1 || { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing >/dev/null; }; \
	fi

.PHONY: loadtest-build
loadtest-build: ## Build the loadtest binary (release).
	$(CARGO) build --release --locked -p loadtest

.PHONY: loadtest
loadtest: loadtest-deps loadtest-build ## Seed benchmark through the gatekeeper: local stack, or GATEKEEPER_URL + API_KEY; ARGS="..." adds options.
	LOADTEST=$(LOADTEST) loadtest/scripts/run.sh seed $(ARGS)

.PHONY: sysbench
sysbench: deps loadtest-build ## sysbench on the local cluster: read-only on each worker, read-write on the manager (SYSBENCH_TIME s, default 30).
	$(LOADTEST) sysbench --time $(SYSBENCH_TIME) $(ARGS)

.PHONY: bench
bench: deps build loadtest-build ## sqlgate against direct MariaDB on this machine; rewrites docs/benchmarks.md (BENCH_TIME s per run, default 15).
	BENCH_TIME=$(BENCH_TIME) LOADTEST=$(LOADTEST) loadtest/scripts/bench.sh $(ARGS)

.PHONY: loadtest-check
loadtest-check: ## Checks of the loadtest binary that cargo test does not cover (argument errors, exit codes).
	$(CARGO) build --locked -p loadtest
	loadtest/scripts/check.sh target/debug/loadtest
