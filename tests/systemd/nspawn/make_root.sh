#!/usr/bin/env bash
# Makes the root file system the nspawn tests boot: a minimal Debian 12 with
# systemd as PID 1, the tools the tests call inside, and the run-time
# libraries of the binaries given (found with ldd, so that a new dependency of
# the broker reaches the container without anyone editing a list).
#
# About 2 minutes and 200 MB, once per build directory: the root is reused
# while its stamp (the package list and the version of this recipe) is
# unchanged. The tests boot it with --volatile=overlay, so no run changes it.
#
# Usage: make_root.sh ROOT BINARY...
#   SOCKBROKER_NSPAWN_MIRROR: the Debian mirror (default http://deb.debian.org/debian)
# Needs root: exits 77 (skip) without it, or fails when SOCKBROKER_TEST_REQUIRE_ROOT=1.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 2 ] || { echo "usage: $0 ROOT BINARY..." >&2; exit 64; }
root=$1
shift
nspawn_require_root "nspawn root"
command -v debootstrap >/dev/null || nspawn_fail "debootstrap is not installed (scripts/deps.sh installs it)"

# systemd, systemd-sysv and dbus boot the container; the rest is what the
# test scripts call inside it (ip, ps and pkill, curl, python3 for JSON).
packages=(systemd systemd-sysv dbus iproute2 procps curl python3)
# The Debian package of each library the binaries load. dpkg knows usrmerged
# files by their /usr-less names too (/lib/x86_64-linux-gnu/...), so both are
# asked, all in one dpkg-query (one per library takes half a minute).
libraries=()
for binary in "$@"; do
  [ -x "$binary" ] || nspawn_fail "$binary: no such program (build it first)"
  mapfile -t -O "${#libraries[@]}" libraries < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }')
done
candidates=()
for library in "${libraries[@]}"; do
  for path in "$library" "$(readlink -f "$library")"; do
    candidates+=("$path" "${path#/usr}" "/usr$path")
  done
done
owners=$(dpkg-query -S "${candidates[@]}" 2>/dev/null | grep -v '^diversion' || true)
for library in "${libraries[@]}"; do
  package=
  for path in "$library" "$(readlink -f "$library")"; do
    for candidate in "$path" "${path#/usr}" "/usr$path"; do
      package=$(awk -F': ' -v path="$candidate" '$2 == path { split($1, p, /[:,]/); print p[1]; exit }' <<<"$owners")
      [ -n "$package" ] && break 2
    done
  done
  [ -n "$package" ] || nspawn_fail "a binary loads $library, which no Debian package installed: the container cannot have it"
  packages+=("$package")
done
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)

# The root is reused only if it was made from this list the way this script
# makes it now: raise the version when the way changes.
stamp_name=.sockbroker-nspawn-root
stamp="version 1, bookworm minbase: ${packages[*]}"
if [ "$(cat "$root/$stamp_name" 2>/dev/null)" = "$stamp" ]; then
  echo "nspawn root: $root is up to date"
  exit 0
fi

# Two ctest runs on one build directory must not build it twice at once.
exec 9>"$root.lock"
flock 9
if [ "$(cat "$root/$stamp_name" 2>/dev/null)" = "$stamp" ]; then
  echo "nspawn root: $root is up to date (made meanwhile)"
  exit 0
fi

# Built beside the final name and renamed when complete: an interrupted build
# leaves a temporary directory (removed by the next run), never a half root.
rm -rf "$root".tmp.* "$root".old.*
tmp=$(mktemp -d "$root.tmp.XXXXXX")
chmod 0755 "$tmp"
mirror=${SOCKBROKER_NSPAWN_MIRROR:-http://deb.debian.org/debian}
include=$(IFS=,; echo "${packages[*]}")
echo "nspawn root: debootstrap --variant=minbase --include=$include bookworm $root ($mirror; about 2 minutes)"
start=$SECONDS
if ! debootstrap --variant=minbase --include="$include" bookworm "$tmp" "$mirror" >"$tmp.log" 2>&1; then
  tail -n 30 "$tmp.log" >&2
  tail -n 30 "$tmp/debootstrap/debootstrap.log" >&2 2>/dev/null || true
  rm -rf "$tmp" "$tmp.log"
  nspawn_fail "debootstrap failed (log above)"
fi
rm -f "$tmp.log"
# The downloaded packages are not needed once installed (about 70 MB).
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
echo "$stamp" >"$tmp/$stamp_name"

old=
if [ -e "$root" ]; then
  old=$(mktemp -d "$root.old.XXXXXX")
  mv "$root" "$old/"
fi
mv "$tmp" "$root"
[ -z "$old" ] || rm -rf "$old"
echo "nspawn root: made $root in $((SECONDS - start)) s ($(du -sm "$root" | cut -f1) MB)"
