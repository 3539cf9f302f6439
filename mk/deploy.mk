# sqlgate: the AWS deploy path (Packer -> Terraform -> Ansible) and its offline proof.
# Included by the top-level Makefile; also usable alone: make -f mk/deploy.mk deploy-check
# The work is done by the scripts under terraform/tools/; docs/deploy.md explains it.

SHELL = bash -o pipefail
.SHELLFLAGS = -ec

DEPLOY_VENV ?= .local/venv-deploy
AWS_REGION ?= $(or $(AWS_DEFAULT_REGION),us-east-1)
WORKERS ?= 2
ADMIN_CIDR ?=
ALLOWED_CIDRS ?= 0.0.0.0/0
KEEP_AMIS ?= 0

DEPLOY_ENV = DEPLOY_VENV=$(DEPLOY_VENV) AWS_REGION=$(AWS_REGION) WORKERS=$(WORKERS) \
	ADMIN_CIDR=$(ADMIN_CIDR) ALLOWED_CIDRS=$(ALLOWED_CIDRS) KEEP_AMIS=$(KEEP_AMIS)

##@ AWS deploy

.PHONY: deploy-tools
deploy-tools: ## Install the deploy tools (apt: MariaDB, sysbench, packer; venv: ansible, checkov, moto); fast when present.
	@DEPLOY_VENV=$(DEPLOY_VENV) terraform/tools/deploy-tools.sh

.PHONY: deploy-check
deploy-check: deploy-tools ## Prove the deploy path offline: terraform+moto, checkov, packer, units, ansible lint and a real replication run.
	@DEPLOY_VENV=$(DEPLOY_VENV) terraform/tools/deploy-check.sh

.PHONY: deploy
deploy: deploy-tools ## Deploy to AWS: AMIs (only if the code changed), terraform apply, Ansible, then a real query. ADMIN_CIDR=, WORKERS=, AWS_REGION=
	@$(DEPLOY_ENV) terraform/tools/aws.sh deploy

.PHONY: destroy
destroy: deploy-tools ## Remove the AWS deployment, its AMIs and snapshots (KEEP_AMIS=1 keeps them) and its local state.
	@$(DEPLOY_ENV) terraform/tools/aws.sh destroy

.PHONY: deploy-sysbench
deploy-sysbench: deploy-tools ## Sysbench on the AWS cluster (2x100k rows; 4 threads, 30 s); results in results/sysbench/.
	@$(DEPLOY_ENV) terraform/tools/aws.sh sysbench

.PHONY: deploy-loadtest
deploy-loadtest: deploy-tools ## Run make loadtest against the AWS gatekeeper (GATEKEEPER_URL and a write API_KEY from the deployment).
	@vars=$$($(DEPLOY_ENV) terraform/tools/aws.sh env) && export $$vars && $(MAKE) --no-print-directory loadtest

# Alone (make -f mk/deploy.mk) this fragment brings its own help.
ifeq ($(firstword $(MAKEFILE_LIST)),mk/deploy.mk)
.DEFAULT_GOAL = help
.PHONY: help
help: # Lists the targets above (only when this file is used alone).
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make -f mk/deploy.mk <target>\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)
endif
