# sqlgate: the AWS deploy path (Packer -> Terraform -> Ansible) and its offline proof.
# Included by the top-level Makefile; also usable alone: make -f mk/deploy.mk deploy-check
# The work is done by the scripts under terraform/tools/; docs/deploy.md explains it.

SHELL = bash -o pipefail
.SHELLFLAGS = -ec

DEPLOY_VENV ?= .local/venv-deploy
AWS_REGION ?= $(or $(AWS_DEFAULT_REGION),us-east-1)
WORKERS ?= 2
GATEKEEPERS ?= 1
PROXIES ?= 1
ADMIN_CIDR ?=
ALLOWED_CIDRS ?= 0.0.0.0/0
KEEP_AMIS ?= 0
CONFIRM ?=
FINAL_SNAPSHOT ?=
ALLOW_DATA_LOSS ?=
GATEKEEPER_DNS_NAME ?=
GATEKEEPER_TLS_CERT_FILE ?=
GATEKEEPER_TLS_KEY_FILE ?=
GATEKEEPER_CA_FILE ?=

DEPLOY_ENV = DEPLOY_VENV=$(DEPLOY_VENV) AWS_REGION=$(AWS_REGION) WORKERS=$(WORKERS) \
	GATEKEEPERS=$(GATEKEEPERS) PROXIES=$(PROXIES) \
	ADMIN_CIDR=$(ADMIN_CIDR) ALLOWED_CIDRS=$(ALLOWED_CIDRS) KEEP_AMIS=$(KEEP_AMIS) \
	CONFIRM=$(CONFIRM) FINAL_SNAPSHOT=$(FINAL_SNAPSHOT) ALLOW_DATA_LOSS=$(ALLOW_DATA_LOSS) \
	GATEKEEPER_DNS_NAME='$(GATEKEEPER_DNS_NAME)' GATEKEEPER_TLS_CERT_FILE='$(GATEKEEPER_TLS_CERT_FILE)' \
	GATEKEEPER_TLS_KEY_FILE='$(GATEKEEPER_TLS_KEY_FILE)' GATEKEEPER_CA_FILE='$(GATEKEEPER_CA_FILE)'

# The operator's targets (deploy, destroy, backup, deploy-tools) need only
# Python >= 3.10, Terraform >= 1.5, Packer >= 1.9, ssh and git, and install
# nothing outside the venv: never a system package. CI's own test tools
# (MariaDB, shellcheck, Debian's packer, checkov, moto) come from check-tools.

##@ AWS deploy

.PHONY: deploy-tools
deploy-tools: ## Check the operator's tools (says what to install) and make the deploy venv (ansible, boto3); installs nothing else.
	@DEPLOY_VENV=$(DEPLOY_VENV) terraform/tools/deploy-tools.sh

.PHONY: check-tools
check-tools: ## CI only: apt packages for the offline proof (MariaDB, shellcheck, packer 1.6), plus checkov, moto, ansible-lint in the venv.
	@DEPLOY_VENV=$(DEPLOY_VENV) terraform/tools/check-tools.sh

.PHONY: deploy-check
deploy-check: check-tools ## Prove the deploy path offline: terraform+moto (no data lost on updates), checkov, packer, units, ansible, tools.
	@DEPLOY_VENV=$(DEPLOY_VENV) terraform/tools/deploy-check.sh

.PHONY: deploy
deploy: ## Deploy to AWS: AMIs (only if the code changed), terraform apply (never replaces a database), Ansible, a real query.
	@$(DEPLOY_ENV) terraform/tools/aws.sh deploy

.PHONY: destroy
destroy: ## Remove the AWS deployment after confirmation (CONFIRM=yes), offering a final snapshot (FINAL_SNAPSHOT=yes|no).
	@$(DEPLOY_ENV) terraform/tools/aws.sh destroy

.PHONY: backup
backup: ## Consistent on-demand snapshot of the database (a worker's data volume, MySQL stopped on it meanwhile).
	@$(DEPLOY_ENV) terraform/tools/aws.sh backup

.PHONY: deploy-switchover
deploy-switchover: ## Planned switchover on AWS to TO=worker-N: fence the primary, promote TO once caught up, re-point the rest; make deploy keeps it.
	@$(DEPLOY_ENV) terraform/tools/aws.sh switchover "$(TO)"

.PHONY: deploy-sysbench
deploy-sysbench: ## Sysbench on the AWS cluster (2x100k rows; 4 threads, 30 s); results in results/sysbench/.
	@$(DEPLOY_ENV) terraform/tools/aws.sh sysbench

.PHONY: deploy-loadtest
deploy-loadtest: ## Run make loadtest against the AWS gatekeeper (GATEKEEPER_URL and a write API_KEY from the deployment).
	@vars=$$($(DEPLOY_ENV) terraform/tools/aws.sh env) && export $$vars && $(MAKE) --no-print-directory loadtest

# Alone (make -f mk/deploy.mk) this fragment brings its own help.
ifeq ($(firstword $(MAKEFILE_LIST)),mk/deploy.mk)
.DEFAULT_GOAL = help
.PHONY: help
help: # Lists the targets above (only when this file is used alone).
	@scripts/make-help.sh "make -f mk/deploy.mk" $(MAKEFILE_LIST)
endif
