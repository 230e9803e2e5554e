#!/usr/bin/env bash
# Runs the README's test command (.ci/run) as on a brand-new minimal Debian 12:
# `debootstrap --variant=minbase bookworm` into DIR, a clone of this checkout's
# HEAD in it, and .ci/run there, pivot_root'ed in a private mount namespace with
# the host's /proc, /sys and /dev and a /run and /tmp of its own. A package that
# scripts/deps.sh forgets fails there, where a developer's machine that
# happens to have it passes (tests/deps/check_test_commands.py catches the
# same mistake statically, for the programs the tests name).
#
# About 16 minutes on 2 cores (debootstrap 1-2, then .ci/run took 14 with apt's
# installation; --demo about 7). Not part of .ci/run, whose time it would more
# than double: run it after changing deps.sh, or after adding a test that calls
# a program or package not used before. Commit first: only HEAD is cloned. Do
# not edit this file while it runs (bash reads it as it goes).
#
# Usage: sudo scripts/fresh-debian.sh [--demo] [DIR]
#   --demo: run the README's first command, scripts/demo.sh, instead (the
#   packages, one build, the demo)
#   DIR: where the root is made, removed first (default /var/tmp/sockbroker-fresh-debian)
#   SOCKBROKER_NSPAWN_MIRROR: the Debian mirror (default http://deb.debian.org/debian),
#   as for the nspawn tests
# Exit status: the command's; 69 when the root cannot be made, 77 without root.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
to_run=.ci/run
if [ "${1:-}" = --demo ]; then
  to_run=scripts/demo.sh
  shift
fi
dir=${1:-/var/tmp/sockbroker-fresh-debian}
mirror=${SOCKBROKER_NSPAWN_MIRROR:-http://deb.debian.org/debian}

if ((EUID != 0)); then
  echo "fresh-debian.sh: needs root (debootstrap, chroot, mounts)" >&2
  exit 77
fi
for tool in debootstrap unshare pivot_root git; do
  command -v "$tool" >/dev/null || { echo "fresh-debian.sh: $tool is not installed" >&2; exit 69; }
done

# Two runs on one directory would remove each other's root.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock -n 9 || { echo "fresh-debian.sh: another run is using $dir" >&2; exit 75; }

root=$dir/root
echo "==> A minimal Debian 12 in $root (debootstrap --variant=minbase, $mirror)"
rm -rf "$dir"
mkdir -p "$dir"
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$dir/debootstrap.log" 2>&1; then
  tail -n 30 "$dir/debootstrap.log" >&2
  echo "fresh-debian.sh: debootstrap failed (log: $dir/debootstrap.log)" >&2
  exit 69
fi
# apt-get inside needs the host's resolver; nothing else of the host goes in.
cp /etc/resolv.conf "$root/etc/resolv.conf"

echo "==> Cloning $(git -C "$repo" rev-parse --short HEAD) into $root/root/sockbroker"
git clone --quiet "$repo" "$root/root/sockbroker"

echo "==> $to_run in the fresh root (its own output follows)"
start=$SECONDS
status=0
# The mounts live in a private mount namespace: they vanish with it, however
# the run ends, and the host never sees them. pivot_root rather than chroot:
# in a chroot, unshare(CLONE_NEWUSER) is refused and a process that unshares
# its mount namespace reads its own /proc/self/exe as a host path, which
# tests of user namespaces and of private mounts would fail on.
# shellcheck disable=SC2016  # $root and $to_run are the inner shell's
unshare --mount --propagation private bash -euc '
  root=$1 to_run=$2
  mount --bind "$root" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
  mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
  mount -t tmpfs tmpfs "$root/run"
  mount -t tmpfs tmpfs "$root/tmp"
  mkdir -p "$root/.host"
  cd "$root"
  pivot_root . .host
  umount --lazy /.host
  rmdir /.host
  exec /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /root/sockbroker && $to_run"
' fresh-debian "$root" "$to_run" || status=$?
echo "==> $to_run in a fresh Debian 12: exit $status after $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s"
exit "$status"
