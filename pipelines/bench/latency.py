"""HTTP load helpers for benchmarks: keep-alive clients, percentiles, bounded loops."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Target", "concurrent_rate", "interleave", "percentile_ms", "sequential_latencies"]


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
    latencies = np.empty(requests)
    failures = 0
    connection = target.connect()
    try:
        for i in range(requests):
            began = time.perf_counter()
            if target.send(connection) != 200:
                failures += 1
            latencies[i] = time.perf_counter() - began
    finally:
        connection.close()
    return latencies, failures


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


def interleave(rounds: int, steps: list[Callable[[], None]]) -> None:
    """Run each step once per round, alternating, so drift on a noisy machine hits all alike."""
    for _ in range(rounds):
        for step in steps:
            step()
