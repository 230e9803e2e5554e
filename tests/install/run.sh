#!/usr/bin/env bash
# The installed tree, tested the way a user meets it: `cmake --install` into a
# temporary prefix, then out-of-tree programs built against that prefix only
#   - c_consumer.c with `pkg-config sockbroker` (shared, and static with --static)
#   - cxx_consumer/ with find_package(sockbroker) (shared and static, and a
#     C++-only project with the shared library)
# each of which acquires a socket, as uid 65534, from the *installed*
# sockbrokerd running in a private network namespace. Also checks the installed
# headers, man pages, systemd units and examples, and that libsockbroker.so
# exports the public API and nothing else (nm -D; cmake/libsockbroker.map).
#
# Usage: run.sh BUILD_DIR SOURCE_DIR      (ctest runs it; label "install")
# Needs root (network namespace, port 80, uid switch): exits 77 (skip) without
# it, or fails when SOCKBROKER_TEST_REQUIRE_ROOT=1.
# SOCKBROKER_TEST_SANITIZE=1: the build under test is ASan+UBSan, so the
# consumers are built with the same flags (an instrumented libsockbroker.a
# does not link into a plain program).
set -euo pipefail

fail() { echo "install test: FAIL: $*" >&2; exit 1; }
step() { echo "==> $*"; }

[ $# -eq 2 ] || { echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2; exit 64; }
build=$(cd "$1" && pwd)
source=$(cd "$2" && pwd)
here="$source/tests/install"

# shellcheck source=../skip_or_fail.sh
source "$here/../skip_or_fail.sh"
sbtest_require_root "install test" "network namespace, port 80, uid 65534 clients"

# Everything below runs in a private network namespace: port 80 here is not
# the host's, and nothing is left listening when the script ends. And in a
# private mount namespace: the ldconfig step puts a tmpfs on /usr/local and a
# loader cache of its own on /etc/ld.so.cache, which the host never sees.
if [ -z "${SOCKBROKER_INSTALL_TEST_NETNS:-}" ]; then
  exec unshare --net --mount --propagation private env SOCKBROKER_INSTALL_TEST_NETNS=1 bash "$0" "$@"
fi
ip link set lo up || fail "cannot bring lo up in the private network namespace"

# uid 65534 must reach the consumers, the libraries and the control socket.
work=$(mktemp -d /tmp/sockbroker-install-test.XXXXXX)
chmod 0755 "$work"
broker_pid=
cleanup() {
  if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

flags=(-Wall -Wextra -Werror)
sanitize=()
if [ "${SOCKBROKER_TEST_SANITIZE:-0}" = 1 ]; then
  sanitize=("-fsanitize=address,undefined" -fno-sanitize-recover=all)
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
fi

step "cmake --install $build --prefix $work/prefix"
prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; fail "cmake --install failed (is the build complete? cmake --build $build)"; }

pc=$(find "$prefix" -name sockbroker.pc -path '*/pkgconfig/*')
[ -n "$pc" ] || fail "no sockbroker.pc installed under $prefix"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir sockbroker)
includedir=$(pkg-config --variable=includedir sockbroker)
# The .pc file locates itself (${pcfiledir}): its paths must be inside the prefix.
[ "$(cd "$libdir" && pwd)" = "$(cd "$(dirname "$pc")/.." && pwd)" ] || fail "pkg-config libdir $libdir is not where sockbroker.pc is"
[ "$(pkg-config --modversion sockbroker)" = "$(sed -n 's/^project(sockbroker VERSION \([0-9.]*\).*/\1/p' "$source/CMakeLists.txt")" ] ||
  fail "pkg-config --modversion sockbroker does not match the project version"

step "installed files"
for f in sbin/sockbrokerd bin/sockbroker \
         share/man/man1/sockbroker.1 share/man/man5/sockbroker.toml.5 share/man/man8/sockbrokerd.8 \
         lib/systemd/system/sockbroker.socket lib/systemd/system/sockbroker.service \
         share/doc/sockbroker/examples/demo.toml share/doc/sockbroker/examples/myapp.service \
         include/sockbroker/client.h include/sockbroker/client.hpp include/sockbroker/fd.hpp \
         include/sockbroker/status.hpp; do
  [ -f "$prefix/$f" ] || fail "$f is not installed"
done
for f in sbin/sockbrokerd bin/sockbroker; do [ -x "$prefix/$f" ] || fail "$f is not executable"; done
[ -f "$libdir/libsockbroker.a" ] || fail "libsockbroker.a is not in $libdir"
[ -L "$libdir/libsockbroker.so" ] || fail "libsockbroker.so (the link-time symlink) is not in $libdir"
soname=$(readelf -d "$libdir/libsockbroker.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ -n "$soname" ] || fail "libsockbroker.so has no SONAME"
[ -e "$libdir/$soname" ] || fail "SONAME $soname has no file in $libdir"
for f in sockbrokerConfig.cmake sockbrokerConfigVersion.cmake sockbrokerSharedTargets.cmake sockbrokerStaticTargets.cmake; do
  [ -f "$libdir/cmake/sockbroker/$f" ] || fail "cmake/sockbroker/$f is not installed in $libdir"
done
# The units start the binaries of *this* prefix, not the source's /usr/local.
grep -qx "ExecStart=$prefix/sbin/sockbrokerd --audit journal" "$prefix/lib/systemd/system/sockbroker.service" ||
  fail "sockbroker.service: ExecStart does not name $prefix/sbin/sockbrokerd"
grep -q "^ExecStart=$prefix/bin/sockbroker run " "$prefix/share/doc/sockbroker/examples/myapp.service" ||
  fail "examples/myapp.service: ExecStart does not name $prefix/bin/sockbroker"
for page in "$prefix"/share/man/man*/*; do
  warnings=$(groff -man -Tutf8 -ww -z "$page" 2>&1) || fail "groff failed on $page"
  [ -z "$warnings" ] || fail "groff warns about $page: $warnings"
  MANWIDTH=80 man -l "$page" >/dev/null 2>&1 || fail "man -l $page failed"
done
echo "installed: $(cd "$prefix" && find . -type f | wc -l) files; SONAME $soname"

step "libsockbroker.so exports the public API and nothing else (nm -D)"
# "NAME<TAB>DEMANGLED" for each defined global symbol whose nm type matches
# TYPES (a regular expression), in what nm says of the other arguments.
symbols() {
  local types=$1 names
  shift
  names=$(nm -g --defined-only --format=posix "$@" | awk -v t="^($types)\$" 'NF >= 2 && $2 ~ t { print $1 }' | sort -u)
  [ -n "$names" ] || return 0
  paste <(echo "$names") <(echo "$names" | c++filt)
}
# Whether a demangled symbol is public API: a function client.h declares, or
# a function of namespace sockbroker or of class sockbroker::Client that
# client.hpp declares (fd.hpp is inline only). Internal namespaces
# (sockbroker::detail, ::proto, ::wire, ::lockdown_filter, ::lockdown_layers),
# template instances of std, kj or capnp, typeinfo and the like are not.
public_api() {
  local qualified
  qualified=$(sed -e 's/(.*//' -e 's/\[abi:[^]]*\]//g' <<<"$1")
  if [[ $qualified =~ ^sockbroker_[a-z_]+$ ]]; then
    grep -Eq "\<$qualified\(" "$includedir/sockbroker/client.h"
  elif [[ $qualified =~ ^sockbroker::(Client::)?~?([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
    grep -Eq "\<${BASH_REMATCH[2]}\(" "$includedir/sockbroker/client.hpp"
  else
    return 1
  fi
}
exported=$(symbols . -D "$libdir/$soname")
[ -n "$exported" ] || fail "libsockbroker.so exports nothing"
declare -A is_exported=()
while IFS=$'\t' read -r name demangled; do
  public_api "$demangled" || fail "libsockbroker.so exports $demangled ($name), which is not public API (cmake/libsockbroker.map)"
  is_exported[$name]=1
done <<<"$exported"
# The other way round: libsockbroker.a keeps every symbol, so each public
# function defined there (nm type T) must be exported by the .so too, or a
# program that links with the archive would not link with the .so.
archived=0
while IFS=$'\t' read -r name demangled; do
  public_api "$demangled" || continue
  archived=$((archived + 1))
  [ -n "${is_exported[$name]:-}" ] ||
    fail "libsockbroker.so does not export $demangled, which the public headers declare (add it to cmake/libsockbroker.map)"
done < <(symbols T "$libdir/libsockbroker.a")
[ "$archived" -gt 0 ] || fail "libsockbroker.a defines no public function: is the check still right?"
echo "libsockbroker.so exports ${#is_exported[@]} symbols, all public; the $archived public functions of libsockbroker.a are all among them"

step "installed headers: public includes only, each compiles alone"
if grep -n '#include "' "$includedir"/sockbroker/*; then fail "an installed header includes a private (quoted) header"; fi
for h in "$includedir"/sockbroker/*.hpp "$includedir"/sockbroker/*.h; do
  echo "#include <sockbroker/$(basename "$h")>" | c++ -std=c++20 "${flags[@]}" -fsyntax-only -I"$includedir" -x c++ - ||
    fail "$(basename "$h") does not compile alone as C++20"
done
for h in "$includedir"/sockbroker/*.h; do
  echo "#include <sockbroker/$(basename "$h")>" | cc -std=c11 -pedantic "${flags[@]}" -fsyntax-only -I"$includedir" -x c - ||
    fail "$(basename "$h") does not compile alone as C11"
done

step "C consumer, shared: cc \$(pkg-config --cflags --libs sockbroker)"
# shellcheck disable=SC2046 # word splitting of pkg-config output is intended
cc -std=c11 -pedantic "${flags[@]}" "${sanitize[@]}" "$here/c_consumer.c" -o "$work/c_consumer" \
  $(pkg-config --cflags --libs sockbroker) -Wl,-rpath,"$libdir" || fail "cannot build c_consumer against the installed library"
readelf -d "$work/c_consumer" | grep "NEEDED.*\[$soname\]" >/dev/null || fail "c_consumer does not link $soname"

step "C consumer, static: the README's recipe (Linking), word for word"
# The one command line of the README's sh blocks that names libsockbroker.a
# (continuation lines joined), run as it stands in a directory whose
# myserver.c is c_consumer.c. Only cc gets this test's warnings and, in the
# sanitizer build, the sanitizers (an instrumented archive needs them).
recipe=$(awk '/^```sh$/ { block = 1; next } /^```/ { block = 0 } block' "$source/README.md" |
         sed -e ':a' -e '/\\$/{N; s/\\\n//; ba' -e '}' | grep -E '^cc .*libsockbroker\.a' || true)
[ -n "$recipe" ] && [ "$(wc -l <<<"$recipe")" -eq 1 ] ||
  fail "README.md: no single static-link command line naming libsockbroker.a in its sh blocks (Linking)"
echo "$recipe"
mkdir "$work/readme"
cp "$here/c_consumer.c" "$work/readme/myserver.c"
(
  cc() { command cc -std=c11 -pedantic "${flags[@]}" "${sanitize[@]}" "$@"; }
  cd "$work/readme" && eval "$recipe"
) || fail "the README's static-link recipe does not link c_consumer.c"
mv "$work/readme/myserver" "$work/c_consumer_static"
if readelf -d "$work/c_consumer_static" | grep "NEEDED.*libsockbroker" >/dev/null; then fail "c_consumer_static still needs libsockbroker.so"; fi

step "C++ consumer: find_package(sockbroker COMPONENTS static), CMAKE_PREFIX_PATH=$prefix"
cxx_flags="${sanitize[*]}"
cmake -S "$here/cxx_consumer" -B "$work/cxx" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCONSUMER_STATIC=ON -DCMAKE_CXX_FLAGS="$cxx_flags" -DCMAKE_C_FLAGS="$cxx_flags" >"$work/cxx-configure.log" 2>&1 ||
  { cat "$work/cxx-configure.log" >&2; fail "find_package(sockbroker COMPONENTS static) failed"; }
cmake --build "$work/cxx" >"$work/cxx-build.log" 2>&1 || { cat "$work/cxx-build.log" >&2; fail "cannot build cxx_consumer"; }
readelf -d "$work/cxx/cxx_consumer" | grep "NEEDED.*\[$soname\]" >/dev/null || fail "cxx_consumer (sockbroker::client) does not link $soname"
if readelf -d "$work/cxx/cxx_consumer_static" | grep "NEEDED.*libsockbroker" >/dev/null; then
  fail "cxx_consumer_static (sockbroker::client_static) still needs libsockbroker.so"
fi

step "C++ consumer: a C++-only project, find_package(sockbroker) for the shared library"
cmake -S "$here/cxx_consumer" -B "$work/cxx-only" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCONSUMER_STATIC=OFF -DCMAKE_CXX_FLAGS="$cxx_flags" >"$work/cxx-only-configure.log" 2>&1 ||
  { cat "$work/cxx-only-configure.log" >&2; fail "find_package(sockbroker) failed in a C++-only project"; }
cmake --build "$work/cxx-only" >"$work/cxx-only-build.log" 2>&1 || { cat "$work/cxx-only-build.log" >&2; fail "cannot build the C++-only cxx_consumer"; }

step "cmake --install --prefix /usr/local, then ldconfig (README, Linking): a consumer with no rpath"
# As the README tells a user, in this test's mount namespace: /usr/local is
# an empty tmpfs here, and the loader reads our cache, bind-mounted on
# /etc/ld.so.cache. ldconfig -C writes that cache because plain ldconfig
# would rename(2) a new file onto /etc/ld.so.cache, which a mount point
# refuses; it reads the same /etc/ld.so.conf (Debian's lists /usr/local/lib).
cache_mounted=0
private_ldconfig() {
  ldconfig -C "$work/ld.so.cache" >>"$work/ldconfig.log" 2>&1 || { cat "$work/ldconfig.log" >&2; fail "ldconfig -C failed"; }
  if [ "$cache_mounted" = 1 ]; then umount /etc/ld.so.cache; fi
  mount --bind "$work/ld.so.cache" /etc/ld.so.cache || fail "cannot bind-mount a private /etc/ld.so.cache"
  cache_mounted=1
}
mount -t tmpfs -o mode=0755 sockbroker-install-test /usr/local || fail "cannot mount a tmpfs on /usr/local (private)"
private_ldconfig  # the system without libsockbroker, as before any install
cmake --install "$build" --prefix /usr/local >"$work/install-usr-local.log" 2>&1 ||
  { cat "$work/install-usr-local.log" >&2; fail "cmake --install --prefix /usr/local failed"; }
# Built as the README's shared recipe, with pkg-config's own search path.
# shellcheck disable=SC2046
cc -std=c11 -pedantic "${flags[@]}" "${sanitize[@]}" "$here/c_consumer.c" -o "$work/c_consumer_ldconfig" \
  $(env -u PKG_CONFIG_PATH pkg-config --cflags --libs sockbroker) ||
  fail "cannot build c_consumer against /usr/local with pkg-config's default search path"
if readelf -d "$work/c_consumer_ldconfig" | grep -E '\((RPATH|RUNPATH)\)'; then fail "c_consumer_ldconfig has an rpath"; fi
# What the README warns of: installed, but not yet in the loader's cache.
# (ldd into a file: grep -q on a pipe could end ldd with SIGPIPE, which pipefail reports.)
ldd "$work/c_consumer_ldconfig" >"$work/ldd-before.log" 2>&1 || true
grep -q "$soname => not found" "$work/ldd-before.log" ||
  { cat "$work/ldd-before.log" >&2; fail "the loader finds $soname before ldconfig ran (is the README's warning still true?)"; }

step "the installed sockbrokerd, in a private network namespace"
mkdir -m 0755 "$work/run"
cat >"$work/policy.toml" <<'TOML'
[socket.web]
listen = "127.0.0.1:80"

[[socket.web.allow]]
user = 65534
TOML
control="$work/run/control.sock"
"$prefix/sbin/sockbrokerd" --policy "$work/policy.toml" --control "$control" --audit "$work/audit.log" \
  2>"$work/broker.log" &
broker_pid=$!
for _ in $(seq 100); do
  [ -S "$control" ] && break
  kill -0 "$broker_pid" 2>/dev/null || { cat "$work/broker.log" >&2; fail "sockbrokerd exited at start-up"; }
  sleep 0.1
done
[ -S "$control" ] || { cat "$work/broker.log" >&2; fail "sockbrokerd did not create $control within 10 s"; }

run_consumer() {
  step "as uid 65534: ${1#"$work"/}"
  setpriv --reuid=65534 --regid=65534 --clear-groups "$1" "$control" web ||
    { cat "$work/broker.log" >&2; fail "${1#"$work"/} did not get a listening socket from the installed broker"; }
}
# Here the loader's cache still lacks libsockbroker, and the static consumer
# has no rpath: it finds everything it needs without libsockbroker.so.
ldd "$work/c_consumer_static" >"$work/ldd-static.log" 2>&1 || { cat "$work/ldd-static.log" >&2; fail "ldd c_consumer_static failed"; }
if grep -E 'libsockbroker|not found' "$work/ldd-static.log"; then fail "c_consumer_static needs a library the loader cannot find, or libsockbroker"; fi
consumers=("$work/c_consumer" "$work/c_consumer_static" "$work/cxx/cxx_consumer" "$work/cxx/cxx_consumer_static"
           "$work/cxx-only/cxx_consumer")
for consumer in "${consumers[@]}"; do
  run_consumer "$consumer"
done

step "ldconfig: the consumer of /usr/local/lib finds $soname"
private_ldconfig
ldd "$work/c_consumer_ldconfig" >"$work/ldd-after.log" 2>&1 || { cat "$work/ldd-after.log" >&2; fail "ldd c_consumer_ldconfig failed"; }
grep -q "$soname => /usr/local/lib/$soname" "$work/ldd-after.log" ||
  { cat "$work/ldd-after.log" >&2; fail "after ldconfig the loader does not find /usr/local/lib/$soname"; }
consumers+=("$work/c_consumer_ldconfig")
run_consumer "$work/c_consumer_ldconfig"

step "stopping sockbrokerd (SIGTERM)"
kill -TERM "$broker_pid"
status=0
wait "$broker_pid" || status=$?
broker_pid=
[ "$status" -eq 0 ] || { cat "$work/broker.log" >&2; fail "sockbrokerd exited with $status after SIGTERM"; }
grants=$(grep -c '"event":"grant".*"uid":65534' "$work/audit.log" || true)
[ "$grants" -eq "${#consumers[@]}" ] || fail "audit log has $grants grants to uid 65534, expected ${#consumers[@]}"
[ ! -e "$control" ] || fail "sockbrokerd left $control behind"

echo "install test: PASS (${#consumers[@]} consumers got their socket from the installed broker)"
