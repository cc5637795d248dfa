#!/usr/bin/env bash
# The main job on an embedded environment. First choice: the real node
# (kubelet, containerd), where MariaDB and the agent run as Pods from the
# images `make image` builds. If the node cannot start on this machine, the
# demo says why and falls back to process mode: a local control plane,
# MariaDB, restic repositories and a Pushgateway as processes, with the agent
# run from its rendered Deployment as a local process.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/bin:$PATH"
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)}
dir=$(mktemp -d "${TMPDIR:-/tmp}/stash-demo.XXXXXX")
go build -o bin/stash-env ./hack/env
cleanup() { bin/stash-env -dir "$dir" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

mode=process
if [ "${STASH_DEMO_MODE:-node}" = node ]; then
  step "building the agent and MariaDB images (make image), then starting the real node"
  if go run ./hack/image -images agent,mariadb -out "$dir/images" -version "$VERSION" &&
     bin/stash-env -dir "$dir" -node \
       -image "$dir/images/stash-agent-image_${VERSION}_linux_amd64.tar" \
       -image "$dir/images/stash-mariadb-image_${VERSION}_linux_amd64.tar" up | tee "$dir/up.txt"; then
    mode=node
  else
    echo "the real node could not start on this machine (the cause is above); falling back to process mode" >&2
    bin/stash-env -dir "$dir" down >/dev/null 2>&1 || true
    dir=$(mktemp -d "${TMPDIR:-/tmp}/stash-demo.XXXXXX")
  fi
fi
if [ "$mode" = process ]; then
  step "starting etcd, kube-apiserver, 2 MariaDB servers, rest-server, versitygw (S3) and a Pushgateway"
  bin/stash-env -dir "$dir" -mariadb 2 up | tee "$dir/up.txt"
fi
export KUBECONFIG="$dir/kubeconfig"

step "kubectl stash version (found by kubectl's plugin discovery)"
kubectl stash version

step "kubectl stash install"
kubectl stash install

if [ "$mode" = node ]; then
  source hack/demo-node.sh
else
  source hack/demo-steps.sh
fi
step "done ($mode mode)"
