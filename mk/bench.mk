# Benchmarks: the loadtest tool, sysbench baselines, and sqlgate against direct MariaDB.
# Included by the top-level Makefile (`-include mk/*.mk`).

LOADTEST ?= target/release/loadtest
SYSBENCH_TIME ?= 30
BENCH_TIME ?= 15
BENCH_GROUPS ?= reads,writes,mixed,seed
ARGS ?=
FONT_PACKAGES = fonts-dejavu-core
# The seed design's peers (loadtest/seed-peer/) live in a venv of Debian's python3.
BENCH_PACKAGES = python3-venv

##@ Benchmarks

.PHONY: loadtest-deps
loadtest-deps: ## Install the charts' font (fonts-dejavu-core) when missing.
	@scripts/os-packages.sh --for "make loadtest-deps" $(FONT_PACKAGES)

.PHONY: loadtest-build
loadtest-build: ## Build the loadtest binary (release).
	$(CARGO) build --release --locked -p loadtest

.PHONY: loadtest
loadtest: loadtest-deps loadtest-build ## Seed benchmark through the gatekeeper: local stack, or GATEKEEPER_URL + API_KEY; ARGS="..." adds options.
	LOADTEST=$(LOADTEST) loadtest/scripts/run.sh seed $(ARGS)

.PHONY: sysbench
sysbench: deps loadtest-build ## sysbench on the local cluster: read-only on each worker, read-write on the manager (SYSBENCH_TIME s, default 30).
	$(LOADTEST) sysbench --time $(SYSBENCH_TIME) $(ARGS)

.PHONY: bench-deps
bench-deps: ## Install python3-venv (the seed design's peers run in a venv) when missing.
	@scripts/os-packages.sh --for "make bench-deps" $(BENCH_PACKAGES)

.PHONY: bench
bench: deps build loadtest-build bench-deps ## sqlgate against direct MariaDB and the seed design; rewrites docs/benchmarks.md (BENCH_TIME s per run, default 15; BENCH_GROUPS=reads,writes,mixed,seed).
	BENCH_TIME=$(BENCH_TIME) BENCH_GROUPS=$(BENCH_GROUPS) LOADTEST=$(LOADTEST) loadtest/scripts/bench.sh $(ARGS)

.PHONY: loadtest-check
loadtest-check: ## Checks of the loadtest binary that cargo test does not cover (argument errors, exit codes).
	$(CARGO) build --locked -p loadtest
	loadtest/scripts/check.sh target/debug/loadtest
