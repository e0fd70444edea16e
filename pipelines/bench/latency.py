"""HTTP load helpers for benchmarks: keep-alive clients, percentiles, bounded loops."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Target",
    "alternating_latencies",
    "concurrent_rate",
    "percentile_ms",
    "sequential_latencies",
]


@dataclass(frozen=True)
class Target:
    """One endpoint to load: where, and the exact request to send."""

    host: str
    port: int
    path: str
    body: bytes
    content_type: str = "application/json"

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def send(self, connection: http.client.HTTPConnection) -> int:
        """One request on a kept-alive connection; returns the HTTP status."""
        connection.request(
            "POST", self.path, body=self.body, headers={"Content-Type": self.content_type}
        )
        response = connection.getresponse()
        response.read()
        return response.status


def sequential_latencies(target: Target, requests: int) -> tuple[np.ndarray, int]:
    """Latency of each of `requests` back-to-back requests (seconds), and the failure count."""
    latencies, failures = alternating_latencies({"target": target}, requests)
    return latencies["target"], failures["target"]


def concurrent_rate(target: Target, clients: int, seconds: float) -> tuple[float, int]:
    """Requests per second that `clients` keep-alive clients sustain for `seconds`."""
    stop = time.monotonic() + seconds
    counts = [0] * clients
    failures = [0] * clients

    def client(index: int) -> None:
        connection = target.connect()
        try:
            while time.monotonic() < stop:
                if target.send(connection) == 200:
                    counts[index] += 1
                else:
                    failures[index] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - began), sum(failures)


def percentile_ms(latencies: np.ndarray, q: float) -> float:
    return float(np.percentile(latencies, q) * 1000.0)


def alternating_latencies(
    targets: Mapping[str, Target], cycles: int, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """One request to every target per cycle, `cycles` times; latencies (seconds) and
    failure counts per target.

    Each target has its own kept-alive connection. Request ``i`` of every target is sent
    within the same few milliseconds, so load that comes and goes on a shared machine
    lands on all targets alike, and ``latencies[a][i] - latencies[b][i]`` is a paired
    difference. Every cycle takes the targets in a fresh random order (seeded): a request
    can be slowed by what the previous one left running (its replica's bookkeeping after
    the answer), and a fixed order would always hand one target the same predecessor.
    """
    names = list(targets)
    latencies = {name: np.empty(cycles) for name in names}
    failures = dict.fromkeys(names, 0)
    connections = {name: targets[name].connect() for name in names}
    order = np.random.default_rng(seed)
    try:
        for i in range(cycles):
            for name in order.permutation(names).tolist():
                began = time.perf_counter()
                if targets[name].send(connections[name]) != 200:
                    failures[name] += 1
                latencies[name][i] = time.perf_counter() - began
    finally:
        for connection in connections.values():
            connection.close()
    return latencies, failures
