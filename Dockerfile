# syntax=docker/dockerfile:1
# The agent image the plugin deploys by default
# (ghcr.io/kubectl-stash/stash-agent:<version>, see pkg/version): stash-agent
# and the pinned restic in /usr/local/bin, the MariaDB client (mariadb-dump,
# mariadb, and the mysqldump/mysql names) from Debian, running as 65534
# (nobody), like the rendered Deployment's securityContext.
# `make image` builds the same image without a docker engine (hack/image);
# `make image-docker` builds it from this file. test/image checks this file
# against the Makefile, hack/image/agent.env, the restic pin in
# hack/tools/restic and the rendered Deployment.

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
# hack/image/agent.env is the recipe `make image` builds the same image from
# without a docker engine: its PACKAGES are installed and its REMOVE paths
# deleted here, and USER, ENV PATH, ENTRYPOINT and the /usr/local/bin paths
# below are its IMAGE_USER, IMAGE_PATH, ENTRYPOINT and FILES (test/image
# checks that they agree).
COPY hack/image/agent.env /tmp/agent.env
RUN . /tmp/agent.env \
 && apt-get update \
 && apt-get install -y --no-install-recommends $PACKAGES \
 && rm -rf /var/lib/apt/lists/* $REMOVE /tmp/agent.env
COPY --from=build /out/restic /usr/local/bin/restic
COPY --from=build /out/stash-agent /usr/local/bin/stash-agent
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 65534:65534
# The Deployment sets command [stash-agent] and args [run, ...] itself.
ENTRYPOINT ["stash-agent"]
