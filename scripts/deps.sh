#!/usr/bin/env bash
# Installs what sockbroker needs to build and test on Debian 12 (bookworm).
#
# Idempotent: asks dpkg what is already installed and says nothing when
# everything is there. Only when something is missing does it run
# `apt-get update` (a fresh container has no package lists) and install
# exactly the missing packages, naming them first.
#
# Usage: scripts/deps.sh          (as root when something must be installed)
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config
  # libraries the build links against
  libsystemd-dev capnproto libcapnp-dev libseccomp-dev libspdlog-dev
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libcap-dev
  libssl-dev  # Cap'n Proto's CMake package wants OpenSSL's headers
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # the demo and the integration tests: ip, unshare/setpriv, curl
  iproute2 util-linux curl
  # the status test checks `sockbroker status --prometheus` with the reference parser
  python3-prometheus-client
  # the systemd tests: journald and journalctl (--audit journal), systemd-analyze,
  # systemd-socket-activate
  systemd
)

missing=()
for package in "${packages[@]}"; do
  # "install ok installed" only for a package that is fully installed; a
  # removed-but-configured or half-installed one counts as missing.
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if ((EUID != 0)); then
  echo "deps.sh: missing packages: ${missing[*]}" >&2
  echo "deps.sh: run as root (sudo scripts/deps.sh) to install them" >&2
  exit 1
fi

echo "deps.sh: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "deps.sh: done"
