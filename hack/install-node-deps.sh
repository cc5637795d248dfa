#!/usr/bin/env bash
# Installs the Debian packages the real test node needs when they are missing:
# runc (containerd's runtime), iptables and conntrack (kube-proxy), and
# iproute2 (the node's network namespace). Nothing is started or configured
# outside the node's own namespaces.
set -euo pipefail
need=()
[ -x /usr/sbin/runc ] || need+=(runc)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
command -v conntrack >/dev/null 2>&1 || [ -x /usr/sbin/conntrack ] || need+=(conntrack)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need+=(iproute2)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing ${need[*]} with apt-get ..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
