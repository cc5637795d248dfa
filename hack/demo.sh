#!/usr/bin/env bash
# The main job on the embedded environment: a local control plane, MariaDB,
# restic repositories and a Pushgateway, then kubectl stash against them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/bin:$PATH"
dir=$(mktemp -d "${TMPDIR:-/tmp}/stash-demo.XXXXXX")
go build -o bin/stash-env ./hack/env
cleanup() { bin/stash-env -dir "$dir" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting etcd, kube-apiserver, 2 MariaDB servers, rest-server, versitygw (S3) and a Pushgateway"
bin/stash-env -dir "$dir" -mariadb 2 up | tee "$dir/up.txt"
export KUBECONFIG="$dir/kubeconfig"

step "kubectl stash version (found by kubectl's plugin discovery)"
kubectl stash version

step "kubectl stash install"
kubectl stash install

if [ -f hack/demo-steps.sh ]; then
  source hack/demo-steps.sh
fi
step "done"
