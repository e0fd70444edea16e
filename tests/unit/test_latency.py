"""`alternating_latencies`: the paired request-by-request measurement `bench serve` uses,
against a real HTTP server on 127.0.0.1 that records the order requests arrive in."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from pipelines.bench.latency import Target, alternating_latencies


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the bench's clients expect
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    arrivals: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).arrivals.append(self.path)
        status = 500 if self.path == "/broken" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass


@pytest.fixture
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    _Recorder.arrivals = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _targets(server: http.server.ThreadingHTTPServer, *paths: str) -> dict[str, Target]:
    port = server.server_address[1]
    return {path.strip("/"): Target("127.0.0.1", port, path, b"{}") for path in paths}


def _cycles(arrivals: list[str], size: int) -> list[tuple[str, ...]]:
    return [tuple(arrivals[i : i + size]) for i in range(0, len(arrivals), size)]


def test_every_cycle_sends_one_request_to_each_target(server):
    latencies, failures = alternating_latencies(_targets(server, "/a", "/b", "/c"), 40)

    assert set(latencies) == {"a", "b", "c"}
    assert all(v.shape == (40,) and (v > 0).all() for v in latencies.values())
    assert failures == {"a": 0, "b": 0, "c": 0}
    cycles = _cycles(_Recorder.arrivals, 3)
    assert len(cycles) == 40
    assert all(sorted(cycle) == ["/a", "/b", "/c"] for cycle in cycles)


def test_the_order_changes_between_cycles_and_follows_the_seed(server):
    targets = _targets(server, "/a", "/b", "/c")
    alternating_latencies(targets, 60, seed=3)
    first = _cycles(_Recorder.arrivals, 3)
    _Recorder.arrivals = []
    alternating_latencies(targets, 60, seed=3)

    assert _cycles(_Recorder.arrivals, 3) == first  # reproducible
    # No target always has the same predecessor: with 3 targets and 60 cycles, every
    # target comes first in some cycle and every order appears.
    assert {cycle[0] for cycle in first} == {"/a", "/b", "/c"}
    assert len(set(first)) == 6


def test_a_failing_target_is_counted_and_the_others_are_not(server):
    latencies, failures = alternating_latencies(_targets(server, "/a", "/broken"), 10)

    assert failures == {"a": 0, "broken": 10}
    assert np.isfinite(latencies["broken"]).all()
