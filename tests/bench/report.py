#!/usr/bin/env python3
"""Builds the benchmark table from one run's results (scripts/bench.sh).

Reads RESULTS/benchmark.json (Google Benchmark, sockbroker_bench),
RESULTS/hyperfine.json and RESULTS/wrk-*.txt, and prints one Markdown table:
benchmark | figure p50 | p99 | baseline p50 | p99 | ratio | goal | verdict,
then the machine. Every ratio compares two figures of the same run.
Python standard library only.
"""
import json
import os
import platform
import re
import sys


def load_benchmarks(results):
    path = os.path.join(results, "benchmark.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    # A benchmark run as repetitions (the ratio rows) is read as the median of
    # its repetitions' counters, which Google Benchmark reports as an aggregate;
    # one without (or whose repetitions all failed) as its run.
    out = {}
    for b in data.get("benchmarks", []):
        name = b["name"].split("/iterations:")[0]
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                out[name] = b
        elif name not in out or out[name].get("run_type") != "aggregate":
            out[name] = b
    return out


def percentile(values, p):
    """Nearest rank, as sockbroker_bench computes it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 1))))
    return ordered[rank - 1]


def load_hyperfine(results):
    """Percentiles over every round's runs (hyperfine-N.json; hyperfine.json from older runs)."""
    times = {}
    for name in sorted(os.listdir(results)):
        if not re.match(r"hyperfine(-\d+)?\.json$", name):
            continue
        with open(os.path.join(results, name)) as f:
            data = json.load(f)
        for r in data.get("results", []):
            times.setdefault(r["command"], []).extend(t * 1e6 for t in r.get("times", []))  # s -> us
    return {command: {"p50_us": percentile(ts, 0.50), "p99_us": percentile(ts, 0.99)} for command, ts in times.items()}


UNITS = {"us": 1.0, "ms": 1000.0, "s": 1e6}


def parse_wrk(path):
    """Requests/s and latency p50/p99 (us) from `wrk --latency` output."""
    with open(path) as f:
        text = f.read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        lat[pct] = float(value) * UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", text)
    # bench.sh appends the server's CPU time over the run (schedstat).
    requests = re.search(r"(\d+) requests in", text)
    cpu = re.search(r"^server_cpu_ns (\d+)$", text, re.M)
    cpu_per_request = int(cpu.group(1)) / 1000 / int(requests.group(1)) if cpu and requests and int(requests.group(1)) else None
    return {"rps": float(rps.group(1)) if rps else None, "p50_us": lat.get("50"), "p99_us": lat.get("99"),
            "errors": errors.group(0) if errors else "", "cpu_us": cpu_per_request}


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    return None if n == 0 else (ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2)


def load_wrk(results):
    """Per variant: the mean of its rounds (requests/s, latency percentiles)
    and its requests/s per round ("by_round"), for per-round ratios."""
    by_variant = {}
    for name in sorted(os.listdir(results)):
        m = re.match(r"wrk-(.+)-(\d+)\.txt$", name)
        if m:
            by_variant.setdefault(m.group(1), []).append((int(m.group(2)), parse_wrk(os.path.join(results, name))))
    out = {}
    for variant, numbered in by_variant.items():
        runs = [r for _, r in numbered]
        rps = [r["rps"] for r in runs if r["rps"]]
        p50 = [r["p50_us"] for r in runs if r["p50_us"] is not None]
        p99 = [r["p99_us"] for r in runs if r["p99_us"] is not None]
        out[variant] = {
            "rps": sum(rps) / len(rps) if rps else None,
            "p50_us": sum(p50) / len(p50) if p50 else None,
            "p99_us": sum(p99) / len(p99) if p99 else None,
            "errors": "; ".join(r["errors"] for r in runs if r["errors"]),
            "by_round": {n: r["rps"] for n, r in numbered if r["rps"]},
            "cpu_by_round": {n: r["cpu_us"] for n, r in numbered if r["cpu_us"]},
        }
    return out


def load_perf_counts(path):
    """{event: count} from a `perf stat -x,` output file ({} if there is none).
    An event "<not counted>" with a running time of 0 counted a process that
    never ran while perf watched it: 0."""
    counts = {}
    if not os.path.exists(path):
        return counts
    with open(path) as f:
        for line in f:
            fields = line.strip().split(",")
            if line.startswith("#") or len(fields) < 4:
                continue
            try:
                counts[fields[2]] = int(float(fields[0]))
            except ValueError:
                if fields[0] == "<not counted>" and fields[3] in ("0", "0.00"):
                    counts[fields[2]] = 0
    return counts


def load_perf_count(path):
    """The first count in a `perf stat -x,` output file, or None."""
    counts = load_perf_counts(path)
    return next(iter(counts.values())) if counts else None


def load_supervised_counts(results):
    """Item 7, supervised: the supervisor's wake-ups during the timed wrk runs,
    and the perf counts of the counted runs (scripts/bench.sh)."""
    out = {"wakeups": []}
    for name in sorted(os.listdir(results)):
        if re.match(r"supervisor-\d+\.txt$", name):
            with open(os.path.join(results, name)) as f:
                m = re.search(r"supervisor_wakeups (-?\d+)", f.read())
            if m:
                out["wakeups"].append(int(m.group(1)))
    for variant in ("self-bound", "supervised"):
        counts = {}
        for part in ("notif-life", "notif-wrk", "supervisor"):
            counts[part] = load_perf_count(os.path.join(results, f"perf-{variant}-{part}.csv"))
        counts["program"] = load_perf_counts(os.path.join(results, f"perf-{variant}-program.csv"))
        requests = None
        path = os.path.join(results, f"count-{variant}.txt")
        if os.path.exists(path):
            with open(path) as f:
                m = re.search(r"(\d+) requests in", f.read())
            requests = int(m.group(1)) if m else None
        counts["requests"] = requests
        out[variant] = counts
    return out


def fmt_us(v):
    if v is None:
        return "-"
    if v >= 10000:
        return f"{v / 1000:.1f} ms"
    if v >= 100:
        return f"{v:.0f} us"
    return f"{v:.1f} us"


def fmt_rate(v):
    return "-" if v is None else f"{v:,.0f}/s"


class Table:
    def __init__(self):
        self.rows = []

    def add(self, name, fig=("-", "-"), base=("-", "-"), ratio="-", goal="-", verdict="-"):
        self.rows.append([name, fig[0], fig[1], base[0], base[1], ratio, goal, verdict])

    def missing(self, name, why, goal="-"):
        self.add(name, (why, "-"), ("-", "-"), "-", goal, "n/a")

    def render(self):
        head = ["benchmark", "figure p50", "p99", "baseline p50", "p99", "ratio", "goal", "verdict"]
        widths = [max(len(str(r[i])) for r in self.rows + [head]) for i in range(len(head))]
        line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
        out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in self.rows]
        return "\n".join(out)


def verdict(ok):
    return "PASS" if ok else "MISS"


def counters(b):
    return b.get("p50_us"), b.get("p99_us")


def skipped(b):
    return b is None or b.get("error_occurred")


def latency_rows(t, bm, figure_prefix, limit_prefix, title, goal_p50, goal_p99):
    for arg, placement in ((0, "same CPU"), (1, "split CPUs")):
        fig = bm.get(f"{figure_prefix}/{arg}")
        base = bm.get(f"{limit_prefix}/{arg}")
        name = f"{title} ({placement})"
        if skipped(fig) or skipped(base):
            t.missing(name, "not run")
            continue
        f50, f99 = counters(fig)
        b50, b99 = counters(base)
        r50, r99 = f50 / b50, f99 / b99
        if goal_p50 is None:
            t.add(name, (fmt_us(f50), fmt_us(f99)), (fmt_us(b50), fmt_us(b99)), f"{r50:.2f}x / {r99:.2f}x",
                  "(the limit)", "info")
        elif goal_p99 is None:
            t.add(name, (fmt_us(f50), fmt_us(f99)), (fmt_us(b50), fmt_us(b99)), f"{r50:.2f}x / {r99:.2f}x",
                  f"<= {goal_p50}x p50", verdict(r50 <= goal_p50))
        else:
            t.add(name, (fmt_us(f50), fmt_us(f99)), (fmt_us(b50), fmt_us(b99)), f"{r50:.2f}x / {r99:.2f}x",
                  f"<= {goal_p50}x / <= {goal_p99}x", verdict(r50 <= goal_p50 and r99 <= goal_p99))


def supervised_data_path_rows(t, wrk, counts):
    """Item 7, supervised: what the server pays after its bind, counted."""
    if "supervised" not in wrk:
        return
    wakeups = counts["wakeups"]
    if wakeups:
        t.add(f"7. supervised: supervisor wake-ups during the timed wrk runs ({len(wakeups)} runs)",
              (" + ".join(str(w) for w in wakeups), "-"), ("-", "-"), "-", "0", verdict(all(w == 0 for w in wakeups)))
    fig, base = wrk.get("supervised"), wrk.get("self-bound")
    rounds = sorted(set(fig["cpu_by_round"]) & set((base or {}).get("cpu_by_round", {})))
    if rounds:
        a = median([fig["cpu_by_round"][n] for n in rounds])
        b = median([base["cpu_by_round"][n] for n in rounds])
        r = median([fig["cpu_by_round"][n] / base["cpu_by_round"][n] for n in rounds])
        t.add("7. server CPU time per request: supervised vs self-bound", (f"{a:.2f} us", "-"), (f"{b:.2f} us", "-"),
              f"{r:.3f}x", "-", "info")
    sup, own = counts["supervised"], counts["self-bound"]
    life, during = sup["notif-life"], sup["notif-wrk"]
    if life is None or during is None:
        t.missing("7. supervised: seccomp notifications, whole life / wrk run", "not counted (perf missing)", "2 / 0")
        return
    requests = sup["requests"] or 0
    t.add(f"7. supervised: seccomp notifications, whole life / wrk run ({requests:,} requests)",
          (f"{life} / {during}", "-"), ("-", "-"), "-", "2 / 0 (bind, listen)", verdict(life == 2 and during == 0))
    if sup["supervisor"] is not None:
        t.add("7. supervised: the supervisor's system calls during the wrk run", (str(sup["supervisor"]), "-"),
              ("-", "-"), "-", "0", verdict(sup["supervisor"] == 0))
    if sup["program"] and own["program"] and sup["requests"] and own["requests"]:
        # recv and send once per request each, accept4 once per connection
        # (32): the same on both sides. All system calls together vary with
        # how many events one epoll_wait returns, i.e. with the load.
        for event, what in (("syscalls:sys_enter_recvfrom", "recv"), ("syscalls:sys_enter_sendto", "send"),
                            ("syscalls:sys_enter_epoll_wait", "epoll_wait"),
                            ("raw_syscalls:sys_enter", "all system calls")):
            a, b = sup["program"].get(event), own["program"].get(event)
            if a is None or b is None:
                continue
            a, b = a / sup["requests"], b / own["requests"]
            t.add(f"7. server {what} per request: supervised vs self-bound", (f"{a:.3f}", "-"), (f"{b:.3f}", "-"),
                  f"{a / b:.3f}x" if b else "-", "-", "info")
        a = sup["program"].get("syscalls:sys_enter_accept4")
        b = own["program"].get("syscalls:sys_enter_accept4")
        if a is not None and b is not None:
            t.add("7. server accept4 calls in the counted run: supervised vs self-bound", (str(a), "-"), (str(b), "-"),
                  "-", "-", "info")


def supervised_rows(t, bm):
    """Item 9: the supervised bind against the limit (one seccomp notification
    round trip answered with ADDFD + row 1's grant, summed percentile by
    percentile), the limit measured in one piece, and the plain bind+listen."""
    # The supervisor and the broker share a CPU in both placements, so the
    # grant part of the limit is always row 1's same-CPU grant.
    grant = bm.get("BM_Grant_Shared/0")
    plain = bm.get("BM_Plain_BindListen/0")
    for arg, placement in ((0, "same CPU"), (1, "program apart from supervisor+broker")):
        fig = bm.get(f"BM_Supervised_Bind/{arg}")
        notify = bm.get(f"BM_Limit_NotifyAddfd/{arg}")
        name = f"9. supervised bind vs notification (ADDFD) + grant ({placement})"
        if skipped(fig) or skipped(notify) or skipped(grant):
            t.missing(name, "not run", "<= 1.3x p50")
            continue
        f50, f99 = counters(fig)
        b50, b99 = notify["p50_us"] + grant["p50_us"], notify["p99_us"] + grant["p99_us"]
        r50, r99 = f50 / b50, f99 / b99
        t.add(name, (fmt_us(f50), fmt_us(f99)), (fmt_us(b50), fmt_us(b99)), f"{r50:.2f}x / {r99:.2f}x",
              "<= 1.3x p50", verdict(r50 <= 1.3))
        one = bm.get(f"BM_Limit_NotifyGrant/{arg}")
        if not skipped(one):
            o50, o99 = counters(one)
            t.add(f"9. supervised bind vs minimal supervisor doing acquire + ADDFD ({placement})",
                  (fmt_us(f50), fmt_us(f99)), (fmt_us(o50), fmt_us(o99)), f"{f50 / o50:.2f}x / {f99 / o99:.2f}x",
                  "-", "info")
        error = bm.get(f"BM_Limit_NotifyError/{arg}")
        if not skipped(error):
            t.add(f"9. notification answered by ADDFD vs by an error ({placement})",
                  (fmt_us(notify["p50_us"]), fmt_us(notify["p99_us"])),
                  (fmt_us(error["p50_us"]), fmt_us(error["p99_us"])),
                  f"{notify['p50_us'] / error['p50_us']:.2f}x / {notify['p99_us'] / error['p99_us']:.2f}x", "-", "info")
            l50, l99 = fig["listen_p50_us"], fig["listen_p99_us"]
            t.add(f"9. supervised listen vs notification answered by an error ({placement})",
                  (fmt_us(l50), fmt_us(l99)), (fmt_us(error["p50_us"]), fmt_us(error["p99_us"])),
                  f"{l50 / error['p50_us']:.2f}x / {l99 / error['p99_us']:.2f}x", "-", "info")
        if not skipped(plain):
            s50, s99 = fig["bind_listen_p50_us"], fig["bind_listen_p99_us"]
            p50, p99 = plain["bind_listen_p50_us"], plain["bind_listen_p99_us"]
            t.add(f"9. supervised bind+listen vs plain bind+listen, free port, no broker ({placement})",
                  (fmt_us(s50), fmt_us(s99)), (fmt_us(p50), fmt_us(p99)), f"{s50 / p50:.1f}x / {s99 / p99:.1f}x",
                  "-", "info")
    for arg, placement in ((0, "same CPU"), (1, "split CPUs")):
        by_address = bm.get(f"BM_Grant_AcquireAddress/{arg}")
        by_name = bm.get(f"BM_Grant_Shared/{arg}")
        if skipped(by_address) or skipped(by_name):
            continue
        a50, a99 = counters(by_address)
        n50, n99 = counters(by_name)
        t.add(f"9. broker: acquire_address vs acquire by name ({placement})", (fmt_us(a50), fmt_us(a99)),
              (fmt_us(n50), fmt_us(n99)), f"{a50 / n50:.2f}x / {a99 / n99:.2f}x", "-", "info")


def main():
    if len(sys.argv) != 2:
        print("usage: report.py RESULTS_DIR  (the directory scripts/bench.sh fills)", file=sys.stderr)
        return 64
    results = sys.argv[1]
    bm = load_benchmarks(results)
    hf = load_hyperfine(results)
    wrk = load_wrk(results)
    t = Table()

    # 1-3: latencies against their limits.
    latency_rows(t, bm, "BM_Grant_Shared", "BM_Limit_RoundTripFd",
                 "1. shared grant vs 1 fd round trip", 1.3, 2)
    latency_rows(t, bm, "BM_Grant_SharedLargePolicy", "BM_Grant_Shared",
                 "1. shared grant, 10,000-socket policy vs 2-socket policy", 1.1, 1.5)
    latency_rows(t, bm, "BM_Grant_ReuseportMember", "BM_Limit_RoundTripReuseportMember",
                 "2. reuse_port member vs round trip + socket/bind/listen", 1.3, 2)
    latency_rows(t, bm, "BM_Grant_ConnectAcquireClose", "BM_Limit_ConnectRoundTripClose",
                 "3. connect+acquire+close vs connect/accept + round trip", 1.3, None)  # #19 item 5
    # Item 10: uid 1's connect+acquire+close while uid 65534 floods, against
    # the same client unloaded in the same iteration; the goal is on p99.
    fair = bm.get("BM_Fairness_OtherUidUnderFlood")
    fair_name = "11. other uid's connect+acquire+close, flooded vs unloaded"
    if skipped(fair):
        t.missing(fair_name, "not run", "p99 <= 2x")
    else:
        r50 = fair["p50_us"] / fair["unloaded_p50_us"]
        r99 = fair["p99_us"] / fair["unloaded_p99_us"]
        t.add(fair_name, (fmt_us(fair["p50_us"]), fmt_us(fair["p99_us"])),
              (fmt_us(fair["unloaded_p50_us"]), fmt_us(fair["unloaded_p99_us"])),
              f"{r50:.2f}x / {r99:.2f}x", "p99 <= 2x", verdict(r99 <= 2))
        if fair.get("cpu_only_p99_us"):
            # The same CPU taken by processes that ask the broker nothing.
            rc = fair["p99_us"] / fair["cpu_only_p99_us"]
            t.add("11. (info) the flood vs as many processes only spinning",
                  (fmt_us(fair["p50_us"]), fmt_us(fair["p99_us"])),
                  (fmt_us(fair["cpu_only_p50_us"]), fmt_us(fair["cpu_only_p99_us"])), f"{rc:.2f}x (p99)", "info", "-")
    for arg, placement in ((0, "same CPU"), (1, "split CPUs")):
        fig = bm.get(f"BM_Grant_ConnectAcquireClose/{arg}")
        s6 = bm.get(f"BM_Alt_S6FdholderConnectRetrieveClose/{arg}")
        name = f"3. connect+acquire+close vs s6-fdholder, libs6 ({placement})"
        if skipped(s6):
            t.missing(name, (s6 or {}).get("error_message", "not installed"), "-")
        elif skipped(fig):
            t.missing(name, "not run", "-")
        else:
            # Its old goal (s6 >= 2x ours) was below the floor and is retired (#19 item 5).
            speedup = s6["p50_us"] / fig["p50_us"]
            t.add(name, (fmt_us(fig["p50_us"]), fmt_us(fig["p99_us"])), (fmt_us(s6["p50_us"]), fmt_us(s6["p99_us"])),
                  f"{speedup:.2f}x faster", "-", "info")

    # 4 and 6: whole processes.
    run = hf.get("sockbroker-run")
    plain = hf.get("true")
    if run and plain:
        r = run["p50_us"] / plain["p50_us"]
        # Its old goal (<= 1.5x) was below the floor (two execs) and is retired (#19 item 5).
        t.add("4. sockbroker run -s web -- true vs true", (fmt_us(run["p50_us"]), fmt_us(run["p99_us"])),
              (fmt_us(plain["p50_us"]), fmt_us(plain["p99_us"])), f"{r:.2f}x", "-", "info")
    else:
        t.missing("4. sockbroker run -s web -- true vs true", "not run (hyperfine missing)", "-")
    floor = hf.get("two-execs")
    if floor and plain:
        # `sockbroker run` execs itself, then the program: two execs are its floor.
        r = floor["p50_us"] / plain["p50_us"]
        t.add("4. floor: env true (two execs, no broker) vs true", (fmt_us(floor["p50_us"]), fmt_us(floor["p99_us"])),
              (fmt_us(plain["p50_us"]), fmt_us(plain["p99_us"])), f"{r:.2f}x", "-", "info")
    for key, title in (("s6-fdholder-retrieve", "4/6. sockbroker run vs s6-fdholder-retrieve ... true"),
                       ("systemd-socket-activate", "4/6. sockbroker run vs systemd-socket-activate ... true"),
                       ("authbind", "6. sockbroker run vs authbind + own bind/listen"),
                       ("self-bind", "6. sockbroker run vs own bind/listen (root-free port)")):
        alt = hf.get(key)
        if not (run and alt):
            t.missing(title, "not installed")
            continue
        r = run["p50_us"] / alt["p50_us"]
        # Against s6-fdholder-retrieve: within 1.3x (#19 item 5's revised goal).
        limit = {"s6-fdholder-retrieve": 1.3, "systemd-socket-activate": 1.0}.get(key)
        goal = "-" if limit is None else ("< 1x (faster)" if limit == 1.0 else f"<= {limit}x")
        t.add(title, (fmt_us(run["p50_us"]), fmt_us(run["p99_us"])), (fmt_us(alt["p50_us"]), fmt_us(alt["p99_us"])),
              f"{r:.2f}x", goal, "info" if limit is None else verdict(r < 1 if limit == 1.0 else r <= limit))
        # s6-fdholder-retrieve hands the socket over and execs; it confines
        # nothing. `run --no-lockdown` does the same work: this row compares
        # the two like for like, and shows what the lockdown costs.
        bare = hf.get("sockbroker-run-no-lockdown")
        if key == "s6-fdholder-retrieve" and bare:
            r = bare["p50_us"] / alt["p50_us"]
            t.add("4/6. sockbroker run --no-lockdown vs s6-fdholder-retrieve",
                  (fmt_us(bare["p50_us"]), fmt_us(bare["p99_us"])),
                  (fmt_us(alt["p50_us"]), fmt_us(alt["p99_us"])), f"{r:.2f}x", "-", "info")

    # 9, whole processes: a program that binds itself, supervised, against the
    # same program binding a root-free port with no broker.
    sup, own = hf.get("sockbroker-run-supervised-bind"), hf.get("self-bind")
    if sup and own:
        r = sup["p50_us"] / own["p50_us"]
        t.add("9. sockbroker run -- (own bind of port 80, supervised) vs own bind/listen",
              (fmt_us(sup["p50_us"]), fmt_us(sup["p99_us"])), (fmt_us(own["p50_us"]), fmt_us(own["p99_us"])),
              f"{r:.2f}x", "-", "info")

    # 5: throughput.
    for clients in (1, 4, 16, 64):
        fig = bm.get(f"BM_Grant_Throughput/{clients}")
        base = bm.get(f"BM_Limit_Throughput/{clients}")
        name = f"5. grants/s, {clients} client{'s' if clients > 1 else ''} (vs bare epoll peer)"
        if skipped(fig) or skipped(base):
            t.missing(name, "not run")
            continue
        r = fig["per_s"] / base["per_s"]
        if clients == 16:
            t.add(name, (fmt_rate(fig["per_s"]), "-"), (fmt_rate(base["per_s"]), "-"), f"{r:.2f}x",
                  ">= 50,000/s", verdict(fig["per_s"] >= 50000))
        else:
            t.add(name, (fmt_rate(fig["per_s"]), "-"), (fmt_rate(base["per_s"]), "-"), f"{r:.2f}x", "-", "info")

    # 7: the data path.
    for fig_key, base_key, title, goal in (
            ("brokered", "self-bound", "7. HTTP req/s: brokered vs self-bound", 0.98),
            ("supervised", "self-bound", "7. HTTP req/s: supervised (binds itself) vs self-bound", 0.98),
            ("supervised", "brokered", "7. HTTP req/s: supervised (binds itself) vs brokered (-s web)", None),
            ("brokered", "brokered-nolockdown", "7. HTTP req/s: lockdown on vs off", 0.97)):
        fig, base = wrk.get(fig_key), wrk.get(base_key)
        if not (fig and base and fig["rps"] and base["rps"]):
            if goal is not None:
                t.missing(title, "not run (wrk missing)", f">= {goal}x")
            continue
        # The median over the rounds of each round's ratio: a round is figure
        # and baseline run back to back, so drift between rounds cancels.
        rounds = sorted(set(fig["by_round"]) & set(base["by_round"]))
        r = median([fig["by_round"][n] / base["by_round"][n] for n in rounds]) if rounds else fig["rps"] / base["rps"]
        t.add(title + " (latency p50/p99)", (f"{fig['rps']:,.0f}/s", f"{fmt_us(fig['p50_us'])}/{fmt_us(fig['p99_us'])}"),
              (f"{base['rps']:,.0f}/s", f"{fmt_us(base['p50_us'])}/{fmt_us(base['p99_us'])}"), f"{r:.3f}x",
              f">= {goal}x" if goal is not None else "-", verdict(r >= goal) if goal is not None else "info")

    # 9: a program's own bind under `sockbroker run`.
    supervised_rows(t, bm)

    supervised_data_path_rows(t, wrk, load_supervised_counts(results))

    # 8: scale.
    for n in (100, 1000, 10000):
        b = bm.get(f"BM_Scale_Check/{n}")
        if skipped(b):
            t.missing(f"8. sockbroker check, {n:,} sockets", "not run")
            continue
        goal = "< 200 ms" if n == 10000 else "-"
        t.add(f"8. sockbroker check, {n:,} sockets", (fmt_us(b["p50_us"]), fmt_us(b["p99_us"])), ("-", "-"), "-",
              goal, verdict(b["p99_us"] < 200000) if n == 10000 else "info")
    for n in (100, 1000, 10000):
        b = bm.get(f"BM_Scale_Startup/{n}")
        if skipped(b):
            t.missing(f"8. broker start-up, {n:,} sockets", "not run")
            continue
        t.add(f"8. broker start-up, {n:,} sockets", (fmt_us(b["p50_us"]), fmt_us(b["p99_us"])), ("-", "-"), "-",
              "-", "info")
    b = bm.get("BM_Scale_ReloadUnchanged/10000")
    if skipped(b):
        t.missing("8. reload unchanged, 10,000 sockets", "not run", "< 200 ms, 0 rebound")
    else:
        rebound = int(b["rebound"])
        t.add(f"8. reload unchanged, 10,000 sockets ({rebound} rebound)", (fmt_us(b["p50_us"]), fmt_us(b["p99_us"])),
              ("-", "-"), "-", "< 200 ms, 0 rebound", verdict(b["p99_us"] < 200000 and rebound == 0))
    b = bm.get("BM_Scale_BrokerRss/1000")
    if skipped(b):
        t.missing("8. broker RSS", "not run")
    else:
        idle, loaded = b["idle_kib"] / 1024, b["loaded_kib"] / 1024
        t.add("8. broker RSS idle", (f"{idle:.2f} MiB", "-"), ("-", "-"), "-", "< 8 MiB", verdict(idle < 8))
        t.add("8. broker RSS, 1,000 connected clients", (f"{loaded:.2f} MiB", "-"), ("-", "-"), "-", "< 16 MiB",
              verdict(loaded < 16))

    # 10: handover (#17). The start-ups alternate in one benchmark, so the
    # ratio is of two medians taken in the same stretch of the run.
    b = bm.get("BM_Handover_Startup")
    name = "10. broker start-up, 10,000 sockets: adopted (LISTEN_FDS) vs bound (p50 / max)"
    if skipped(b):
        t.missing(name, "not run", "<= 0.5x")
    else:
        r = b["adopt_p50_us"] / b["bind_p50_us"]
        t.add(name, (fmt_us(b["adopt_p50_us"]), fmt_us(b["adopt_max_us"])),
              (fmt_us(b["bind_p50_us"]), fmt_us(b["bind_max_us"])), f"{r:.2f}x", "<= 0.5x", verdict(r <= 0.5))
    b = bm.get("BM_Handover_Upgrade/1000")
    name = "10. upgrade in place, 10,000 sockets, 1,000 holders vs a status answer (p50 / max)"
    if skipped(b):
        t.missing(name, "not run", "< 300 ms")
    else:
        kept = int(b["holders_after"])
        t.add(f"{name}, {kept:,} holders kept", (fmt_us(b["p50_us"]), fmt_us(b["max_us"])),
              (fmt_us(b["status_p50_us"]), "-"), f"{b['p50_us'] / b['status_p50_us']:.1f}x", "< 300 ms, 1,000 kept",
              verdict(b["max_us"] < 300000 and kept == 1000))

    print(t.render())
    print()
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"Machine: {os.cpu_count()} CPUs, {cpu}, Linux {platform.release()}")
    misses = sum(1 for r in t.rows if r[7] == "MISS")
    print(f"{sum(1 for r in t.rows if r[7] == 'PASS')} PASS, {misses} MISS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
