#!/usr/bin/python3
"""Whether the broker's audit log (JSON lines) has an event for an address.

Usage: audit_has.py FILE EVENT ADDRESS PORT
  EVENT    "grant", "deny", ...
  ADDRESS  "0.0.0.0", "::", "127.0.0.1" (compared as an IP address)
  PORT     80

An event matches when it is EVENT and some object in it carries that address
and port in the contract's Tracee-style fields (sin_addr/sin_port for IPv4,
sin6_addr/sin6_port for IPv6), wherever the broker put it (local_addr for a
grant; a supervised bind's deny may name the requested address in another
object), or some string in it is the address written as the policy writes it
("0.0.0.0:81", "[::]:80"). Exit 0 when found; 1 (printing the EVENT lines
seen) when not.
"""

import ipaddress
import json
import sys


def addresses(value):
    """Every (address, port) pair found in the nested JSON value."""
    if isinstance(value, dict):
        for addr_key, port_key in (("sin_addr", "sin_port"), ("sin6_addr", "sin6_port")):
            if addr_key in value and port_key in value:
                yield value[addr_key], value[port_key]
        for item in value.values():
            yield from addresses(item)
    elif isinstance(value, list):
        for item in value:
            yield from addresses(item)


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def written(address, port):
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def same(address, port, want_address, want_port):
    try:
        return int(port) == want_port and ipaddress.ip_address(address) == want_address
    except (TypeError, ValueError):
        return False


def main():
    if len(sys.argv) != 5:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 64
    path, event, want_address, want_port = sys.argv[1], sys.argv[2], ipaddress.ip_address(sys.argv[3]), int(sys.argv[4])
    seen = []
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError as e:
        print(f"audit_has: cannot read {path}: {e}", file=sys.stderr)
        return 1
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") != event:
            continue
        seen.append(line.rstrip())
        if (any(same(a, p, want_address, want_port) for a, p in addresses(record))
                or written(want_address, want_port) in strings(record)):
            print(f"audit: {line.rstrip()}")
            return 0
    print(f"audit_has: no \"{event}\" event for {want_address} port {want_port} in {path}; "
          f"the \"{event}\" events there:", file=sys.stderr)
    for line in seen or ["(none)"]:
        print(f"  {line}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
