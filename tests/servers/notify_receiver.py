#!/usr/bin/python3
"""Stands in for systemd's notification socket ($NOTIFY_SOCKET): receives
sd_notify(3) datagrams and appends each to a file, one per line.

Usage: notify_receiver.py SOCKET_PATH OUT_FILE SECONDS

Binds an AF_UNIX datagram socket at SOCKET_PATH, mode 0666 (the service runs
as another uid), and records what arrives for SECONDS, then exits 0.
"""

import os
import socket
import sys
import time


def main():
    path, out, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        os.chmod(path, 0o666)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data = s.recv(4096)
            except socket.timeout:
                break
            with open(out, "a") as f:
                f.write(data.decode(errors="replace").replace("\n", " ") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
