"""The job: assembles Ray, the member actors, the coordinator and the Serve app.

`Job` is the Python API; the CLI is a thin shell around it::

    from pipelines.checkpoint import CheckpointStore
from pipelines.config import JobConfig
    from pipelines.job import Job

    with Job(JobConfig(members=4, rows=100_000)) as job:
        job.start()
        answer = job.predict([{f"x{i}": 0.5 for i in range(10)}])
        report = job.wait()          # until the bounded stream ends

Rows never pass through the driver: it opens the source only to list partitions and
read the schema; members open their own partitions.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import ray
from ray import serve
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.coordinator import COORDINATOR_NAME, CoordinatorActor
from actors.errors import ConfigError
from actors.member import MemberActor
from actors.membership import (
    LagAutoscaler,
    MemberStart,
    choose_node,
    drift_scaling,
    plan_scale,
)
from actors.models import build_model
from actors.names import NAMESPACE
from actors.serve_app import build_app
from pipelines.checkpoint import CheckpointStore
from pipelines.config import JobConfig
from pipelines.report import ReportPaths, write_report
from pipelines.sources import open_source

__all__ = ["APP_NAME", "Job", "assign_partitions"]

logger = logging.getLogger(__name__)

APP_NAME = "online-ensemble"


def assign_partitions(partitions: list[int], members: int) -> dict[int, list[int]]:
    """Round-robin partitions over members: member i gets partitions i, i+m, i+2m, ...

    Raises:
        ConfigError: if there are fewer partitions than members (a Kafka topic's partition
            count is fixed; split sources take ``--partitions``).
    """
    if members < 1:
        raise ConfigError(f"members must be >= 1, got {members}")
    if len(partitions) < members:
        raise ConfigError(
            f"the source has {len(partitions)} partition(s), which cannot feed {members} "
            f"members: use at most {len(partitions)} members, or more partitions where the "
            "source can be split (--partitions)"
        )
    return {m: partitions[m::members] for m in range(members)}


class Job:
    """One online-ensemble job.

    Args:
        config: validated job settings.
    """

    def __init__(self, config: JobConfig):
        self.config = config
        self.source = config.source_spec()
        root = config.checkpoint_root
        # Each run checkpoints into a folder of its own, so a new run never resumes an
        # old one by accident (a Kafka group's committed offsets still carry over);
        # `resume` continues in the folder of the run it names.
        if config.resume is not None:
            self.checkpoint_uri: str | None = _resumable(config.resume, config.members)
        elif root is None:
            self.checkpoint_uri = None
        else:
            stamp = f"run-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            self.checkpoint_uri = f"{root.rstrip('/')}/{stamp}"
        self._owns_ray = False
        self._members: dict[int, Any] = {}
        self._runs: dict[int, Any] = {}
        self._final: dict[int, dict] = {}
        self._coordinator: Any = None
        self._features: list[str] = []
        self._stop = threading.Event()
        self._started_at: float | None = None
        self._training_started_at: float | None = None
        self._training_ended_at: float | None = None
        self.report_paths: ReportPaths | None = None
        self.history: list[dict] = []  # accuracy and weights over the stream, after finish()
        self.partitions_by_member: dict[int, list[int]] = {}
        self._retired: dict[int, dict] = {}  # final stats of members scaled away
        self._next_id = 0
        self._member_cpus_each = 1.0
        self._scaling = threading.RLock()  # one scaling step at a time; `wait` sees it whole
        self.scale_events: list[dict] = []
        self._drift_answered: dict[int, int] = {}  # drift actions seen per member
        self._autoscaler = (
            LagAutoscaler(
                config.autoscale_min,
                config.scale_limit,
                high_lag_rows=config.autoscale_lag_rows,
                idle_s=config.autoscale_idle_s,
                cooldown_s=config.autoscale_cooldown_s,
            )
            if config.autoscale_lag_rows is not None
            else None
        )

    # -- life cycle ---------------------------------------------------------------------

    def start(self, on_ray_ready: Callable[[], None] | None = None) -> None:
        """Open the source's metadata, start Ray, the coordinator, members and Serve.

        Args:
            on_ray_ready: called right after Ray is up. `ray.init` installs its own
                SIGTERM handler in the driver, so a caller that wants graceful shutdown
                installs its signal handlers here.
        """
        cfg = self.config
        self._started_at = time.monotonic()
        stream = open_source(self.source)  # raises ConfigError before Ray starts
        partitions = stream.partitions()
        self._features = list(stream.schema.features)
        self.partitions_by_member = assign_partitions(partitions, cfg.members)
        if cfg.model in ("custom", "file"):
            # Load and check the user's model here, so a bad factory or file is one clear
            # error before any actor starts (every actor loads the same one by name).
            build_model(cfg.model_spec(), len(self._features))
        logger.info(
            "starting %s Ray, %d member(s) on %d partition(s), the coordinator and Serve "
            "(members load TensorFlow in parallel; this takes a while on a small machine)",
            f"a connection to {cfg.address}" if cfg.address else "an embedded",
            cfg.members,
            len(partitions),
        )
        self._start_ray()
        if on_ray_ready is not None:
            on_ray_ready()
        member_cpus = self._member_cpus()
        spec = cfg.model_spec()
        # A crashed coordinator restarts (its calls are retried meanwhile) and continues
        # from its checkpoint; Serve answers from its last snapshot while it is away.
        self._coordinator = CoordinatorActor.options(  # type: ignore[attr-defined]
            name=COORDINATOR_NAME,
            namespace=NAMESPACE,
            get_if_exists=False,
            max_restarts=cfg.coordinator_max_restarts,
            max_task_retries=-1 if cfg.coordinator_max_restarts else 0,
        ).remote(
            self.partitions_by_member,
            len(self._features),
            spec,
            window=cfg.window,
            policy=cfg.policy,
            floor=cfg.weight_floor,
            cap=cfg.weight_cap,
            policy_params=cfg.policy_params(),
            weights_by_partition=cfg.weights_by_partition,
            history_interval_s=cfg.history_interval_s,
            checkpoint_uri=self.checkpoint_uri,
        )
        cfg.report.mkdir(parents=True, exist_ok=True)
        self._member_cpus_each = member_cpus
        for member_id, owned in self.partitions_by_member.items():
            self._members[member_id] = self._spawn_member(member_id, owned)
        self._next_id = max(self._members) + 1
        serve.start(
            http_options={
                "host": cfg.host,
                "port": cfg.port,
                "request_timeout_s": cfg.request_timeout_s,
            }
        )
        serve.run(
            build_app(
                self._coordinator,
                self._features,
                spec,
                expected_members=cfg.members,
                impute_missing=cfg.impute_missing,
                max_body_bytes=cfg.max_body_bytes,
                max_rows=cfg.max_request_rows,
                max_queued_requests=cfg.max_queued_requests,
                replicas=cfg.replicas,
            ),
            name=APP_NAME,
            route_prefix="/",
        )
        # Train only once every part is up: members built (in parallel with Serve), the
        # coordinator answering, a replica live. Otherwise a short stream could be learned
        # before anyone can ask for a prediction.
        ray.get(
            [self._coordinator.latest_version.remote()]
            + [m.ready.remote() for m in self._members.values()]
        )
        self._training_started_at = time.monotonic()
        self._runs = {mid: actor.run.remote() for mid, actor in self._members.items()}
        self._wait_until_serving()
        logger.info("serving on %s/predict", self.url)

    def _spawn_member(
        self,
        member_id: int,
        partitions: list[int],
        start: MemberStart | None = None,
        node: str | None = None,
    ) -> Any:
        """Start one member actor (it loads TensorFlow and opens its partitions)."""
        cfg = self.config
        strategy: Any = "SPREAD" if cfg.placement == "spread" else "DEFAULT"
        if node is not None:
            strategy = NodeAffinitySchedulingStrategy(node, soft=True)
        # A crashed member restarts and Ray retries its `run`, which resumes from the
        # member's newest checkpoint (see actors/member.py).
        return MemberActor.options(  # type: ignore[attr-defined]
            num_cpus=self._member_cpus_each,
            scheduling_strategy=strategy,
            max_restarts=cfg.member_max_restarts,
            max_task_retries=-1 if cfg.member_max_restarts else 0,
        ).remote(
            member_id,
            self.source,
            partitions,
            cfg.member_config(self.checkpoint_uri),
            self._coordinator,
            num_cpus=self._member_cpus_each,
            dead_letter_path=cfg.dead_letter_path,
            start=start,
        )

    def _wait_until_serving(self, timeout_s: float = 120.0) -> None:
        """Block until a replica answers with a published snapshot (members publish fast)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
                    if json.loads(response.read()).get("weights_version") is not None:
                        return
            except (urllib.error.URLError, OSError):
                pass  # proxy not accepting yet
            done, _ = ray.wait(list(self._runs.values()), num_returns=len(self._runs), timeout=0.2)
            if len(done) == len(self._runs):
                ray.get(done)  # every member finished (or failed) before Serve was live
                return
        raise RuntimeError(f"Serve did not become ready on {self.url} within {timeout_s:.0f}s")

    def _start_ray(self) -> None:
        if ray.is_initialized():
            return
        options: dict[str, Any] = {
            "namespace": NAMESPACE,
            "logging_level": logging.WARNING,
            "log_to_driver": False,
        }
        if self.config.address:
            options["address"] = self.config.address
        else:
            # Embedded Ray: loopback only, no dashboard (nothing to expose by default).
            options.update(num_cpus=os.cpu_count() or 1, include_dashboard=False)
        ray.init(**options)
        self._owns_ray = True

    def _member_cpus(self) -> float:
        if self.config.member_cpus is not None:
            return self.config.member_cpus
        total = float(ray.cluster_resources().get("CPU", 1.0))
        # Floor to hundredths so members * cpus never exceeds what the cluster has, at
        # the largest size the job may scale to.
        most = self.config.scale_limit
        return max(0.01, min(1.0, math.floor(100 * total / most) / 100))

    def request_stop(self) -> None:
        """Ask members to stop after their current batch (safe from a signal handler)."""
        self._stop.set()

    def wait(self, on_status: Callable[[dict], None] | None = None, poll_s: float = 0.5) -> dict:
        """Train until the bounded source ends or `request_stop`; then finish and report.

        Meanwhile it carries out scale requests made from outside (`online-ensemble
        scale`, ``POST /admin/scale``) and, when configured, autoscales by lag.
        """
        # Status is fetched only for whoever reads it: the caller, the autoscaler, or drift
        # actions that scale.
        needs_status = (
            on_status is not None
            or self._autoscaler is not None
            or self.config.drift_action in ("spawn", "retire")
        )
        while not self._stop.is_set():
            with self._scaling:
                pending: dict[int, Any] = {
                    m: r for m, r in self._runs.items() if m not in self._final
                }
            if not pending:
                break
            ready, _ = ray.wait(list(pending.values()), num_returns=len(pending), timeout=poll_s)
            with self._scaling:
                for mid, ref in pending.items():
                    if ref in ready and mid in self._runs and self._runs[mid] == ref:
                        self._final[mid] = ray.get(ref)
            self._serve_scale_requests()
            if needs_status:
                status = self.status()
                self._answer_drift(status)
                if self._autoscaler is not None:
                    self._autoscale(status)
                if on_status is not None:
                    on_status(status)
        return self.finish()

    # -- scaling ----------------------------------------------------------------------------

    def scale(
        self,
        members: int,
        *,
        policy: str | None = None,
        retire: list[int] | None = None,
        reason: str = "request",
    ) -> dict:
        """Grow or shrink the ensemble to `members` while it trains and serves.

        New members start by `policy` (``fresh``, ``clone-best``, ``distill``; default the
        job's ``new_member``); retiring takes the lowest-weight members unless `retire`
        names them. Partitions move at batch boundaries with their offsets (see
        `actors.membership`).

        Returns:
            What changed: ``added``, ``retired``, ``moves``, ``assignment``, ``seconds``.

        Raises:
            ConfigError: for a size out of range (see `plan_scale`) or an unknown policy.
        """
        began = time.monotonic()
        if members > self.config.scale_limit and self.config.partitions is None:
            stream_kind = self.source.uri.split(":", 1)[0]
            if stream_kind != "kafka":
                raise ConfigError(
                    f"this job may grow to {self.config.scale_limit} members: its source was "
                    f"split into that many partitions at start; start it with "
                    f"--max-members {members} to scale to {members}"
                )
        with self._scaling:
            assignment = ray.get(self._coordinator.assignment.remote())
            weights = {int(k): v for k, v in self.weights()["weights"].items()}
            plan = plan_scale(
                assignment, members, weights=weights, next_id=self._next_id, retire=retire
            )
            start = self._new_member_start(policy or self.config.new_member, weights)
            if plan.add:
                self._add_members(plan.add, start)
            self._next_id = max(self._next_id, *[m + 1 for m in plan.add], 0)
            for mid in plan.retire:
                self._members[mid].stop.remote()
            handoff: dict[int, int] = {}
            for mid in plan.retire:
                final = self._final.pop(mid, None) or ray.get(self._runs[mid])
                self._retired[mid] = final
                handoff.update({int(p): int(o) for p, o in final["offsets"].items()})
            donors: dict[int, list[int]] = {}
            for partition, donor, _ in plan.moves:
                if donor not in plan.retire:
                    donors.setdefault(donor, []).append(partition)
            for donor, parts in donors.items():
                handoff.update(ray.get(self._members[donor].release.remote(parts)))
            for mid, owned in plan.assignment.items():
                moved = {p: handoff[p] for p, _, to in plan.moves if to == mid}
                ray.get(self._coordinator.set_partitions.remote(mid, owned, moved))
                if moved:
                    ray.get(self._members[mid].adopt.remote(moved))
                    if mid in self._final:  # it had finished its own: read the new ones
                        del self._final[mid]
                        self._runs[mid] = self._members[mid].run.remote()
            for mid in plan.retire:
                ray.get(self._coordinator.remove_member.remote(mid))
                ray.kill(self._members.pop(mid))
                self._runs.pop(mid)
            for mid in plan.add:
                self._runs[mid] = self._members[mid].run.remote()
            self.partitions_by_member = plan.assignment
        result = {
            "members": len(plan.assignment),
            "added": plan.add,
            "retired": plan.retire,
            "moves": [list(move) for move in plan.moves],
            "assignment": {str(m): p for m, p in plan.assignment.items()},
            "start": start.policy,
            # What the start had: distilled rows, or whose weights were cloned.
            "start_rows": 0 if start.y is None else len(start.y),
            "cloned_from": start.source_member,
            "reason": reason,
            "seconds": round(time.monotonic() - began, 3),
        }
        self.scale_events.append({**result, "at_s": round(began - (self._started_at or 0), 3)})
        logger.info(
            "scaled to %d members in %.1fs: %s", result["members"], result["seconds"], result
        )
        return result

    def _add_members(self, new_ids: list[int], start: MemberStart) -> None:
        """Start new member actors, each on the node with the fewest members, and wait
        until they are built (TensorFlow loaded), before any partition moves to them."""
        ray.get(self._coordinator.add_members.remote(new_ids))
        placed = self._members_per_node()
        for mid in new_ids:
            node = None
            if self.config.placement == "spread":
                node = choose_node(
                    placed, _free_cpus(placed, self._member_cpus_each), self._member_cpus_each
                )
            self._members[mid] = self._spawn_member(mid, [], start, node)
            if node is not None:
                placed[node] = placed.get(node, 0) + 1
        ray.get([self._members[mid].ready.remote() for mid in new_ids])

    def _members_per_node(self) -> dict[str, int]:
        stats = ray.get([actor.stats.remote() for actor in self._members.values()])
        counts: dict[str, int] = {}
        for entry in stats:
            counts[entry["node"]] = counts.get(entry["node"], 0) + 1
        return counts

    def _new_member_start(self, policy: str, weights: dict[int, float]) -> MemberStart:
        if policy == "clone-best" and weights:
            best = max(weights, key=lambda m: weights[m])
            snapshot = ray.get(self._coordinator.member_snapshot.remote(best))
            if snapshot is not None:
                return MemberStart(policy, weights=snapshot.weights, source_member=best)
        if policy == "distill":
            sample = ray.get(self._coordinator.distill_sample.remote())
            if sample is not None:
                return MemberStart(policy, x=sample[0], y=sample[1])
        return MemberStart(policy)

    def _serve_scale_requests(self) -> None:
        """Carry out the scale requests the coordinator holds (from the CLI or HTTP)."""
        while (request := ray.get(self._coordinator.take_scale_request.remote())) is not None:
            try:
                result = self.scale(
                    int(request["members"]),
                    policy=request.get("policy"),
                    retire=request.get("retire"),
                )
                answer = {"ok": True, **result}
            except ConfigError as error:
                answer = {"ok": False, "error": str(error)}
            ray.get(self._coordinator.finish_scale_request.remote(request["id"], answer))

    def _answer_drift(self, status: dict) -> None:
        """Spawn a challenger beside, or retire, members whose drift calls for it."""
        for action, member in drift_scaling(
            status["members"], self._drift_answered, self.config.scale_limit
        ):
            try:
                if action == "spawn":
                    self.scale(len(self._members) + 1, policy="fresh", reason=f"drift:{member}")
                else:
                    self.scale(len(self._members) - 1, retire=[member], reason=f"drift:{member}")
            except ConfigError as error:
                logger.warning("drift %s for member %d not carried out: %s", action, member, error)

    def _autoscale(self, status: dict) -> None:
        assert self._autoscaler is not None
        lags = [m.get("lag") for m in status["members"] if m.get("lag") is not None]
        target = self._autoscaler.decide(
            time.monotonic(), len(self._members), sum(lags) if lags else None
        )
        if target is not None:
            try:
                self.scale(target, reason="lag")
            except ConfigError as error:
                logger.warning("autoscaling to %d members: %s", target, error)

    def finish(self) -> dict:
        """Stop members (finishing their batch), collect final stats and write the report."""
        for actor in self._members.values():
            actor.stop.remote()
        for mid, ref in self._runs.items():
            if mid not in self._final:
                self._final[mid] = ray.get(ref)
        self._training_ended_at = time.monotonic()
        report = self._report()
        self.history = ray.get(self._coordinator.history.remote())
        self.report_paths = write_report(report, self.history, self.config.report)
        return report

    def shutdown(self) -> None:
        """Tear down Serve and, if this job started it, Ray."""
        if not ray.is_initialized():
            return
        try:
            serve.shutdown()
            for actor in [*self._members.values(), self._coordinator]:
                if actor is not None:
                    ray.kill(actor)
            if self._coordinator is not None:
                _wait_for_name_release(COORDINATOR_NAME)
        finally:
            self._members.clear()
            self._coordinator = None
            if self._owns_ray:
                ray.shutdown()

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- what users ask while it runs -------------------------------------------------------

    @property
    def coordinator(self) -> Any:
        """Handle of the coordinator actor (for status, weights and publish times)."""
        return self._coordinator

    @property
    def features(self) -> list[str]:
        """The stream's feature names, in model input order."""
        return list(self._features)

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def predict(self, rows: list[dict[str, float]], timeout_s: float = 10.0) -> dict:
        """Weighted ensemble prediction through the same HTTP endpoint users call."""
        body = json.dumps({"rows": rows}).encode()
        request = urllib.request.Request(
            f"{self.url}/predict", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = json.loads(error.read() or b"{}").get("error", error.reason)
            raise RuntimeError(f"predict failed with HTTP {error.code}: {detail}") from None

    def weights(self) -> dict:
        """The coordinator's current mixing weights (what ``GET /weights`` answers)."""
        return ray.get(self._coordinator.weights.remote())

    def status(self) -> dict:
        """Rows, throughput, accuracy and weights right now."""
        with self._scaling:  # a status taken mid-step would count moved rows twice or never
            summary = ray.get(self._coordinator.status.remote())
            live: dict[int, dict | None] = {mid: self._final.get(mid) for mid in self._members}
            unfinished = [mid for mid, stats in live.items() if stats is None]
            if unfinished:
                fetched = ray.get([self._members[mid].stats.remote() for mid in unfinished])
                live.update(zip(unfinished, fetched, strict=True))
            live.update(self._retired)
            return self._assemble(summary, live)

    def _assemble(self, summary: dict, member_stats: dict[int, dict | None]) -> dict:
        now = self._training_ended_at or time.monotonic()
        elapsed = now - (self._training_started_at or now)
        members = []
        for entry in summary["members"]:
            stats = member_stats.get(entry["id"]) or {}
            merged = {
                **entry,
                **{
                    k: stats[k]
                    for k in (
                        "rows",
                        "rows_seen",
                        "rows_sampled",
                        "batches",
                        "idle_steps",
                        "lag",
                        "checkpoints",
                        "commit_failures",
                        "restored_from",
                        "rows_per_s",
                        "offsets",
                        "tf_threads",
                        "rss_mb",
                        "private_mb",
                        "node",
                        "pid",
                        "strategy",
                        "resets",
                        "best_snapshot",
                        "drift",
                    )
                    if k in stats
                },
            }
            members.append(merged)
        rows_trained = sum(int((s or {}).get("rows", 0)) for s in member_stats.values())
        return {
            "rows_seen": sum(int((s or {}).get("rows_seen", 0)) for s in member_stats.values()),
            "rows_trained": rows_trained,
            "dead_letter": sum(int((s or {}).get("dead_letter", 0)) for s in member_stats.values()),
            # Rows skipped to keep pace with a fast stream (max_lag_rows): counted, never lost.
            "rows_sampled": sum(
                int((s or {}).get("rows_sampled", 0)) for s in member_stats.values()
            ),
            # Sequence models: a partition's first window - 1 rows are context only.
            "rows_context": sum(
                int((s or {}).get("rows_context", 0)) for s in member_stats.values()
            ),
            "elapsed_s": round(elapsed, 3),
            "throughput_rows_per_s": rows_trained / elapsed if elapsed > 0 else 0.0,
            "weights_version": summary.get("weights_version"),
            "members": members,
            "retired_members": [
                {k: stats.get(k) for k in ("id", "rows", "rows_seen", "dead_letter", "offsets")}
                for mid, stats in sorted(self._retired.items())
            ],
            "ensemble": summary["ensemble"],
            "policy": summary.get("policy", {}),
            "coordinator": summary.get("coordinator", {}),
        }

    def _report(self) -> dict:
        summary = ray.get(self._coordinator.status.remote())
        report = self._assemble(summary, {**self._final, **self._retired})
        report["scale_events"] = self.scale_events
        report["source"] = self.config.source
        report["startup_and_run_s"] = round(time.monotonic() - (self._started_at or 0.0), 3)
        report["dead_letter_path"] = self.config.dead_letter_path
        report["checkpoint_dir"] = self.checkpoint_uri
        report["config"] = self.config.model_dump(mode="json")
        report["stopped_early"] = self._stop.is_set()
        return report


def _resumable(folder: str, members: int) -> str:
    """`folder` if it holds a run this job can continue, else a one-line ConfigError."""
    names = CheckpointStore(folder).names()
    found = sorted(int(n.split("-", 1)[1]) for n in names if n.startswith("member-"))
    if not found:
        raise ConfigError(
            f"nothing to resume in {folder!r}: expected member-N checkpoint folders "
            "(give the run-* folder a previous run wrote under its checkpoint_dir)"
        )
    if found[-1] >= members:
        raise ConfigError(
            f"{folder!r} holds checkpoints of {found[-1] + 1} members but this job has "
            f"{members}: resume with --members {found[-1] + 1} (and the same source)"
        )
    return folder


def _wait_for_name_release(name: str, timeout_s: float = 30.0) -> None:
    """`ray.kill` returns before the actor is gone; a new job needs the name free."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return
        time.sleep(0.05)  # polling a deadline-bounded wait
    logger.warning("actor %r still registered %.0fs after it was killed", name, timeout_s)


def _free_cpus(members_per_node: dict[str, int], cpus_each: float) -> dict[str, float]:
    """CPUs per live node not reserved by this job's members (the coordinator and Serve
    reserve none), from each node's total: Ray's per-node availability is not public API."""
    free = {}
    for node in ray.nodes():
        if node.get("Alive"):
            total = float(node.get("Resources", {}).get("CPU", 0.0))
            free[node["NodeID"]] = total - members_per_node.get(node["NodeID"], 0) * cpus_each
    return free
