#!/usr/bin/env bash
# Installs the build as a user would (`cmake --install BUILD --prefix
# /usr/local`), into STAGE instead of / (DESTDIR), so that the containers get
# it at /usr/local (read-only) with the installed units, whose ExecStart= name
# /usr/local/sbin/sockbrokerd and /usr/local/bin/sockbroker. Adds the demo
# HTTP server, which is not installed. Done at every ctest run (a second or
# so): the containers always run the binaries just built.
#
# Usage: stage.sh BUILD STAGE DEMO_HTTPD
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 3 ] || { echo "usage: $0 BUILD STAGE DEMO_HTTPD" >&2; exit 64; }
build=$1 stage=$2 httpd=$3
nspawn_require_root "nspawn stage"

rm -rf "$stage".tmp.*
tmp=$(mktemp -d "$stage.tmp.XXXXXX")
chmod 0755 "$tmp"
if ! DESTDIR=$tmp cmake --install "$build" --prefix /usr/local >"$tmp.log" 2>&1; then
  cat "$tmp.log" >&2
  nspawn_fail "cmake --install failed (log above)"
fi
rm -f "$tmp.log"
install -m 0755 "$httpd" "$tmp/usr/local/bin/sockbroker-demo-httpd"
for unit in sockbroker.socket sockbroker.service; do
  [ -f "$tmp/usr/local/lib/systemd/system/$unit" ] || nspawn_fail "cmake --install did not install $unit in /usr/local/lib/systemd/system"
done
rm -rf "$stage"
mv "$tmp" "$stage"
echo "nspawn stage: installed the build into $stage/usr/local"
