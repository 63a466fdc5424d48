#!/usr/bin/env bash
# Install a single-node SLURM (slurmctld, slurmd, slurmdbd), munge and MariaDB from Debian,
# for tests/test_slurm.py. Idempotent: does nothing when everything is already installed.
# Installs only; configuring and starting the daemons is done by the test's session fixture
# (in a temp dir), so nothing here touches /etc/slurm or starts a service.
set -euo pipefail

PKGS=(slurm-wlm slurmdbd slurm-client munge mariadb-server mariadb-client)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-slurm: all present (${PKGS[*]})"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-slurm: installing ${missing[*]}"
# policy-rc.d 101: apt must not start the services (no init system in a container; the test
# starts its own daemons with its own config).
restore_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  restore_policy=1
fi
trap '[ $restore_policy -eq 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-slurm: done ($(dpkg-query -W -f='${Package} ${Version} ' "${PKGS[@]}"))"
