"""The Ray Serve deployment: weighted ensemble predictions over HTTP while training goes on.

Routes: ``POST /predict``, ``GET /healthz``, ``GET /status``, ``GET /weights``, and
``POST /admin/scale`` (a scaling step, queued for the job's driver; ``GET
/admin/scale/ID`` answers its result).

How a replica stays fresh without touching members per request (DESIGN rule 5): a
background task asks the coordinator for its latest version every `refresh_interval_s`;
when it is newer, the replica fetches the member snapshots from the object store, loads
them into the *standby* copy of the ensemble graph and then flips one reference. A batch
reads that reference once, so every request is answered by exactly one version, and a
replica only ever flips forward, so its version never goes backwards.

A request's rows become the model's inputs before batching: rows as they are for a
row-wise model; for a sequence model (window > 1) the rows are one series, oldest first,
and each complete window of `window` consecutive rows is one input (n rows give
n - window + 1 predictions, the i-th for the window ending at row i + window - 1).
Windows are built per request, so a batch never makes a window across two requests.

Answers by task (one entry per row, or per window):

* binary: ``predictions`` (0/1), ``probabilities`` (of class 1);
* multiclass: ``predictions`` (class index), ``probabilities`` (a list per
  prediction, one per class), ``confidence`` (the highest class probability);
* regression: ``predictions`` (values).

``min_confidence`` turns unconfident predictions into ``"abstain"`` (classification);
``explain`` adds the mixing ``weights`` and, per prediction, each member's output.
``partition`` (one the job reads, else 400) mixes the members with that partition's own
weights, or with the overall ones while it has no record of its own; the answer then
says which (``"mixing": "partition"`` or ``"overall"``). A batch still makes one model
call with the overall weights; only a request that named a partition is re-mixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from actors.ensemble_model import EnsembleModel, Forward
from actors.errors import RequestError
from actors.process_info import memory_mb
from actors.requests import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_ROWS,
    PredictRequest,
    parse_predict_request,
    parse_scale_request,
)
from actors.snapshot import EnsembleSnapshot, MemberSnapshot
from actors.specs import ModelSpec
from actors.tf_runtime import configure_tensorflow
from actors.weighting import mix_outputs
from actors.windows import windows_of

__all__ = ["EnsembleServer", "build_app"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Input:
    """One request's share of a batch: its model inputs and the partition it named."""

    x: np.ndarray
    partition: int | None


@dataclass(frozen=True)
class _Scored:
    """One request's share of a batch: the version that answered it and its outputs."""

    live: _Live
    # Per prediction: the ensemble's output, (n,) probability of class 1 or value, or
    # (n, classes); and each member's, (n, members) or (n, members, classes).
    mixed: np.ndarray
    per_member: np.ndarray
    # The mixing weights `mixed` was made with (member_ids order), and whose they are:
    # the named partition's own, or the overall ones.
    weights: np.ndarray
    weights_kind: Literal["partition", "overall"]


@dataclass(frozen=True)
class _Live:
    """What one version serves: the graph holding its weights and its mixing vectors."""

    version: int
    member_ids: tuple[int, ...]
    model: EnsembleModel
    mixing: np.ndarray
    # Every source partition the job reads, and the mixing weights of those with a
    # record of their own (the others are mixed with `mixing`).
    partitions: tuple[int, ...]
    partition_mixing: Mapping[int, np.ndarray]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class EnsembleServer:
    """Answers `/predict` with the coordinator's newest ensemble snapshot.

    Args:
        coordinator: handle of the `CoordinatorActor`.
        features: feature names in model input order.
        model_spec: the members' architecture and task (the replica rebuilds it to load
            weights; the task shapes answers, the window how rows become inputs).
        expected_members: member count to build and trace a graph for at start-up, so
            the first snapshot swap does not pay for tracing (0: build on demand).
        refresh_interval_s: how often to ask the coordinator for a newer version.
        max_body_bytes: requests with larger bodies get 413.
        max_rows: requests with more rows (rows, not windows) get 413.
        impute_missing: answer rows with missing features, imputing each member's running
            mean, instead of refusing them with 400.
        forward: how the graph computes (`EnsembleModel`'s ``forward``): ``auto`` by
            default; ``tensorflow`` lets `bench serve` measure the NumPy path against it.
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
        impute_missing: bool = False,
        forward: Forward = "auto",
    ):
        configure_tensorflow(1)
        self._forward: Forward = forward
        self._coordinator = coordinator
        self._features = list(features)
        self._spec = model_spec
        self._refresh_interval_s = refresh_interval_s
        self._max_body_bytes = max_body_bytes
        self._max_rows = max_rows
        self._impute_missing = impute_missing
        self._replica = f"{socket.gethostname()}:{os.getpid()}"
        self._live: _Live | None = None
        # Spare graphs by member count. Two are built and traced up front: the first swap
        # takes one live, and the second must find the other ready, not trace for ~1 s.
        self._standby: dict[int, list[EnsembleModel]] = {}
        if expected_members > 0:
            self._standby[expected_members] = [self._new_graph(expected_members) for _ in range(2)]
        self._refresher: asyncio.Task | None = None
        # Constructed outside an event loop, there is nothing to start yet: the first
        # request starts the refresher.
        with contextlib.suppress(RuntimeError):
            self._ensure_refresher()

    # -- snapshot refresh ---------------------------------------------------------------

    def _load(
        self, model: EnsembleModel | None, n: int, members: list[MemberSnapshot]
    ) -> EnsembleModel:
        model = model if model is not None else self._new_graph(n)
        for i, member in enumerate(members):
            model.set_member_weights(i, member.weights)
        return model

    def _new_graph(self, members: int) -> EnsembleModel:
        graph = EnsembleModel(self._spec, len(self._features), members, forward=self._forward)
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
        snapshot: EnsembleSnapshot | None = await self._coordinator.snapshot_if_newer.remote(
            current
        )
        if snapshot is None:
            return current
        members: list[MemberSnapshot] = list(await asyncio.gather(*snapshot.member_refs))
        n = len(members)
        # Load the graph that is not live (same member count), in a worker thread: requests
        # keep being answered on the event loop by the live graph meanwhile. A graph is
        # built (and traced, which takes ~1 s) only when the member count changes.
        spares = self._standby.get(n)
        model = await asyncio.to_thread(self._load, spares.pop() if spares else None, n, members)
        if self._live is not None and self._live.version >= snapshot.version:
            self._standby.setdefault(n, []).append(model)  # a concurrent refresh got further
            return self._live.version
        previous = self._live
        self._live = _Live(
            snapshot.version,
            snapshot.member_ids,
            model,
            snapshot.mixing,
            tuple(snapshot.partitions),
            _usable_partition_mixing(snapshot),
        )
        if previous is not None:
            self._standby.setdefault(len(previous.member_ids), []).append(previous.model)
        return snapshot.version

    # -- prediction -----------------------------------------------------------------------

    # batch_wait_timeout_s=0: a lone request is answered at once; under load, requests
    # that queue while a batch computes form the next batch by themselves.
    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def _predict_batch(self, inputs: list[_Input]) -> list[_Scored | None]:
        """Score several requests' inputs (rows, or one request's windows) in one call.

        The call mixes with the overall weights; a request that named a partition with
        weights of its own in this version is then re-mixed from its members' outputs.
        One whose partition has none here (not yet, or no longer: the version may have
        changed since `_predict` checked it) keeps the overall mix.
        """
        live = self._live  # read once: the whole batch is answered by this one version
        if live is None:
            return [None for _ in inputs]
        sizes = [len(item.x) for item in inputs]
        mixed, per_member = live.model.predict(
            np.concatenate([item.x for item in inputs]), live.mixing
        )
        bounds = np.cumsum(sizes)[:-1]
        scored: list[_Scored | None] = []
        for item, mixed_part, member_part in zip(
            inputs, np.split(mixed, bounds), np.split(per_member, bounds), strict=True
        ):
            own = None if item.partition is None else live.partition_mixing.get(item.partition)
            if own is None:
                scored.append(_Scored(live, mixed_part, member_part, live.mixing, "overall"))
            else:
                remixed = mix_outputs(member_part, own).astype(mixed.dtype, copy=False)
                scored.append(_Scored(live, remixed, member_part, own, "partition"))
        return scored

    async def __call__(self, request: Request) -> JSONResponse:
        self._ensure_refresher()
        # Routes are relative to the application's route prefix ("/" for the job's app).
        prefix = request.scope.get("root_path", "").rstrip("/")
        path = request.url.path.removeprefix(prefix).rstrip("/") or "/"
        routes = {
            "/predict": ("POST", self._predict),
            "/healthz": ("GET", self._healthz),
            "/status": ("GET", self._status),
            "/weights": ("GET", self._weights),
            "/admin/scale": ("POST", self._scale),
        }
        if path.startswith("/admin/scale/"):
            routes[path] = ("GET", self._scale_result)
        if path not in routes:
            return _error(
                404,
                f"no route {path!r}; routes: POST /predict, GET /healthz, /status, /weights, "
                "POST /admin/scale, GET /admin/scale/ID",
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
        began = time.perf_counter()
        body = await request.body()
        try:
            parsed = parse_predict_request(
                body,
                request.headers.get("content-type"),
                self._features,
                query=dict(request.query_params),
                allow_missing=self._impute_missing,
                max_body_bytes=self._max_body_bytes,
                max_rows=self._max_rows,
                task=self._spec.task,
                n_classes=self._spec.n_classes,
                window=self._spec.window,
            )
        except RequestError as error:
            return _error(error.status, error.message)
        # The parser checked there are at least `window` rows, so there is >= 1 window.
        inputs = windows_of(parsed.x, self._spec.window) if self._spec.is_sequence else parsed.x
        parsed_at = time.perf_counter()
        if self._live is None:
            # Only before the first snapshot: fetch it now rather than refuse the request.
            await self.refresh()
        live, named = self._live, parsed.partition  # no live version: the batch answers 503
        if named is not None and live is not None and named not in live.partitions:
            reads = ", ".join(map(str, live.partitions)) or "none"
            return _error(400, f"partition {named} is not one this job reads; it reads {reads}")
        scored = await self._predict_batch(_Input(inputs, parsed.partition))
        if scored is None:
            return _error(503, "no model snapshot published yet; retry shortly")
        scored_at = time.perf_counter()
        answer = _answer(parsed, scored, self._spec)
        # Server-Timing (a standard header) says where a request's time went in the replica.
        timing = (
            f"parse;dur={1000 * (parsed_at - began):.3f}, "
            f"predict;dur={1000 * (scored_at - parsed_at):.3f}, "
            f"total;dur={1000 * (time.perf_counter() - began):.3f}"
        )
        return JSONResponse(answer, headers={"X-Replica": self._replica, "Server-Timing": timing})

    async def _healthz(self, request: Request) -> JSONResponse:
        live = self._live
        return JSONResponse(
            {
                "ok": True,
                "weights_version": live.version if live else None,
                "pid": os.getpid(),
                **memory_mb(),
            }
        )

    async def _status(self, request: Request) -> JSONResponse:
        status = await self._coordinator.status.remote()
        status["replica_version"] = self._live.version if self._live else None
        return JSONResponse(json.loads(json.dumps(status, default=float)))

    async def _weights(self, request: Request) -> JSONResponse:
        return JSONResponse(await self._coordinator.weights.remote())

    async def _scale(self, request: Request) -> JSONResponse:
        """Queue a scaling step for the job's driver; 202 with where to ask for its result.

        The driver owns the member actors, so it carries the step out (see
        `pipelines.job.Job.scale`); this route, like the `scale` command, only asks.
        """
        body = await request.body()
        if len(body) > 4096:
            return _error(413, f"a scale request is a small JSON object; got {len(body)} bytes")
        try:
            wanted = parse_scale_request(body, request.headers.get("content-type"))
        except RequestError as error:
            return _error(error.status, error.message)
        request_id = await self._coordinator.request_scale.remote(wanted)
        return JSONResponse(
            {"request": request_id, "result": f"/admin/scale/{request_id}", **wanted},
            status_code=202,
        )

    async def _scale_result(self, request: Request) -> JSONResponse:
        """200 with the step's result once done (``ok`` false and an ``error`` if refused),
        202 while it is pending."""
        tail = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if not tail.isdigit():
            return _error(400, f"expected /admin/scale/ID with a numeric request id, got {tail!r}")
        result = await self._coordinator.scale_result.remote(int(tail))
        if result is None:
            return JSONResponse({"request": int(tail), "pending": True}, status_code=202)
        return JSONResponse({"request": int(tail), "pending": False, **result})


def _answer(request: PredictRequest, scored: _Scored, spec: ModelSpec) -> dict:
    """The JSON answer: the task's predictions, and what the options asked for."""
    answer: dict[str, Any]
    confidence: np.ndarray | None = None  # classification: the top class probability
    if spec.task == "regression":
        answer = {"predictions": [_value(v) for v in scored.mixed]}
    elif spec.task == "multiclass":
        confidence = scored.mixed.max(axis=1)
        answer = {
            "predictions": scored.mixed.argmax(axis=1).tolist(),
            "probabilities": [_probabilities(row) for row in scored.mixed],
            "confidence": [_probability(c) for c in confidence],
        }
    else:
        confidence = np.maximum(scored.mixed, 1.0 - scored.mixed)
        answer = {
            "predictions": (scored.mixed > 0.5).astype(int).tolist(),
            "probabilities": [_probability(p) for p in scored.mixed],
        }
    answer["weights_version"] = scored.live.version
    if request.partition is not None:
        answer["partition"] = request.partition
        answer["mixing"] = scored.weights_kind  # "overall" while it has no record of its own
    if spec.is_sequence:
        answer["window"] = spec.window  # prediction i is for rows i .. i + window - 1
    if request.min_confidence is not None and confidence is not None:
        confident = confidence >= request.min_confidence
        predictions: list[int | str] = answer["predictions"]
        for i in np.flatnonzero(~confident).tolist():
            predictions[i] = "abstain"
        answer["coverage"] = round(float(confident.mean()), 6)
        answer["min_confidence"] = request.min_confidence
    if request.explain:
        ids = [str(mid) for mid in scored.live.member_ids]
        answer["weights"] = dict(zip(ids, (_probability(w) for w in scored.weights), strict=True))
        member_output = {
            "binary": _probability,
            "multiclass": _probabilities,
            "regression": _value,
        }[spec.task]
        answer["members"] = [
            dict(zip(ids, (member_output(out) for out in row), strict=True))
            for row in scored.per_member
        ]
    if request.imputed:
        answer["imputed"] = [
            {"row": row, "features": names} for row, names in request.imputed.items()
        ]
    return answer


def _usable_partition_mixing(snapshot: EnsembleSnapshot) -> dict[int, np.ndarray]:
    """The snapshot's per-partition weights that fit its members (one weight each).

    A vector of another length would fail every batch it is used in; its partition is
    mixed with the overall weights instead, and the mismatch is logged.
    """
    usable = {}
    for partition, weights in snapshot.partition_mixing.items():
        weights = np.asarray(weights)
        if weights.shape == (len(snapshot.member_ids),):
            usable[partition] = weights
        else:
            logger.warning(
                "snapshot %d: partition %d has mixing weights of shape %s for %d members; "
                "mixing it with the overall weights",
                snapshot.version,
                partition,
                weights.shape,
                len(snapshot.member_ids),
            )
    return usable


def _probability(p: Any) -> float:
    return round(float(p), 6)


def _probabilities(row: np.ndarray) -> list[float]:
    return [round(float(p), 6) for p in row]


def _value(v: Any) -> float:
    """A regression output at float32 precision (7 significant digits), at any scale."""
    return float(f"{float(v):.7g}")


def build_app(
    coordinator: Any,
    features: list[str],
    model_spec: ModelSpec,
    *,
    max_queued_requests: int = -1,
    replicas: int = 1,
    **options: Any,
):
    """The Serve application, ready for `serve.run`.

    Args:
        max_queued_requests: requests waiting for a replica beyond this are answered 503
            with Retry-After by Serve itself (-1: no limit).
        replicas: copies of the deployment. With two or more, Serve's proxy routes around
            a replica that died while the controller replaces it.
        options: the `EnsembleServer` constructor's keyword arguments.
    """
    deployment = EnsembleServer.options(  # type: ignore[attr-defined]
        max_queued_requests=max_queued_requests, num_replicas=replicas
    )
    return deployment.bind(coordinator, features, model_spec, **options)
