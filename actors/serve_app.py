"""The Ray Serve deployment: weighted ensemble predictions over HTTP while training goes on.

Routes: ``POST /predict``, ``GET /healthz``, ``GET /status``, ``GET /weights``.

How a replica stays fresh without touching members per request (DESIGN rule 5): a
background task asks the coordinator for its latest version every `refresh_interval_s`;
when it is newer, the replica fetches the member snapshots from the object store, loads
them into the *standby* copy of the ensemble graph and then flips one reference. A batch
reads that reference once, so every request is answered by exactly one version, and a
replica only ever flips forward, so its version never goes backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from actors.ensemble_model import EnsembleModel
from actors.errors import RequestError
from actors.requests import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS, parse_predict_request
from actors.snapshot import EnsembleSnapshot, MemberSnapshot
from actors.specs import ModelSpec
from actors.tf_runtime import configure_tensorflow

__all__ = ["EnsembleServer", "build_app"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Live:
    """What one version serves: the graph holding its weights and its mixing vector."""

    version: int
    member_ids: tuple[int, ...]
    model: EnsembleModel
    mixing: np.ndarray


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class EnsembleServer:
    """Answers `/predict` with the coordinator's newest ensemble snapshot.

    Args:
        coordinator: handle of the `CoordinatorActor`.
        features: feature names in model input order.
        model_spec: the members' architecture (the replica rebuilds it to load weights).
        expected_members: member count to build and trace a graph for at start-up, so
            the first snapshot swap does not pay for tracing (0: build on demand).
        refresh_interval_s: how often to ask the coordinator for a newer version.
        max_body_bytes: requests with larger bodies get 413.
        max_rows: requests with more rows get 413.
    """

    def __init__(
        self,
        coordinator: Any,
        features: list[str],
        model_spec: ModelSpec,
        expected_members: int = 0,
        refresh_interval_s: float = 0.05,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_rows: int = DEFAULT_MAX_ROWS,
    ):
        configure_tensorflow(1)
        self._coordinator = coordinator
        self._features = list(features)
        self._spec = model_spec
        self._refresh_interval_s = refresh_interval_s
        self._max_body_bytes = max_body_bytes
        self._max_rows = max_rows
        self._live: _Live | None = None
        self._standby: dict[int, EnsembleModel] = {}  # spare graph per member count
        if expected_members > 0:
            self._standby[expected_members] = self._new_graph(expected_members)
        self._refresher: asyncio.Task | None = None
        self.swaps = 0
        # Constructed outside an event loop, there is nothing to start yet: the first
        # request starts the refresher.
        with contextlib.suppress(RuntimeError):
            self._ensure_refresher()

    # -- snapshot refresh ---------------------------------------------------------------

    def _new_graph(self, members: int) -> EnsembleModel:
        graph = EnsembleModel(self._spec, len(self._features), members)
        graph.warm_up()
        return graph

    def _ensure_refresher(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # keep serving the last good version whatever happened
                logger.warning(
                    "snapshot refresh failed; serving the last good version", exc_info=True
                )
            await asyncio.sleep(self._refresh_interval_s)

    async def refresh(self) -> int:
        """Load the coordinator's newest snapshot if it is newer; returns the live version."""
        current = self._live.version if self._live else -1
        latest = await self._coordinator.latest_version.remote()
        if latest <= current:
            return current
        snapshot: EnsembleSnapshot | None = await self._coordinator.snapshot.remote()
        if snapshot is None or snapshot.version <= current:
            return current
        members: list[MemberSnapshot] = list(await asyncio.gather(*snapshot.member_refs))
        n = len(members)
        # Reuse the graph that is not live (same member count) so nothing rebuilds per swap.
        model = self._standby.pop(n, None) or self._new_graph(n)
        for i, member in enumerate(members):
            model.set_member_weights(i, member.weights)
        if self._live is not None and self._live.version >= snapshot.version:
            self._standby[n] = model  # a concurrent refresh got further; never go back
            return self._live.version
        previous = self._live
        self._live = _Live(snapshot.version, snapshot.member_ids, model, snapshot.mixing)
        if previous is not None:
            self._standby[len(previous.member_ids)] = previous.model
        self.swaps += 1
        return snapshot.version

    # -- prediction -----------------------------------------------------------------------

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def _predict_batch(self, inputs: list[np.ndarray]) -> list[dict]:
        live = self._live  # read once: the whole batch is answered by this one version
        if live is None:
            return [{"error": "no model snapshot published yet; retry shortly"} for _ in inputs]
        sizes = [len(x) for x in inputs]
        mixed, _ = live.model.predict(np.concatenate(inputs), live.mixing)
        answers = []
        for part in np.split(mixed, np.cumsum(sizes)[:-1]):
            answers.append(
                {
                    "predictions": (part > 0.5).astype(int).tolist(),
                    "probabilities": [round(float(p), 6) for p in part],
                    "weights_version": live.version,
                }
            )
        return answers

    async def __call__(self, request: Request) -> JSONResponse:
        self._ensure_refresher()
        path = request.url.path.rstrip("/") or "/"
        routes = {
            "/predict": ("POST", self._predict),
            "/healthz": ("GET", self._healthz),
            "/status": ("GET", self._status),
            "/weights": ("GET", self._weights),
        }
        if path not in routes:
            return _error(
                404, f"no route {path!r}; routes: POST /predict, GET /healthz, /status, /weights"
            )
        method, handler = routes[path]
        if request.method != method:
            return _error(405, f"{path} takes {method}, got {request.method}")
        return await handler(request)

    async def _predict(self, request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._max_body_bytes:
            return _error(
                413, f"request body is {declared} bytes; the limit is {self._max_body_bytes}"
            )
        body = await request.body()
        try:
            x = parse_predict_request(
                body,
                request.headers.get("content-type"),
                self._features,
                max_body_bytes=self._max_body_bytes,
                max_rows=self._max_rows,
            )
        except RequestError as error:
            return _error(error.status, error.message)
        if self._live is None:
            # Only before the first snapshot: fetch it now rather than refuse the request.
            await self.refresh()
        answer = await self._predict_batch(x)
        if "error" in answer:
            return _error(503, answer["error"])
        return JSONResponse(answer)

    async def _healthz(self, request: Request) -> JSONResponse:
        live = self._live
        return JSONResponse(
            {"ok": True, "weights_version": live.version if live else None, "pid": os.getpid()}
        )

    async def _status(self, request: Request) -> JSONResponse:
        status = await self._coordinator.status.remote()
        status["replica_version"] = self._live.version if self._live else None
        return JSONResponse(json.loads(json.dumps(status, default=float)))

    async def _weights(self, request: Request) -> JSONResponse:
        return JSONResponse(await self._coordinator.weights.remote())


def build_app(coordinator: Any, features: list[str], model_spec: ModelSpec, **options: Any):
    """The Serve application, ready for `serve.run`."""
    return EnsembleServer.bind(coordinator, features, model_spec, **options)  # type: ignore[attr-defined]
