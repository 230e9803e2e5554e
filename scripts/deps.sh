#!/usr/bin/env bash
# Installs what sockbroker needs to build and test on Debian 12 (bookworm):
# every package any build step, test or demo calls, as on a brand-new minimal
# Debian 12 (the debian:bookworm image, or a minbase root).
# tests/deps/check_test_commands.py (ctest: deps_cover_tests) fails when a
# test calls a program that neither this list nor a minimal Debian provides.
#
# Idempotent: asks dpkg what is already installed and says nothing when
# everything is there. Only when something is missing does it run
# `apt-get update` (a fresh container has no package lists) and install
# exactly the missing packages, naming them first. Services that packages
# such as nginx would start on installation are not started (policy-rc.d).
#
# Usage: scripts/deps.sh          (as root when something must be installed)
#        scripts/deps.sh --list   (print the packages, one per line, and exit)
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config
  # libraries the build links against
  libsystemd-dev capnproto libcapnp-dev libseccomp-dev libspdlog-dev
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libcap-dev libmnl-dev
  libssl-dev  # Cap'n Proto's CMake package wants OpenSSL's headers
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # the demo and the integration tests: ip and ss, unshare and setpriv, curl
  iproute2 util-linux curl
  # the status test checks `sockbroker status --prometheus` with the reference parser
  python3 python3-prometheus-client
  # the systemd tests: journald and journalctl (--audit journal), systemd-analyze,
  # systemd-socket-activate
  systemd
  # install_consumers renders the man pages (groff, man -l); systemd_units runs
  # `systemd-analyze verify --man=yes`, which asks man(1) for each Documentation=
  groff-base man-db
  # the nspawn tests (tests/systemd/nspawn): systemd-nspawn boots systemd as
  # PID 1 of a container, whose root file system debootstrap makes
  systemd-container debootstrap
  # tests/servers: the real servers users run, each under `sockbroker run --`
  # (supervised bind) in a private network namespace. `nginx` is Debian 12's
  # core binary (nginx-light/-core only add modules); uwsgi-core is the binary
  # without the init scripts of `uwsgi`; dnsmasq-base is dnsmasq without its
  # service. golang-go builds the Go server (about 80 MB of the ~83 MB these
  # download). nodejs: Debian's 18, or a newer one already installed.
  nginx haproxy lighttpd gunicorn uwsgi-core uwsgi-plugin-python3
  golang-go nodejs dnsmasq-base
)

if [[ "${1:-}" == "--list" ]]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi
if (($# > 0)); then
  echo "usage: scripts/deps.sh [--list]" >&2
  exit 64
fi

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
# Servers the tests run (nginx, haproxy, ...) are started by the tests, in
# private network namespaces: their packages must not start them on the host.
# invoke-rc.d asks /usr/sbin/policy-rc.d first; 101 means "not allowed".
policy_rc=/usr/sbin/policy-rc.d
own_policy_rc=false
if [[ ! -e "$policy_rc" ]]; then
  printf '#!/bin/sh\n# scripts/deps.sh: no service starts while it installs packages\nexit 101\n' >"$policy_rc"
  chmod 0755 "$policy_rc"
  own_policy_rc=true
fi
cleanup() { if $own_policy_rc; then rm -f "$policy_rc"; fi; }
trap cleanup EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "deps.sh: done"
