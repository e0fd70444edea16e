"""Safe defaults: Serve listens on loopback unless told otherwise."""

from __future__ import annotations

import pytest

from pipelines.config import JobConfig
from pipelines.job import Job
from tests.helpers import free_port

pytestmark = pytest.mark.integration


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port`, from the kernel's tables
    (no packet is sent anywhere)."""
    import ipaddress

    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            with open(table, encoding="ascii") as text:
                lines = text.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel writes each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(words if width == 32 else raw[::-1])))
    return found


def test_serve_listens_on_loopback_only_by_default(ray_local, tmp_path):
    config = JobConfig(rows=20_000, members=1, port=free_port(), report=tmp_path, progress=False)
    job = Job(config)
    job.start()
    try:
        addresses = listening_addresses(config.port)
        assert addresses == {"127.0.0.1"}, addresses
    finally:
        job.request_stop()
        job.wait()
        job.shutdown()
