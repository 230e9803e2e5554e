#!/usr/bin/python3
"""Asks a DNS server for a name's A records, over UDP or TCP, and prints them
one per line (no dig or host needed).

Usage: dns_query.py SERVER PORT NAME [udp|tcp]
Exit 0 with at least one address printed; 1 on no answer, an error or none.
"""

import random
import socket
import struct
import sys


def query(name, ident):
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)  # RD, one question
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    return header + qname + struct.pack("!HH", 1, 1)  # A, IN


def skip_name(message, offset):
    while True:
        length = message[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return offset + 2
        offset += 1 + length


def answers(message, ident):
    got, flags, qdcount, ancount = struct.unpack("!HHHH", message[:8])
    if got != ident:
        raise ValueError(f"answer id {got} != query id {ident}")
    if flags & 0x000F:
        raise ValueError(f"rcode {flags & 0x000F}")
    offset = 12
    for _ in range(qdcount):
        offset = skip_name(message, offset) + 4
    for _ in range(ancount):
        offset = skip_name(message, offset)
        rtype, _, _, length = struct.unpack("!HHIH", message[offset:offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            yield socket.inet_ntoa(message[offset:offset + 4])
        offset += length


def main():
    if len(sys.argv) not in (4, 5):
        print("usage: dns_query.py SERVER PORT NAME [udp|tcp]", file=sys.stderr)
        return 64
    server, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    transport = sys.argv[4] if len(sys.argv) == 5 else "udp"
    ident = random.randrange(1, 65535)
    message = query(name, ident)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    try:
        if transport == "udp":
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                s.sendto(message, (server, port))
                reply, _ = s.recvfrom(65535)
        else:
            with socket.create_connection((server, port), timeout=2) as s:
                s.sendall(struct.pack("!H", len(message)) + message)
                data = b""
                while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
                    chunk = s.recv(65535)
                    if not chunk:
                        raise ValueError("connection closed before the whole answer")
                    data += chunk
                reply = data[2:]
        found = list(answers(reply, ident))
    except (OSError, ValueError, struct.error, IndexError) as e:
        print(f"dns_query: {name} via {server}:{port}/{transport}: {e}", file=sys.stderr)
        return 1
    if not found:
        print(f"dns_query: {name} via {server}:{port}/{transport}: no A record", file=sys.stderr)
        return 1
    print("\n".join(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
