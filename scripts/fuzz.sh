#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, coverage on the whole
# build) in build-fuzz and runs each for SECONDS (default 60) on a scratch copy
# of its corpus, so that the repository's seeds stay the reviewed ones.
#
#   scripts/fuzz.sh [SECONDS]
#
# Exit status: 0 when no target crashed, 1 when one did (its reproducer is in
# the scratch directory printed in the summary), 64 on bad usage.
set -euo pipefail

seconds=${1:-60}
case $seconds in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 64 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
jobs=$(nproc 2>/dev/null || echo 2)

# Every library under test must carry coverage counters and sanitizers too;
# only the fuzzer executables link libFuzzer's main().
sanitize="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
flags="$sanitize -fno-omit-frame-pointer -g -O1"
link="-fsanitize=address,undefined"

CC=clang CXX=clang++ cmake -S "$root" -B "$build" \
  -DSOCKBROKER_FUZZ=ON \
  -DCMAKE_BUILD_TYPE= \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$link" -DCMAKE_SHARED_LINKER_FLAGS="$link" >/dev/null
cmake --build "$build" -j"$jobs" --target fuzz_request_decoder fuzz_policy_loader >/dev/null

scratch=$(mktemp -d "${TMPDIR:-/tmp}/sockbroker-fuzz.XXXXXX")
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

summary=()
status=0
# target corpus max_len: lengths past the 4 KiB datagram limit and past a
# screenful of TOML are worth trying too.
for spec in "fuzz_request_decoder request 8192" "fuzz_policy_loader policy 16384"; do
  read -r target corpus max_len <<<"$spec"
  work=$scratch/$corpus
  mkdir -p "$work/corpus" "$work/artifacts"
  cp "$root/tests/fuzz/corpus/$corpus"/* "$work/corpus/"
  seeds=$(find "$work/corpus" -type f | wc -l)
  echo "== $target: ${seconds}s, $seeds seeds, log $work/log" >&2
  rc=0
  "$build/tests/fuzz/$target" "$work/corpus" \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
    -artifact_prefix="$work/artifacts/" -print_final_stats=1 >"$work/log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n1)
  cov=$( (grep -o 'cov: [0-9]*' "$work/log" || true) | tail -n1 | cut -d' ' -f2)
  ft=$( (grep -o 'ft: [0-9]*' "$work/log" || true) | tail -n1 | cut -d' ' -f2)
  after=$(find "$work/corpus" -type f | wc -l)
  line="$target: ${runs:-?} runs, cov ${cov:-?}, ft ${ft:-?}, corpus $seeds -> $after"
  findings=$(find "$work/artifacts" -type f | sort)
  if [[ $rc -ne 0 || -n $findings ]]; then
    status=1
    reason=$(grep -m1 -E '^==[0-9]+==ERROR|runtime error:|invariant violated|^SUMMARY:|ERROR: libFuzzer' "$work/log" || true)
    line+=", FAILED (exit $rc): ${reason:-see log}"
    for f in $findings; do line+=$'\n'"    reproducer: $f"; done
  else
    line+=", no crash"
  fi
  summary+=("$line")
done

echo
echo "fuzz summary (${seconds}s per target, scratch $scratch):"
printf '  %s\n' "${summary[@]}"
exit $status
