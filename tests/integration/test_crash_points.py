"""A member "crashes" at the two worst moments of a checkpoint, over a real Kafka endpoint:
after its state is written but before the offsets are committed, and in the middle of
writing a checkpoint (the manifest's temporary file written, never renamed).

No Ray: `open_member` is exactly what a (re)started member actor runs, and a crash is a
member abandoned without committing. Recovery must find weights and offsets from one
checkpoint, never a torn file, and every offset must be learned at least once.
"""

from __future__ import annotations

import numpy as np
import pytest

from actors.member import checkpoint_name, open_member
from actors.specs import MemberConfig
from pipelines.checkpoint import CheckpointStore
from pipelines.sources import SourceSpec
from tests.integration.test_ingestion import committed, hyperplane_rows
from tests.kafka_cluster import MockKafka

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

PARTITIONS = [0, 1]
PER_PARTITION = 20_000
ROWS_PER_MESSAGE = 100


@pytest.fixture(scope="module")
def kafka():
    with MockKafka() as cluster:
        yield cluster


def _learn_until(core, rows: int, learned: dict[int, set[int]]) -> int:
    """Step until `rows` rows are read, noting each learned message offset; rows learned."""
    before = core.rows_learned
    while core.rows_seen < rows:
        if core.step() is None:
            break
        if core.last_learned is not None:
            partition, offsets = core.last_learned
            learned.setdefault(partition, set()).update(np.unique(offsets).tolist())
    return core.rows_learned - before


def _same_state(core, arrays: dict[str, np.ndarray]) -> bool:
    """The restored member's state arrays (weights, optimizer, normaliser, recent window)
    are exactly the checkpoint's."""
    now = core.state()[0]
    return sorted(now) == sorted(arrays) and all(np.array_equal(now[k], arrays[k]) for k in now)


def _committed(kafka: MockKafka, topic: str) -> dict[int, int]:
    return {p: o for p, o in committed(kafka, topic, "crash").items() if o >= 0}


def test_crashes_between_state_and_commit_and_mid_write_lose_nothing(kafka, tmp_path):
    topic = kafka.create_topic()
    kafka.produce(
        topic,
        {p: [hyperplane_rows(PER_PARTITION, 40 + p)] for p in PARTITIONS},
        format="arrow",
        rows_per_message=ROWS_PER_MESSAGE,
    )
    source = SourceSpec(uri=kafka.uri(topic, group="crash", eof="stop", format="arrow"))
    config = MemberConfig(batch_size=64, best_margin=None)
    store = CheckpointStore(str(tmp_path / "checkpoints"), keep=3)
    name = checkpoint_name(0)
    learned: dict[int, set[int]] = {}
    total = len(PARTITIONS) * PER_PARTITION

    # Life 1: checkpoint after 8,000 rows, learn on to 12,000, crash before any commit.
    core, restored = open_member(0, source, PARTITIONS, config, store)
    assert restored is None
    learned_rows = _learn_until(core, 8_000, learned)
    at_checkpoint = core.rows_seen
    first_arrays, first_meta = core.state()
    first = store.save(name, first_arrays, first_meta)
    learned_rows += _learn_until(core, 12_000, learned)
    relearned = core.rows_seen - at_checkpoint
    for reader in core.readers:
        reader.close()  # the process is gone: nothing was committed
    assert _committed(kafka, topic) == {}

    # Life 2 resumes from the checkpoint, not from the group (which has no offset).
    core, restored = open_member(0, source, PARTITIONS, config, store)
    offsets = {int(p): o for p, o in first_meta["offsets"].items()}
    assert restored == first and core.offsets() == offsets
    assert _same_state(core, first_arrays)
    learned_rows += _learn_until(core, 20_000, learned)
    relearned += core.rows_seen - at_checkpoint
    # A crash in the middle of the next checkpoint: the data file and half the manifest's
    # temporary file written, the manifest never renamed into place.
    real_write = store._write

    def dies_before_renaming_the_manifest(path: str, data: bytes) -> None:
        if path.endswith(".json"):
            directory, base = path.rsplit("/", 1)
            with open(f"{directory}/.{base}.tmp", "wb") as partial:
                partial.write(data[: len(data) // 2])
            raise OSError("killed during the rename")
        real_write(path, data)

    store._write = dies_before_renaming_the_manifest  # type: ignore[method-assign]
    with pytest.raises(Exception, match="killed during the rename"):
        store.save(name, *core.state())
    store._write = real_write  # type: ignore[method-assign]
    for reader in core.readers:
        reader.close()

    # Life 3 finds the last intact checkpoint: its weights and offsets, together.
    core, restored = open_member(0, source, PARTITIONS, config, store)
    assert restored == first and core.offsets() == offsets
    assert _same_state(core, first_arrays)
    learned_rows += _learn_until(core, total, learned)
    final = store.save(name, *core.state())
    for reader in core.readers:
        reader.commit(reader.position)
        reader.close()
    assert final > first

    messages = PER_PARTITION // ROWS_PER_MESSAGE
    assert _committed(kafka, topic) == dict.fromkeys(PARTITIONS, messages)
    for partition in PARTITIONS:
        assert learned[partition] == set(range(messages)), partition
    # Exactly the rows read after the checkpoint by the two crashed lives are learned twice.
    print(
        f"crash points: {total:,} rows produced, {learned_rows:,} learned, "
        f"{learned_rows - total:,} twice ({relearned:,} read after the checkpoint by the "
        "two crashed lives)"
    )
    assert learned_rows == total + relearned
