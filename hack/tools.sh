#!/usr/bin/env bash
# Builds the pinned tools into a versioned cache outside the clone and links
# them into bin/. A tool is rebuilt only when its pin (go.mod/go.sum), its
# recipe or the Go version changes, so a warm run takes seconds.
#
# Usage: hack/tools.sh [name...]   (default: every tool)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${STASH_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-stash/tools}
mkdir -p "$root/bin" "$cache"

# name|package|ldflags[|module dir under hack/tools, default name[|build tags]]
k8sver='-s -w -X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean'
ctrver='-s -w -X github.com/containerd/containerd/v2/version.Version=v2.4.2'
ctrtags='no_btrfs no_devmapper no_zfs no_tracing'
recipes='
kube-apiserver|k8s.io/kubernetes/cmd/kube-apiserver|-s -w -X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean
kubectl|k8s.io/kubernetes/cmd/kubectl|-s -w -X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean
etcd|go.etcd.io/etcd/server/v3|-s -w
restic|github.com/restic/restic/cmd/restic|-s -w -X main.version=0.18.1
pushgateway|github.com/prometheus/pushgateway|-s -w -X github.com/prometheus/common/version.Version=1.11.1
promtool|github.com/prometheus/prometheus/cmd/promtool|-s -w -X github.com/prometheus/common/version.Version=3.16.0
rest-server|github.com/restic/rest-server/cmd/rest-server|-s -w -X main.version=0.14.0
versitygw|github.com/versity/versitygw/cmd/versitygw|-s -w
controller-gen|sigs.k8s.io/controller-tools/cmd/controller-gen|-s -w -X sigs.k8s.io/controller-tools/pkg/version.version=v0.23.0
staticcheck|honnef.co/go/tools/cmd/staticcheck|-s -w
kubelet|k8s.io/kubernetes/cmd/kubelet|'"$k8sver"'|kube-node
kube-controller-manager|k8s.io/kubernetes/cmd/kube-controller-manager|'"$k8sver"'|kube-node
kube-scheduler|k8s.io/kubernetes/cmd/kube-scheduler|'"$k8sver"'|kube-node
kube-proxy|k8s.io/kubernetes/cmd/kube-proxy|'"$k8sver"'|kube-node
containerd|github.com/containerd/containerd/v2/cmd/containerd|'"$ctrver"'|containerd|'"$ctrtags"'
containerd-shim-runc-v2|github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2|'"$ctrver"'|containerd|'"$ctrtags"'
ctr|github.com/containerd/containerd/v2/cmd/ctr|'"$ctrver"'|containerd|'"$ctrtags"'
bridge|github.com/containernetworking/plugins/plugins/main/bridge|-s -w|cni-plugins
host-local|github.com/containernetworking/plugins/plugins/ipam/host-local|-s -w|cni-plugins
loopback|github.com/containernetworking/plugins/plugins/main/loopback|-s -w|cni-plugins
portmap|github.com/containernetworking/plugins/plugins/meta/portmap|-s -w|cni-plugins
coredns|.|-s -w|coredns
'
# The tools only the real node needs; `hack/tools.sh node` builds just these.
node_tools='kubelet kube-controller-manager kube-scheduler kube-proxy containerd containerd-shim-runc-v2 ctr bridge host-local loopback portmap coredns'

want=()
for a in "$@"; do
  if [ "$a" = node ]; then want+=($node_tools); else want+=("$a"); fi
done
[ ${#want[@]} -eq 0 ] && want=($(printf '%s\n' "$recipes" | awk -F'|' 'NF>1{print $1}'))
gover=$(go env GOVERSION)

for name in "${want[@]}"; do
  line=$(printf '%s\n' "$recipes" | awk -F'|' -v n="$name" '$1==n')
  [ -n "$line" ] || { echo "hack/tools.sh: unknown tool $name" >&2; exit 2; }
  IFS='|' read -r _ pkg ldflags moddir tags <<<"$line"
  dir="$root/hack/tools/${moddir:-$name}"
  srcs=("$dir/go.mod" "$dir/go.sum")
  [ "$pkg" = . ] && srcs+=("$dir"/*.go)
  key=$( { cat "${srcs[@]}"; echo "$line"; echo "$gover"; } | sha256sum | cut -c1-16)
  out="$cache/$name-$key/$name"
  # One lock per tool: parallel runs wait for each other instead of building twice.
  exec 9>"$cache/.lock-$name"
  flock 9
  if [ ! -x "$out" ]; then
    echo "building $name ($pkg) into $out ..." >&2
    start=$(date +%s)
    mkdir -p "$(dirname "$out")"
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out.tmp" "$pkg")
    mv "$out.tmp" "$out"
    echo "built $name in $(( $(date +%s) - start ))s" >&2
  fi
  flock -u 9
  ln -sfn "$out" "$root/bin/$name"
done
