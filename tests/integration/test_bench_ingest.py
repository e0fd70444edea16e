"""`bench ingest` end to end on the module's shared local Ray, with a tiny stream.

Checks the figures' shape, that every source gave back every row produced (to the read
path and to the members), and that every rate is positive; how fast is for the benchmark
itself (docs/benchmarks.md), not for a timed test.
"""

from __future__ import annotations

import json
import math

import pytest

from pipelines.bench.ingest_bench import JSON_MAX_ROWS, SOURCES, TARGET_RATIO, run_ingest_bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 6_000


def test_bench_ingest_reads_and_trains_every_row_of_every_source(ray_local):
    result = run_ingest_bench(rows=ROWS, members=(1, 2))

    assert json.loads(json.dumps(result)) == result  # what --json prints
    assert result["rows"] == ROWS
    assert result["members"] == [1, 2]
    assert result["target_ratio"] == TARGET_RATIO
    assert set(result["sources"]) == set(SOURCES)
    assert set(result["targets_met"]) == set(SOURCES)
    expected_rows = {"kafka": ROWS, "parquet": ROWS, "kafka_json": min(ROWS, JSON_MAX_ROWS)}
    for source, by_members in result["sources"].items():
        assert set(by_members) == {"1", "2"}, source
        assert result["source_details"][source]["rows"] == expected_rows[source]
        for n, entry in by_members.items():
            where = (source, n)
            # Counts reconcile: the read path and the members saw exactly the rows produced.
            assert entry["rows"] == expected_rows[source], where
            assert entry["rows_read"] == entry["rows"], where
            assert entry["rows_learned"] == entry["rows"], where
            assert entry["dead_letters"] == 0, where
            for key in ("read_rows_per_s", "train_rows_per_s", "ratio"):
                assert math.isfinite(entry[key]) and entry[key] > 0, (where, key, entry[key])
            assert entry["ratio"] == pytest.approx(
                entry["read_rows_per_s"] / entry["train_rows_per_s"]
            )
            assert entry["meets_5x"] == (entry["ratio"] >= TARGET_RATIO)
            assert len(entry["read_seconds"]) == result["read_passes"]
    # One Arrow message per batch of each partition's rows: the bulk format.
    assert result["source_details"]["kafka"]["messages"] == 4 * math.ceil(
        ROWS / 4 / result["batch"]
    )
    assert result["source_details"]["kafka_json"]["messages"] == expected_rows["kafka_json"]
    assert ray_local.is_initialized()  # the fixture's Ray is left running
