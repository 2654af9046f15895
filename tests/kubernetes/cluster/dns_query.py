"""Resolve NAME's A records at a DNS SERVER (UDP 53): up.sh checks the cluster DNS with it (no dig here).

python3 dns_query.py SERVER NAME   -> prints one IPv4 address per line; exit 1 when none
"""

from __future__ import annotations

import random
import socket
import struct
import sys


def query(server: str, name: str, timeout: float = 3.0) -> list[str]:
    qid = random.randrange(65536)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, 53))
        data = sock.recv(4096)
    _, _, qd, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    pos = 12
    for _ in range(qd):  # skip the question
        while data[pos]:
            pos += data[pos] + 1
        pos += 5
    found = []
    for _ in range(an):
        pos += 2 if data[pos] & 0xC0 == 0xC0 else _name_length(data, pos)
        rtype, _, _, length = struct.unpack(">HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(data[pos : pos + 4]))
        pos += length
    return found


def _name_length(data: bytes, pos: int) -> int:
    start = pos
    while data[pos] and data[pos] & 0xC0 != 0xC0:
        pos += data[pos] + 1
    return pos - start + (2 if data[pos] else 1)


if __name__ == "__main__":
    addresses = query(sys.argv[1], sys.argv[2])
    print("\n".join(addresses))
    sys.exit(0 if addresses else 1)
