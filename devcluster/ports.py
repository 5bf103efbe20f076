"""Ports on 127.0.0.1 for the processes that the dev cluster, the tests and the benchmarks start."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Where the kernel's range of source ports for outgoing connections cannot be read.
DEFAULT_EPHEMERAL = (32768, 60999)
LOWEST = 10000
_pick = random.SystemRandom()  # never the seeded generator of a soak or a test: processes would agree


def free_port() -> int:
    """A port that is free now, below the kernel's ephemeral range.

    A port picked by binding to port 0 comes from the ephemeral range, which the kernel also hands
    to outgoing connections as source ports; one taken that way between the pick and the server's
    own bind made the server exit (address already in use). Below the range only listeners take
    ports, and the bind here checks that none holds this one."""
    low, _ = _ephemeral_range()
    for _ in range(200):
        port = _pick.randrange(LOWEST, max(low, LOWEST + 1000))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on 127.0.0.1 between {LOWEST} and {low}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL
