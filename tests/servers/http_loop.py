#!/usr/bin/python3
"""A client that makes one HTTP connection every few milliseconds while a
server reloads or upgrades, and reports how each went.

Usage: http_loop.py HOST PORT STOP_FILE SUMMARY_FILE [INTERVAL_S] [MAX_S]

Connects to HOST:PORT, sends "GET / HTTP/1.0", reads the answer to the end,
sleeps INTERVAL_S (default 0.005), again, until STOP_FILE exists or MAX_S
(default 30) seconds have passed. Each attempt has 3 s to complete: longer
counts as "hung". Writes SUMMARY_FILE (JSON): ok, refused, reset, hung, other
(counts), bodies (first line of each 200 answer, with its count), errors (the
first few failures) and seconds. SUMMARY_FILE.first appears at the first 200
answer, so that the caller can start the operation once the loop runs (Python
may take more than a second to start on a slow machine). Always exits 0; the
caller judges.
"""

import collections
import json
import os
import socket
import sys
import time


def one(host, port):
    with socket.create_connection((host, port), timeout=3) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    answer = b"".join(chunks).decode(errors="replace")
    head, _, body = answer.partition("\r\n\r\n")
    status = head.split(" ", 2)[1] if head.startswith("HTTP/") else "?"
    return status, (body.splitlines() or [""])[0]


def main():
    host, port, stop_file, summary_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.005
    max_seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 30.0
    counts = collections.Counter()
    bodies = collections.Counter()
    errors = []
    start = time.monotonic()
    while not os.path.exists(stop_file) and time.monotonic() - start < max_seconds:
        t0 = time.monotonic()
        try:
            status, first = one(host, port)
            if status == "200":
                if not counts["ok"]:
                    open(summary_file + ".first", "w").close()
                counts["ok"] += 1
                bodies[first] += 1
            else:
                counts["other"] += 1
                errors.append(f"status {status}")
        except ConnectionRefusedError:
            counts["refused"] += 1
            errors.append(f"refused after {t0 - start:.3f} s")
        except ConnectionResetError:
            counts["reset"] += 1
            errors.append(f"reset after {t0 - start:.3f} s")
        except socket.timeout:
            counts["hung"] += 1
            errors.append(f"hung (no answer in 3 s) from {t0 - start:.3f} s")
        except OSError as e:
            counts["other"] += 1
            errors.append(f"{e!r} after {t0 - start:.3f} s")
        time.sleep(interval)
    summary = {name: counts[name] for name in ("ok", "refused", "reset", "hung", "other")}
    summary["bodies"] = dict(bodies)
    summary["errors"] = errors[:10]
    summary["seconds"] = round(time.monotonic() - start, 3)
    with open(summary_file + ".tmp", "w") as f:
        json.dump(summary, f)
    os.rename(summary_file + ".tmp", summary_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
