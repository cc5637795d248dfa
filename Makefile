# kubectl stash: run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
IMAGE_REPO ?= ghcr.io/kubectl-stash/stash-agent
IMAGE ?= $(IMAGE_REPO):$(VERSION)
IMAGE_BUILD = docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .
DIST_DIR ?= $(CURDIR)/dist
LDFLAGS := -s -w -X github.com/kubectl-stash/kubectl-stash/pkg/version.Version=$(VERSION) \
           -X github.com/kubectl-stash/kubectl-stash/pkg/version.Commit=$(COMMIT)
BIN := $(CURDIR)/bin
ENV_DIR ?= $(CURDIR)/.stash-env
TEST_TIMEOUT ?= 25m
export PATH := $(BIN):$(PATH)

.PHONY: help
help: ## Show this help
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: tools
tools: ## Build the pinned tools into bin/ (cached in ~/.cache); install MariaDB, the real node's and the images' Debian packages
	@hack/tools.sh
	@hack/install-mariadb.sh
	@hack/install-node-deps.sh
	@hack/install-image-tools.sh

.PHONY: build
build: ## Build bin/kubectl-stash and bin/stash-agent
	@mkdir -p $(BIN)
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kubectl-stash ./cmd/kubectl-stash
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/stash-agent ./cmd/agent

.PHONY: dist
dist: ## Cross-compile kubectl-stash into reproducible dist/ archives with sha256sums.txt and the krew manifest dist/stash.yaml
	go run ./hack/dist -version '$(VERSION)' -ldflags '$(LDFLAGS)' -out $(DIST_DIR) \
		-krew-template krew/stash.yaml.tmpl -krew-out $(DIST_DIR)/stash.yaml

IMAGES ?= agent,mariadb

.PHONY: image
image: ## Build the agent image (IMAGE) and the MariaDB test image as reproducible OCI archives in dist/, no docker engine needed
	@hack/install-image-tools.sh
	go run ./hack/image -version '$(VERSION)' -ldflags '$(LDFLAGS)' -ref agent='$(IMAGE)' \
		-images '$(IMAGES)' -out $(DIST_DIR)

.PHONY: image-docker
image-docker: ## Build the agent image from the Dockerfile with a docker engine
	$(IMAGE_BUILD)

.PHONY: generate
generate: ## Regenerate deepcopy code and CRDs from pkg/apis, and the alert rules and dashboard from pkg/monitoring
	@hack/tools.sh controller-gen
	$(BIN)/controller-gen object:headerFile=hack/boilerplate.go.txt paths=./pkg/apis/... \
		crd:crdVersions=v1,maxDescLen=200 output:crd:artifacts:config=manifests/crds
	go run ./hack/genmonitoring manifests/monitoring

.PHONY: lint
lint: ## gofmt, go vet and staticcheck (pinned)
	@hack/tools.sh staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	$(BIN)/staticcheck ./...
# hack/bench is its own module, which the root's ./... skips.
	cd hack/bench && go vet ./... && $(BIN)/staticcheck ./...

.PHONY: test
# Two rounds of two packages at a time: the soak (its schedule leaves a
# session 4 s) runs beside test/e2e, as it always has, and never beside the
# real node's 1 GiB backup, which starves a 2-core machine for a minute.
SLOW_PKGS := ./test/soak ./test/e2e

test: tools build lint ## Install what is needed, then run every test against the real parts
	@rc=0; \
	go test -count=1 -timeout $(TEST_TIMEOUT) $(SLOW_PKGS) || rc=1; \
	go test -count=1 -timeout $(TEST_TIMEOUT) $$(go list ./... | grep -v -e '/test/soak$$' -e '/test/e2e$$') || rc=1; \
	(cd hack/bench && go test -count=1 ./...) || rc=1; \
	exit $$rc

BENCH_MODE ?= full

.PHONY: bench
bench: tools build ## Benchmark against mysqldump, mariadb and Stash's pipeline: docs/benchmarks.md (BENCH_MODE=small: bin/bench-small.md)
	@cd hack/bench && go build -o $(BIN)/stash-bench .
	$(BIN)/stash-bench -mode $(BENCH_MODE) $(BENCH_ARGS)

SCALE_AGENTS ?= 100
SCALE_IDLE ?= 5m

.PHONY: bench-scale
bench-scale: tools build ## What idle agents cost the API server, then all due in one slot: the scale section of docs/benchmarks.md
	STASH_SCALE_AGENTS=$(SCALE_AGENTS) STASH_SCALE_IDLE=$(SCALE_IDLE) STASH_SCALE_REPORT=$(CURDIR)/docs/benchmarks.md \
		go test -count=1 -timeout 60m -run TestAgentsAtScale -v ./test/scale/

.PHONY: up
up: tools build ## Start the local environment in the background and print KUBECONFIG (NODE=1: the real node, with the images)
	@go build -o $(BIN)/stash-env ./hack/env
	@if [ -n "$(NODE)" ]; then \
		$(MAKE) --no-print-directory image && \
		$(BIN)/stash-env -dir $(ENV_DIR) -node \
			-image $(DIST_DIR)/stash-agent-image_$(VERSION)_linux_amd64.tar \
			-image $(DIST_DIR)/stash-mariadb-image_$(VERSION)_linux_amd64.tar up; \
	else $(BIN)/stash-env -dir $(ENV_DIR) up; fi

.PHONY: down
down: ## Stop the local environment
	@go build -o $(BIN)/stash-env ./hack/env
	@$(BIN)/stash-env -dir $(ENV_DIR) down

.PHONY: demo
demo: tools build ## Run the main job on the real node (Pods), or in process mode where it cannot start
	@VERSION='$(VERSION)' hack/demo.sh
