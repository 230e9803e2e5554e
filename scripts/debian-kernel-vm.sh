#!/usr/bin/env bash
# Runs a command on Debian 12's own kernel (linux-image-amd64, 6.1.0-*): a
# Debian 12 machine boots 6.1, which lacks SO_PEERPIDFD (6.5) and Landlock
# network rules (6.7), while CI and most developers run a newer kernel. The
# machine is qemu with software emulation (TCG: no KVM needed, nested KVM can
# hang) booting a cached minbase root with the packages of scripts/deps.sh and
# a copy of this checkout (build/ included, so build first) at the same
# absolute path, since the test binaries have absolute paths compiled in. The
# command runs there as root, its init the machine's PID 1, with the host's
# cgroup layout.
#
# The first run makes the root: 4-7 minutes, depending on the mirror. Then
# each run costs about 30 s of overhead plus the command at roughly 5-10 times
# the host's time (the integration tests took about 5 minutes, everything but
# the nspawn tests about 8) on the host's CPUs and 6 GiB. The output comes when
# the machine stops; DIR/console.log shows it meanwhile. The machine has no
# network: the nspawn tests run there only on the container root a host run of
# them left in build/nspawn-root, and need SOCKBROKER_NSPAWN_TIME_SCALE=5 for
# the slowest (tests/systemd/nspawn/lib.sh). Timing-sensitive tests may behave
# differently under emulation.
# Run it after touching code that depends on the kernel's version. Do not edit
# this file while it runs (bash reads it as it goes).
#
# Usage: sudo scripts/debian-kernel-vm.sh [--dir DIR] [--timeout SECONDS] [--rebuild] COMMAND
#   e.g. sudo scripts/debian-kernel-vm.sh 'cd build && ctest -j2 -LE "soak|nspawn"'
#   COMMAND: run with bash in the checkout's copy
#   DIR: the cached root (DIR/root), the image, DIR/console.log and the
#   command's output DIR/output.txt (default /var/tmp/sockbroker-debian-kernel-vm)
#   --timeout: the machine is killed after SECONDS (default 3600)
#   --rebuild: make the root again
#   SOCKBROKER_NSPAWN_MIRROR: the Debian mirror (default http://deb.debian.org/debian)
# Prints the command's output. Exit status: the command's; 124 on timeout; 69
# when the machine cannot be made or did not run the command; 77 without root.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=/var/tmp/sockbroker-debian-kernel-vm
timeout=3600
rebuild=false
mirror=${SOCKBROKER_NSPAWN_MIRROR:-http://deb.debian.org/debian}
usage() {
  echo "usage: sudo scripts/debian-kernel-vm.sh [--dir DIR] [--timeout SECONDS] [--rebuild] COMMAND" >&2
  exit 64
}
while (($#)); do
  case $1 in
    --dir) (($# > 1)) || usage; dir=$2; shift 2 ;;
    --timeout) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || usage; timeout=$2; shift 2 ;;
    --rebuild) rebuild=true; shift ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
  esac
done
(($# == 1)) || usage
command=$1

if ((EUID != 0)); then
  echo "debian-kernel-vm.sh: needs root (debootstrap, chroot, mkfs)" >&2
  exit 77
fi
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v debugfs >/dev/null || need+=(e2fsprogs)
command -v rsync >/dev/null || need+=(rsync)
if ((${#need[@]})); then
  echo "==> Installing on the host: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get -o DPkg::Lock::Timeout=900 update -qq &&
    apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${need[@]}"; } ||
    { echo "debian-kernel-vm.sh: cannot install ${need[*]}" >&2; exit 69; }
fi

# The root and the image are shared by every run on DIR.
mkdir -p "$dir"
exec 9>"$dir/lock"
if ! flock -n 9; then
  echo "==> Another run is using $dir: waiting for it"
  flock 9
fi
root=$dir/root

# Mounts live in a private mount namespace: they vanish with it, however the
# step ends, and the host never sees them.
in_root() {
  # shellcheck disable=SC2016  # $1 and $2 are the inner shell's
  unshare --mount --propagation private bash -euc '
    mount -t proc proc "$1/proc"
    mount --rbind /sys "$1/sys"
    mount --rbind /dev "$1/dev"
    exec chroot "$1" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin bash -euc "$2"
  ' in_root "$root" "$1"
}

if $rebuild || [[ ! -e $dir/root.done ]]; then
  echo "==> A Debian 12 root with its kernel in $root (debootstrap --variant=minbase, $mirror; about 7 min)"
  rm -f "$dir/root.done"
  rm -rf --one-file-system "$root"
  if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$dir/debootstrap.log" 2>&1; then
    tail -n 30 "$dir/debootstrap.log" >&2
    echo "debian-kernel-vm.sh: debootstrap failed (log: $dir/debootstrap.log)" >&2
    exit 69
  fi
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  echo vm >"$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 vm\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  # The kernel's initrd finds the virtio disk and ext4 (MODULES=most).
  # iproute2: the init brings lo up.
  in_root 'apt-get update -qq
    apt-get install -y -qq --no-install-recommends linux-image-amd64 initramfs-tools iproute2' \
    >"$dir/setup.log" 2>&1 ||
    { tail -n 30 "$dir/setup.log" >&2; echo "debian-kernel-vm.sh: installing the kernel failed (log: $dir/setup.log)" >&2; exit 69; }
  touch "$dir/root.done"
fi
# Every run, so that the root gets the packages deps.sh gained since it was
# made (deps.sh does nothing when all are there).
cp "$repo/scripts/deps.sh" "$root/root/deps.sh"
in_root /root/deps.sh >>"$dir/setup.log" 2>&1 ||
  { tail -n 30 "$dir/setup.log" >&2; echo "debian-kernel-vm.sh: scripts/deps.sh failed in $root (log: $dir/setup.log)" >&2; exit 69; }
kernel=$(find "$root/boot" -name 'vmlinuz-*' | sort -V | tail -n 1)
initrd=$(find "$root/boot" -name 'initrd.img-*' | sort -V | tail -n 1)
[[ -n $kernel && -n $initrd ]] || { echo "debian-kernel-vm.sh: no kernel in $root/boot: try --rebuild" >&2; exit 69; }

echo "==> Copying $repo into the root (without .git, build-asan, build-bench, *.o)"
mkdir -p "$root$repo"
rsync -a --delete --delete-excluded \
  --exclude=/.git --exclude=/build-asan --exclude=/build-bench --exclude='*.o' \
  "$repo/" "$root$repo/"
rm -f "$root/root/vm-output.txt" "$root/root/vm-status.txt"
printf 'cd %q || exit 1\n%s\n' "$repo" "$command" >"$root/root/vm-command.sh"
# Tests see the cgroup hierarchies as the host mounts them (TARGET TYPE OPTIONS).
findmnt -rn -o TARGET,FSTYPE,OPTIONS | awk '$1 ~ "^/sys/fs/cgroup(/|$)"' >"$root/root/vm-cgroups"
cat >"$root/root/vm-init.sh" <<'INIT'
#!/bin/bash
# PID 1 of the machine, written by scripts/debian-kernel-vm.sh.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root USER=root LOGNAME=root SHELL=/bin/bash LANG=C.UTF-8 TERM=dumb
umask 022

mnt() { mountpoint -q "${@: -1}" 2>/dev/null || mount "$@" 2>/dev/null || echo "vm-init: mount $* failed" >/dev/console; }

mount -o remount,rw / 2>/dev/null
mnt -t proc -o nosuid,nodev,noexec proc /proc
mnt -t sysfs -o nosuid,nodev,noexec sysfs /sys
mnt -t devtmpfs -o mode=0755,nosuid devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
mnt -t devpts -o gid=5,mode=0620,ptmxmode=0666,nosuid,noexec devpts /dev/pts
mnt -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mnt -t mqueue -o nosuid,nodev,noexec mqueue /dev/mqueue
mnt -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/lock /run/user && chmod 1777 /run/lock
mnt -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mnt -t securityfs -o nosuid,nodev,noexec securityfs /sys/kernel/security
mnt -t debugfs -o nosuid,nodev,noexec debugfs /sys/kernel/debug
mnt -t bpf -o nosuid,nodev,noexec,mode=700 bpf /sys/fs/bpf
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
# The host's cgroup hierarchies. One it lists with a name= but no controller
# needs "none" here (name=systemd).
while read -r target type options; do
  mkdir -p "$target"
  mount -t "$type" -o "$options" "$type" "$target" 2>/dev/null ||
    mnt -t "$type" -o "$options,none" "$type" "$target"
done </root/vm-cgroups

ip link set lo up
hostname vm
[ -s /etc/machine-id ] || systemd-machine-id-setup >/dev/null 2>&1 || true
ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null

echo "vm-init: $(uname -r), running /root/vm-command.sh" >/dev/console
bash /root/vm-command.sh </dev/null 2>&1 | tee /root/vm-output.txt >/dev/console
status=${PIPESTATUS[0]}
echo "$status" >/root/vm-status.txt
echo "vm-init: command exited with status $status" >/dev/console

# Leave the file system clean for the host to read.
kill -TERM -1 2>/dev/null; sleep 1; kill -KILL -1 2>/dev/null
sync
cd /
mount -o remount,ro / 2>/dev/null
sync
echo o >/proc/sysrq-trigger
sleep 10
poweroff -f
INIT
chmod 0755 "$root/root/vm-init.sh"

image=$dir/image.ext4
echo "==> The disk image $image"
used_kb=$(du -sxk "$root" | cut -f1)
rm -f "$image"
# 4 GiB free for the command's files.
mkfs.ext4 -q -F -L vmroot -E root_owner=0:0 -d "$root" "$image" "$((used_kb * 12 / 10240 + 4096))M" >/dev/null

console=$dir/console.log
echo "==> Booting $(basename "$kernel") under qemu (TCG, timeout ${timeout}s; console: $console)"
start=$SECONDS
qemu=0
timeout -k 20 "$timeout" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "$(nproc)" -m 6G \
  -nographic -no-reboot -nic none -kernel "$kernel" -initrd "$initrd" \
  -drive "file=$image,format=raw,if=virtio,cache=unsafe" \
  -append "root=LABEL=vmroot rootfstype=ext4 rw console=ttyS0 init=/root/vm-init.sh quiet panic=-1 fsck.mode=skip" \
  </dev/null >"$console" 2>&1 || qemu=$?

# Replays the journal if the machine did not shut down cleanly.
e2fsck -E journal_only -y "$image" >/dev/null 2>&1 || true
rm -f "$dir/output.txt"
debugfs -R "dump /root/vm-output.txt $dir/output.txt" "$image" >/dev/null 2>&1 || true
status=$(debugfs -R 'cat /root/vm-status.txt' "$image" 2>/dev/null | tr -dc 0-9) || true
[[ -e $dir/output.txt ]] && cat "$dir/output.txt"
if ((qemu == 124 || qemu == 137)); then
  echo "==> Timeout after ${timeout}s; the console's tail:" >&2
  tail -n 40 "$console" | tr -d '\r' >&2
  exit 124
fi
if [[ -z $status ]]; then
  echo "==> The machine left no status (qemu exit $qemu); the console's tail:" >&2
  tail -n 40 "$console" | tr -d '\r' >&2
  exit 69
fi
echo "==> Exit $status after $((SECONDS - start)) s in the machine (kernel $(basename "$kernel"))"
exit "$status"
