#!/usr/bin/env bash
# Installs Debian's MariaDB server and client when they are missing. The tests
# start private mariadbd instances from temporary datadirs; the packaged
# service is never started.
set -euo pipefail
need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 && command -v mariadb-dump >/dev/null 2>&1 && command -v mariadb-binlog >/dev/null 2>&1 || need+=(mariadb-client)
command -v mariadb-install-db >/dev/null 2>&1 || need+=(mariadb-server)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing ${need[*]} with apt-get ..." >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the package from starting a system mysqld we do not want.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
