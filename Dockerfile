# syntax=docker/dockerfile:1
# The agent image the plugin deploys by default
# (ghcr.io/kubectl-stash/stash-agent:<version>, see pkg/version): stash-agent
# and the pinned restic in /usr/local/bin, the MariaDB client (mariadb-dump,
# mariadb, and the mysqldump/mysql names) from Debian, running as 65534
# (nobody), like the rendered Deployment's securityContext.
# Build it with `make image`; test/image checks this file against the
# Makefile, the restic pin in hack/tools/restic and the rendered Deployment.

FROM golang:1.26-bookworm AS build
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
WORKDIR /src

# restic from its pin, built like hack/tools.sh builds it for the tests.
COPY hack/tools/restic/ hack/tools/restic/
RUN cd hack/tools/restic \
 && go build -trimpath -ldflags "-s -w -X main.version=0.18.1" \
      -o /out/restic github.com/restic/restic/cmd/restic

# The agent: modules first, so a source change reuses the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
COPY manifests/ manifests/
ARG VERSION=v0.0.0-dev
ARG COMMIT=unknown
RUN go build -trimpath \
      -ldflags "-s -w -X github.com/kubectl-stash/kubectl-stash/pkg/version.Version=${VERSION} -X github.com/kubectl-stash/kubectl-stash/pkg/version.Commit=${COMMIT}" \
      -o /out/stash-agent ./cmd/agent

FROM debian:bookworm-slim
# ca-certificates: restic talks TLS to S3, GCS, Azure, B2 and Swift.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates mariadb-client \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/restic /usr/local/bin/restic
COPY --from=build /out/stash-agent /usr/local/bin/stash-agent
USER 65534:65534
# The Deployment sets command [stash-agent] and args [run, ...] itself.
ENTRYPOINT ["stash-agent"]
