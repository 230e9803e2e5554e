#!/usr/bin/env bash
# Checks that the built binaries carry the hardening the top-level
# CMakeLists.txt asks for (SOCKBROKER_HARDEN), as Debian's devscripts checker
# would, but with readelf alone (binutils, which the build needs anyway):
#   PIE          an executable is ET_DYN with DF_1_PIE
#   RELRO        a PT_GNU_RELRO segment
#   BIND_NOW     DT_BIND_NOW, DF_BIND_NOW or DF_1_NOW: with RELRO, the GOT read-only
#   stack        __stack_chk_fail imported (-fstack-protector-strong)
#   fortify      some __*_chk function imported (-D_FORTIFY_SOURCE=3)
# The stack and fortify checks look for what the flags leave behind, so they
# are only meaningful for a binary whose own code is linked against glibc's
# shared copy: sockbrokerd and libsockbroker.so. The `sockbroker` command links
# libstdc++ and libseccomp statically, whose Debian archives import those
# functions whatever our flags say; only its PIE, RELRO and BIND_NOW count.
#
# Usage: hardening.sh FORTIFY SOCKBROKERD LIBSOCKBROKER_SO SOCKBROKER_CLI
#   FORTIFY: 1 when the build should be fortified (optimised, no sanitizers;
#   CMakeLists.txt says why not otherwise), 0 when it must not be checked.
set -euo pipefail

[ $# -eq 4 ] || { echo "usage: $0 FORTIFY SOCKBROKERD LIBSOCKBROKER_SO SOCKBROKER_CLI" >&2; exit 64; }
fortify=$1 daemon=$2 library=$3 cli=$4
case $fortify in 0 | 1) ;; *) echo "hardening.sh: FORTIFY must be 0 or 1, not $fortify" >&2; exit 64 ;; esac

failures=0
fail() { echo "hardening: FAIL: $*" >&2; failures=$((failures + 1)); }

# check FILE WHAT...   WHAT: pie relro bindnow stack fortify
check() {
  local file=$1
  shift
  local name header segments dynamic symbols
  name=$(basename "$file")
  header=$(readelf -hW "$file")
  segments=$(readelf -lW "$file")
  dynamic=$(readelf -dW "$file")
  symbols=$(readelf --dyn-syms -W "$file")
  for what in "$@"; do
    case $what in
      pie)
        grep -q 'Type: *DYN' <<<"$header" && grep -q 'FLAGS_1).*\bPIE\b' <<<"$dynamic" ||
          fail "$name is not a position-independent executable" ;;
      relro)
        grep -q 'GNU_RELRO' <<<"$segments" || fail "$name has no PT_GNU_RELRO segment (-z relro)" ;;
      bindnow)
        grep -Eq '\(BIND_NOW\)|\(FLAGS\).*\bBIND_NOW\b|\(FLAGS_1\).*\bNOW\b' <<<"$dynamic" ||
          fail "$name is not bound at start (-z now): its GOT stays writable" ;;
      stack)
        grep -Eq ' __stack_chk_fail(@|$)' <<<"$symbols" ||
          fail "$name does not import __stack_chk_fail (-fstack-protector-strong)" ;;
      fortify)
        grep -Eq ' __[a-z0-9_]+_chk(@|$)' < <(grep -v __stack_chk_fail <<<"$symbols") ||
          fail "$name imports no __*_chk function (-D_FORTIFY_SOURCE)" ;;
      *) echo "hardening.sh: unknown check $what" >&2; exit 64 ;;
    esac
  done
  echo "$name: checked $*"
}

own=(relro bindnow stack)
if [ "$fortify" = 1 ]; then own+=(fortify); fi
check "$daemon" pie "${own[@]}"
check "$library" "${own[@]}"
check "$cli" pie relro bindnow

if [ "$failures" -ne 0 ]; then
  echo "hardening: $failures check(s) failed" >&2
  exit 1
fi
echo "hardening: PASS"
