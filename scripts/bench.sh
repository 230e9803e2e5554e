#!/usr/bin/env bash
# Runs the benchmark suite and prints one table of ratios: every figure next to
# its baseline ("the limit" or the alternative), both measured in this run, with
# p50 and p99. docs/PERFORMANCE.md says what each row measures.
#
# As root. Installs the optional comparison tools when missing (s6, libs6-dev,
# skalibs-dev, authbind, wrk, hyperfine, linux-perf; SOCKBROKER_BENCH_NO_INSTALL=1 skips
# that, and rows whose tool is missing print "not installed"), builds Release in
# build-bench/, then:
#   - build-bench/tests/bench/sockbroker_bench (Google Benchmark): items 1, 2,
#     3, 5, 8, 9 (a program's own bind under `sockbroker run`), 10 (adopting
#     10,000 handed-over sockets, an upgrade in place with 1,000 holders), 11
#     (one uid's flood against another uid's latency) and s6-fdholder
#     in-process;
#   - hyperfine: whole processes (item 4, the command-line alternatives of item 6);
#   - wrk: the data path (item 7), also with a server that binds itself under
#     `sockbroker run` (supervised); perf, when installed, counts the seccomp
#     notifications and the server's system calls per request in extra runs.
# Everything runs in private network namespaces; the host's ports are untouched.
# About 3 minutes on 2 cores after the build. Results stay in build-bench/bench-results/.
#
# Usage: scripts/bench.sh            (the whole suite)
#        scripts/bench.sh --quick    (fewer process runs and shorter wrk runs)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build-bench"
results="$build/bench-results"
bench_dir="$build/tests/bench"

# ---- the inner part: the process and data-path benchmarks, in a private netns ----
if [[ "${1:-}" == "--inner" ]]; then
  quick="$2"
  runs=300; wrk_seconds=3; wrk_rounds=6
  if [[ "$quick" == 1 ]]; then runs=60; wrk_seconds=2; wrk_rounds=2; fi
  ip link set lo up

  # uid 65534 must execute the programs: the build tree may sit under a
  # directory only root can enter, so they run from a private copy.
  work=$(mktemp -d /tmp/sockbroker-bench.XXXXXX)
  chmod 0755 "$work"
  pids=()
  cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
  }
  trap cleanup EXIT
  mkdir "$work/bin" "$work/out"
  chmod 0777 "$work/out"
  cp "$build/broker/sockbrokerd" "$build/client/sockbroker" \
     "$bench_dir/sockbroker_bench_httpd" "$bench_dir/sockbroker_bench_bind" "$work/bin/"
  chmod 0755 "$work/bin"/*
  as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)

  cat >"$work/policy.toml" <<'EOF'
[broker]
max_clients_per_uid = 1024

[socket.web]
listen = "127.0.0.1:80"
backlog = 4096

[[socket.web.allow]]
user = "nobody"
EOF
  "$work/bin/sockbrokerd" --policy "$work/policy.toml" --control "$work/control.sock" \
    --audit "$work/audit.log" --log-level warn 2>"$work/broker.log" &
  broker=$!
  pids+=("$broker")
  for _ in $(seq 100); do [[ -S "$work/control.sock" ]] && break; sleep 0.05; done
  "$work/bin/sockbroker" --control "$work/control.sock" list >/dev/null

  # s6-fdholder holding one listening socket, for `s6-fdholder-retrieve ... true`.
  s6_cmd=()
  if command -v s6-fdholder-daemon >/dev/null && command -v s6-fdholder-retrieve >/dev/null; then
    mkdir -p "$work/s6rules/uid/0/env" "$work/s6rules/uid/65534/env"
    touch "$work/s6rules/uid/0/allow" "$work/s6rules/uid/65534/allow"
    echo '.*' >"$work/s6rules/uid/0/env/S6_FDHOLDER_STORE_REGEX"
    echo '.*' >"$work/s6rules/uid/65534/env/S6_FDHOLDER_RETRIEVE_REGEX"
    s6-fdholder-daemon -i "$work/s6rules" "$work/s6.sock" &
    pids+=("$!")
    for _ in $(seq 100); do [[ -S "$work/s6.sock" ]] && break; sleep 0.05; done
    chmod 0666 "$work/s6.sock"
    # s6-fdholder-store stores its standard input: a socket bound by Python here.
    /usr/bin/python3 -c '
import os, socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 84)); s.listen(511)
os.dup2(s.fileno(), 0)
os.execvp("s6-fdholder-store", ["s6-fdholder-store", sys.argv[1], "tcp:web"])' "$work/s6.sock"
    s6_cmd=(-n s6-fdholder-retrieve "$(command -v s6-fdholder-retrieve) $work/s6.sock tcp:web /usr/bin/true")
  fi

  # systemd-socket-activate binds, then waits for the first connection before it
  # execs: a helper connects every 100 us, so its figure includes up to ~0.1 ms of that wait.
  ssa_cmd=()
  if command -v systemd-socket-activate >/dev/null; then
    /usr/bin/python3 -c '
import socket, time
while True:
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", 8082))
    except OSError:
        time.sleep(0.0001)
    s.close()' &
    pids+=("$!")
    ssa_cmd=(-n systemd-socket-activate "$(command -v systemd-socket-activate) -l 127.0.0.1:8082 /usr/bin/true")
  fi

  # authbind: the service binds port 83 itself, allowed by /etc/authbind/byport/83.
  authbind_cmd=()
  if command -v authbind >/dev/null; then
    mkdir -p /etc/authbind/byport
    touch /etc/authbind/byport/83
    chown 65534 /etc/authbind/byport/83
    chmod 0500 /etc/authbind/byport/83
    authbind_cmd=(-n authbind "$(command -v authbind) $work/bin/sockbroker_bench_bind 83")
  fi

  # Every command is named by its absolute path, as sockbroker's is: a bare
  # name would make each run search PATH with failed execve calls first.
  # hyperfine runs one command after another, so the runs are split into
  # rounds that each run every command: a noisy stretch falls on all of them,
  # and report.py takes the percentiles over all rounds' runs. This VM's speed
  # drifts over seconds, so the rounds are short (30 runs of each command);
  # only the first warms up at length.
  if command -v hyperfine >/dev/null; then
    rounds=$((runs / 30))
    echo "==> Whole processes (hyperfine, $runs runs each in $rounds rounds, as uid 65534)" >&2
    : >"$results/hyperfine.txt"
    for round in $(seq "$rounds"); do
      warmup=3; ((round == 1)) && warmup=20
      "${as_nobody[@]}" hyperfine -N --warmup "$warmup" --runs "$((runs / rounds))" \
        --export-json "$work/out/hyperfine-$round.json" --style basic \
        -n true "/usr/bin/true" \
        -n two-execs "/usr/bin/env /usr/bin/true" \
        -n sockbroker-run "$work/bin/sockbroker --control $work/control.sock run -s web -- /usr/bin/true" \
        -n sockbroker-run-no-lockdown \
        "$work/bin/sockbroker --control $work/control.sock run --no-lockdown -s web -- /usr/bin/true" \
        -n self-bind "$work/bin/sockbroker_bench_bind 8083" \
        -n sockbroker-run-supervised-bind \
        "$work/bin/sockbroker --control $work/control.sock run -- $work/bin/sockbroker_bench_bind 80" \
        "${s6_cmd[@]}" "${ssa_cmd[@]}" "${authbind_cmd[@]}" >>"$results/hyperfine.txt" 2>&1
      cp "$work/out/hyperfine-$round.json" "$results/"
    done
  fi
  [[ -n "${authbind_cmd[*]}" ]] && rm -f /etc/authbind/byport/83

  if command -v wrk >/dev/null; then
    echo "==> Data path (wrk, $wrk_rounds rounds of ${wrk_seconds}s per variant, server on CPU 1, wrk on CPU 0)" >&2
    serve() {  # variant: brokered | brokered-nolockdown | self-bound | supervised
      case "$1" in
        brokered) "${as_nobody[@]}" taskset -c 1 "$work/bin/sockbroker" --control "$work/control.sock" \
                    run -s web -- "$work/bin/sockbroker_bench_httpd" & port=80 ;;
        brokered-nolockdown) "${as_nobody[@]}" taskset -c 1 "$work/bin/sockbroker" --control "$work/control.sock" \
                    run --no-lockdown -s web -- "$work/bin/sockbroker_bench_httpd" & port=80 ;;
        self-bound) "${as_nobody[@]}" taskset -c 1 "$work/bin/sockbroker_bench_httpd" --port 8080 & port=8080 ;;
        # The server binds 127.0.0.1:80 itself: its bind and listen trap to
        # the supervisor (also on CPU 1), which answers with the broker's "web".
        supervised) "${as_nobody[@]}" taskset -c 1 "$work/bin/sockbroker" --control "$work/control.sock" \
                    run -- "$work/bin/sockbroker_bench_httpd" --port 80 & port=80 ;;
      esac
      server=$!
      for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.02; done
    }
    # Every wake-up of a process: a notification would wake the supervisor,
    # which otherwise sleeps in poll(2) for the whole run.
    wakeups() { awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print n }' "/proc/$1/status"; }
    # The server's own process: the supervised variants run it as the
    # supervisor's child, --no-lockdown execs it in place.
    server_program() {
      local child
      child=$(awk '{ print $1 }' "/proc/$1/task/$1/children")
      echo "${child:-$1}"
    }
    # Nanoseconds a process has run on a CPU (single-threaded server).
    cpu_ns() { awk '{ print $1 }' "/proc/$1/schedstat"; }
    # Short rounds, each running every variant, every other one in the
    # reverse order (A B C D, D C B A, ...), so that drift on the machine,
    # which other work shares, hits every variant alike; report.py takes the
    # median over the rounds of each round's ratio, which ignores rounds a
    # burst of other work disturbed while they are fewer than half.
    variants=(self-bound supervised brokered brokered-nolockdown)
    for round in $(seq "$wrk_rounds"); do
      order=("${variants[@]}")
      ((round % 2 == 0)) && order=(brokered-nolockdown brokered supervised self-bound)
      for variant in "${order[@]}"; do
        serve "$variant"
        program=$(server_program "$server")
        [[ "$variant" == supervised ]] && before=$(wakeups "$server")
        cpu_before=$(cpu_ns "$program")
        taskset -c 0 wrk -t1 -c32 -d"${wrk_seconds}s" --latency "http://127.0.0.1:$port/" \
          >"$results/wrk-$variant-$round.txt"
        # The server's CPU time per request is what the data path costs it,
        # whatever share of the machine other work left to this round.
        echo "server_cpu_ns $(($(cpu_ns "$program") - cpu_before))" >>"$results/wrk-$variant-$round.txt"
        [[ "$variant" == supervised ]] &&
          echo "supervisor_wakeups $(($(wakeups "$server") - before))" >"$results/supervisor-$round.txt"
        kill "$server"; wait "$server" 2>/dev/null || true
      done
    done

    # What a supervised server pays on the data path, counted (perf
    # tracepoints) in runs apart from the timed ones, whose figures the
    # counting would slow: the supervisor's notifications (its
    # SECCOMP_IOCTL_NOTIF_RECV calls) over the server's whole life and during
    # a wrk run, and the system calls of the server (all of them, and those of
    # the data path one by one) and of the supervisor during that run, against
    # the same server binding a free port itself. Every count is of our
    # processes only: other work on the machine may run supervisors too.
    if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -o /dev/null true 2>/dev/null; then
      echo "==> Data path, counted (perf: seccomp notifications, system calls per request)" >&2
      notif_recv=0xc0502100  # SECCOMP_IOCTL_NOTIF_RECV: _IOWR('!', 0, struct seccomp_notif)
      for variant in self-bound supervised; do
        if [[ "$variant" == supervised ]]; then
          # Under perf from its start: perf counts the supervisor and what it forks.
          perf stat -x, -e syscalls:sys_enter_ioctl --filter "cmd == $notif_recv" \
            -o "$results/perf-$variant-notif-life.csv" -- "${as_nobody[@]}" taskset -c 1 "$work/bin/sockbroker" \
            --control "$work/control.sock" run -- "$work/bin/sockbroker_bench_httpd" --port 80 &
          life=$!
          port=80
          for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.02; done
          server=$(awk '{ print $1 }' "/proc/$life/task/$life/children")
        else
          serve "$variant"
        fi
        program=$(server_program "$server")
        counters=()
        perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_accept4,syscalls:sys_enter_recvfrom \
          -e syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait -p "$program" -o "$results/perf-$variant-program.csv" &
        counters+=("$!")
        if [[ "$variant" == supervised ]]; then
          perf stat -x, -e raw_syscalls:sys_enter -p "$server" -o "$results/perf-$variant-supervisor.csv" &
          counters+=("$!")
          perf stat -x, -e syscalls:sys_enter_ioctl --filter "cmd == $notif_recv" -p "$server" \
            -o "$results/perf-$variant-notif-wrk.csv" &
          counters+=("$!")
        fi
        sleep 0.3  # perf attaches before it counts
        taskset -c 0 wrk -t1 -c32 -d2s "http://127.0.0.1:$port/" >"$results/count-$variant.txt"
        for pid in "${counters[@]}"; do kill -INT "$pid"; done
        for pid in "${counters[@]}"; do wait "$pid" || true; done
        kill "$server"; wait "$server" 2>/dev/null || true
        [[ "$variant" == supervised ]] && { wait "$life" || true; }
      done
    fi
  fi
  kill "$broker"
  exit 0
fi

# ---- the outer part ----
if ((EUID != 0)); then
  echo "bench.sh: run as root: the suite starts sockbrokerd and binds ports in private network namespaces" >&2
  exit 1
fi
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

"$root/scripts/deps.sh"
if [[ "${SOCKBROKER_BENCH_NO_INSTALL:-0}" != 1 ]]; then
  optional=(s6 libs6-dev skalibs-dev authbind wrk hyperfine linux-perf)
  missing=()
  for package in "${optional[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$package")
  done
  if ((${#missing[@]} > 0)); then
    echo "bench.sh: installing the comparison tools: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

echo "==> Building Release in $build"
# -O2 -g, not CMake's -O3: every figure in docs/PERFORMANCE.md was taken so, and
# perf needs the symbols.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSOCKBROKER_WERROR=ON \
  "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -g -DNDEBUG" "-DCMAKE_C_FLAGS_RELEASE=-O2 -g -DNDEBUG" >/dev/null
cmake --build "$build" -j "$(nproc)" --target \
  sockbrokerd sockbroker sockbroker_bench sockbroker_bench_httpd sockbroker_bench_bind \
  sockbroker_bench_bind_loop sockbroker_bench_supervisor_steps >/dev/null

rm -rf "$results"
mkdir -p "$results"

echo "==> Grants, throughput, scale, handover (sockbroker_bench: about a minute and a quarter)"
# The ratio rows run as repetitions, interleaved at random so that a noisy
# moment falls on figure and baseline alike (bench_env.hpp, kRepetitions).
"$bench_dir/sockbroker_bench" --benchmark_enable_random_interleaving=true --benchmark_format=json \
  --benchmark_out="$results/benchmark.json" --benchmark_out_format=json >/dev/null

unshare --net "$0" --inner "$quick"

python3 "$root/tests/bench/report.py" "$results" | tee "$results/table.txt"
