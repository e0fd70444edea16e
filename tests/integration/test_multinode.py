"""Several Ray nodes on one machine (`ray.cluster_utils.Cluster`): members spread over them,
and a worker node removed mid-stream takes its members along; they come back on live
nodes and resume from their checkpoints, so every row is still learned."""

from __future__ import annotations

import pytest
import ray
from ray.cluster_utils import Cluster

from pipelines.config import JobConfig
from pipelines.job import Job
from pipelines.learn_log import learned_offsets
from tests.helpers import free_port, wait_until
from tests.integration.test_ingestion import reconciles

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow]


@pytest.fixture
def cluster():
    """A head (coordinator, Serve) and two workers; every node can hold members."""
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "include_dashboard": False},
    )
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def test_members_on_a_lost_node_move_to_live_nodes_and_resume(cluster, tmp_path):
    cluster, workers = cluster
    rows, partitions, every_rows = 600_000, 6, 10_000
    log = tmp_path / "learned.jsonl"
    config = JobConfig(
        source="synthetic://hyperplane",
        rows=rows,
        partitions=partitions,
        members=6,
        member_cpus=0.5,
        port=free_port(),
        report=tmp_path,
        progress=False,
        checkpoint_every_rows=every_rows,
        member_max_restarts=5,
        learn_log=str(log),
    )
    job = Job(config)
    job.start()
    try:
        nodes = {m["id"]: m["node"] for m in job.status()["members"]}
        assert len(set(nodes.values())) == 3, nodes  # spread: members on every node
        victim = next(w for w in workers if w.node_id in nodes.values())
        moved = sorted(mid for mid, node in nodes.items() if node == victim.node_id)
        # Remove it once each of its members has checkpointed at least once.
        assert wait_until(
            lambda: all(m["checkpoints"] >= 1 for m in job.status()["members"] if m["id"] in moved),
            timeout_s=120,
        )
        cluster.remove_node(victim)
        report = job.wait()
        after = {m["id"]: m for m in report["members"]}
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert victim.node_id not in alive
        for mid in moved:
            assert after[mid]["node"] in alive, after[mid]
            assert after[mid]["restored_from"] is not None, after[mid]
        # Every offset of every partition learned at least once, none beyond the stream.
        counts = learned_offsets(log)
        assert sorted(counts) == list(range(partitions))
        for partition, learned in counts.items():
            assert set(learned) == set(range(max(learned) + 1)), partition
        assert sum(len(learned) for learned in counts.values()) == rows
        duplicated = sum(n - 1 for learned in counts.values() for n in learned.values())
        bound = len(moved) * (every_rows + config.batch_size)
        print(
            f"node loss: members {moved} on the removed node moved to "
            f"{[after[mid]['node'][:8] for mid in moved]} and resumed from checkpoints "
            f"{[after[mid]['restored_from'] for mid in moved]}; {rows:,} rows produced, "
            f"{report['rows_trained']:,} learned, {duplicated:,} learned twice (bound {bound:,})"
        )
        assert duplicated <= bound
        reconciles(report, rows)
    finally:
        job.shutdown()


def test_a_scale_up_places_the_new_member_on_the_emptier_node(cluster, tmp_path):
    cluster, _ = cluster
    rows = 400_000
    config = JobConfig(
        source="synthetic://hyperplane",
        rows=rows,
        members=2,
        max_members=4,
        member_cpus=0.5,
        port=free_port(),
        report=tmp_path,
        progress=False,
    )
    job = Job(config)
    job.start()
    try:
        before = {m["id"]: m["node"] for m in job.status()["members"]}
        assert len(set(before.values())) == 2, before  # spread: two nodes, one each
        empty = {n["NodeID"] for n in ray.nodes() if n["Alive"]} - set(before.values())
        assert len(empty) == 1
        result = job.scale(3, policy="distill")  # fitted on the ensemble's answers first
        after = {m["id"]: m["node"] for m in job.status()["members"]}
        (new,) = result["added"]
        print(
            f"\nscale-up on 3 nodes: members on {sorted(n[:8] for n in before.values())}, "
            f"the new member {new} went to {after[new][:8]} (the empty node: "
            f"{next(iter(empty))[:8]}) in {result['seconds']:.1f}s"
        )
        assert after[new] in empty, (after, empty)
        assert {mid: after[mid] for mid in before} == before  # nobody else moved
        assert result["start"] == "distill" and result["start_rows"] > 0, result
        report = job.wait()
        reconciles(report, rows)
    finally:
        job.shutdown()
