"""The file source's follow mode: a directory whose partitions are live as files land.

Files "land" the way the writer contract says: written under a hidden name, given an
explicit modification time (so the order is not at the mercy of the clock's resolution),
then renamed into place. Listings happen every 20 ms (``poll_s=0.02``); a read that must
see a new file passes a generous `max_wait_s` and returns as soon as the next listing
finds it, so no test sleeps unless waiting is what it tests.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from actors.errors import ConfigError, SourceError
from pipelines.schema import DeadLetter
from pipelines.sources._file_follow import partition_of
from pipelines.sources.base import PartitionReader, SourceBatch, SourceSpec
from pipelines.sources.files import FilePartitionReader, FileSource, open_file_source
from tests.helpers import wait_until
from tests.unit.test_sources import sample_table, write

POLL = "poll_s=0.02"
WAIT_S = 5.0  # upper bound for a read that expects a landed file; it returns in ~20 ms
SECOND = 1_000_000_000


def land(directory: Path, name: str, table: pa.Table, fmt: str, mtime_s: int) -> Path:
    """Write `table` as `name` by the writer contract: hidden name, then rename."""
    final = directory / name
    final.parent.mkdir(parents=True, exist_ok=True)
    hidden = final.parent / f".{final.name}.tmp"
    write(table, hidden, fmt)
    os.utime(hidden, ns=(mtime_s * SECOND, mtime_s * SECOND))
    os.replace(hidden, final)
    return final


def follow(directory: Path, partitions: int = 1, query: str = "") -> FileSource:
    uri = f"{directory}?{POLL}" + (f"&{query}" if query else "")
    return open_file_source(SourceSpec(uri, partitions=partitions, follow=True))


def ids(read: SourceBatch | None) -> list[str]:
    assert read is not None, "a followed partition never returns None"
    return read.batch.column("id").to_pylist() if read.batch.num_rows else []


def read_known(reader: PartitionReader, max_rows: int = 1000) -> list[str]:
    """Every row the reader has now, without waiting: ids until the first empty batch."""
    out: list[str] = []
    while got := ids(reader.read_batch(max_rows, 0.0)):
        out += got
    return out


def expect_rows(reader: PartitionReader, count: int) -> list[str]:
    """Ids of the next `count` rows, waiting for them to land (each read up to WAIT_S)."""
    out: list[str] = []
    while len(out) < count:
        got = ids(reader.read_batch(count - len(out), WAIT_S))
        assert got, f"no rows within {WAIT_S}s; have {len(out)} of {count}"
        out += got
    return out


def row_ids(start: int, stop: int) -> list[str]:
    return [f"r{i}" for i in range(start, stop)]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_follow_picks_up_files_that_land_after_open(tmp_path, fmt):
    land(tmp_path, f"a.{fmt}", sample_table(30), fmt, mtime_s=100)
    source = follow(tmp_path, query="key=id")
    reader = source.open(0)
    assert isinstance(reader, FilePartitionReader) and isinstance(reader, PartitionReader)
    assert read_known(reader) == row_ids(0, 30)  # files present at start are streamed
    land(tmp_path, f"b.{fmt}", sample_table(20, start=30), fmt, mtime_s=200)
    assert expect_rows(reader, 20) == row_ids(30, 50)
    assert reader.position == 50
    land(tmp_path, f"sub/c.{fmt}", sample_table(5, start=50), fmt, mtime_s=300)
    assert expect_rows(reader, 5) == row_ids(50, 55)  # read recursively


def test_follow_returns_an_empty_batch_when_nothing_lands(tmp_path):
    land(tmp_path, "a.parquet", sample_table(10), "parquet", mtime_s=100)
    reader = follow(tmp_path, query="key=id").open(0)
    assert read_known(reader) == row_ids(0, 10)
    immediate = reader.read_batch(10)  # max_wait_s defaults to 0: no wait
    assert immediate is not None and immediate.batch.num_rows == 0
    assert (immediate.first_offset, immediate.next_offset) == (10, 10)
    # The wait is what this tests: the read must last max_wait_s, then give up.
    started = time.monotonic()
    waited = reader.read_batch(10, 0.15)
    elapsed = time.monotonic() - started
    assert waited is not None and waited.batch.num_rows == 0 and not waited.dead_letters
    assert waited.first_offset == 10
    assert 0.15 <= elapsed < 2.0
    assert waited.batch.schema.names == ["a", "b", "flag", "label"]


def test_follow_ignores_hidden_names_until_they_are_renamed(tmp_path):
    land(tmp_path, "a.parquet", sample_table(10), "parquet", mtime_s=100)
    reader = follow(tmp_path, query="key=id").open(0)
    assert read_known(reader) == row_ids(0, 10)
    write(sample_table(5, start=10), tmp_path / ".b.parquet", "parquet")
    write(sample_table(5, start=15), tmp_path / "_c.parquet", "parquet")
    (tmp_path / "_temporary").mkdir()
    write(sample_table(5, start=20), tmp_path / "_temporary" / "d.parquet", "parquet")
    (tmp_path / "e.parquet.crc").write_text("not data")  # not the stream's format
    # Several listings (every 20 ms) happen within the wait, and none may yield rows.
    assert ids(reader.read_batch(100, 0.2)) == []
    os.replace(tmp_path / ".b.parquet", tmp_path / "b.parquet")
    assert expect_rows(reader, 5) == row_ids(10, 15)
    assert ids(reader.read_batch(100, 0.1)) == []


def test_follow_orders_by_modification_time_and_restarts_exactly(tmp_path):
    # Names sort opposite to landing order: the order must come from the mtimes.
    land(tmp_path, "c.parquet", sample_table(120), "parquet", mtime_s=100)
    land(tmp_path, "b.parquet", sample_table(90, start=120), "parquet", mtime_s=200)
    land(tmp_path, "a.parquet", sample_table(150, start=210), "parquet", mtime_s=300)
    first = follow(tmp_path, query="key=id").open(0)
    everything = read_known(first, 64)
    assert everything == row_ids(0, 360)
    for offset in (0, 1, 119, 120, 200, 359, 360):
        restarted = follow(tmp_path, query="key=id").open(0, offset)
        assert restarted.position == offset
        assert read_known(restarted, 50) == everything[offset:]
    resumed = follow(tmp_path, query="key=id").open(0, 200)
    land(tmp_path, "0.parquet", sample_table(10, start=360), "parquet", mtime_s=400)
    assert expect_rows(resumed, 170) == row_ids(200, 370)
    with pytest.raises(
        SourceError, match=r"offset 371 is past the partition's end \(370 records\)"
    ):
        follow(tmp_path).open(0, 371)


def test_follow_restart_counts_dead_letters_as_offsets(tmp_path):
    (tmp_path / "a.csv").write_text("a,label\n1,0\n2\n3,1\n4,0,9\n5,1\n")
    os.utime(tmp_path / "a.csv", ns=(100 * SECOND, 100 * SECOND))
    reader = follow(tmp_path).open(0)
    whole = reader.read_batch(100)
    assert whole is not None
    assert whole.row_offsets().tolist() == [0, 2, 4]
    assert [d.offset for d in whole.dead_letters] == [1, 3]
    assert reader.position == 5
    tail = follow(tmp_path).open(0, 3).read_batch(100)
    assert tail is not None
    assert tail.row_offsets().tolist() == [4] and [d.offset for d in tail.dead_letters] == [3]
    assert tail.batch.column("a").to_pylist() == [5.0]


def test_follow_assignment_is_stable_as_files_arrive(tmp_path):
    names = [f"day={d}/part-{i}.parquet" for d in range(3) for i in range(3)]
    partition_of_file: dict[str, int] = {}
    readers: list[PartitionReader] | None = None
    for n, name in enumerate(names):
        land(tmp_path, name, sample_table(4, start=4 * n), "parquet", mtime_s=100 + n)
        source = follow(tmp_path, partitions=3, query="key=id")
        if readers is None:
            readers = [source.open(p) for p in source.partitions()]
        # A fresh source sees every file so far, each on the partition it had before.
        for partition in source.partitions():
            for row in read_known(source.open(partition)):
                file = names[int(row[1:]) // 4]
                assert partition_of_file.setdefault(file, partition) == partition
    assert partition_of_file == {name: partition_of(name, 3) for name in names}
    assert len(set(partition_of_file.values())) > 1
    # Readers opened when only the first file existed found the others on the same ones.
    assert readers is not None
    for partition, reader in enumerate(readers):
        mine = [name for name in names if partition_of_file[name] == partition]
        got = expect_rows(reader, 4 * len(mine))
        assert sorted(got) == sorted(f"r{4 * names.index(m) + i}" for m in mine for i in range(4))


def test_follow_does_not_split_parquet_row_groups(tmp_path):
    land(tmp_path, "one.parquet", sample_table(200), "parquet", mtime_s=100)  # 4 groups
    source = follow(tmp_path, partitions=3)
    marks = [source.open(p).high_watermark() for p in source.partitions()]
    assert sorted(marks) == [0, 0, 200]
    assert marks[partition_of("one.parquet", 3)] == 200


def test_follow_high_watermark_grows_as_files_land(tmp_path):
    land(tmp_path, "a.jsonl", sample_table(30), "jsonl", mtime_s=100)
    source = follow(tmp_path)
    reader = source.open(0)
    assert reader.high_watermark() == 30 == source.partition_rows(0)
    land(tmp_path, "b.jsonl", sample_table(12, start=30), "jsonl", mtime_s=200)
    # The mark refreshes on the next listing (every 20 ms): poll it under a deadline.
    wait_until(lambda: reader.high_watermark() == 42, WAIT_S, interval_s=0.01)
    assert reader.high_watermark() == 42
    assert reader.position == 0  # counting reads nothing


def test_follow_lands_poison_as_dead_letters_and_counts_reconcile(tmp_path):
    land(tmp_path, "a.csv", sample_table(10), "csv", mtime_s=100)
    source = follow(tmp_path, query="key=id")
    reader = source.open(0)
    assert len(read_known(reader)) == 10
    (tmp_path / ".b.csv").write_text(
        "id,a,b,flag,label\nr10,1,2,true,1\nr11,1,2\nr12,x,2,false,0\n"
        "r13,1,2,true,\nr14,nan,2,true,1\nr15,1,2,true,0,extra\n"
    )
    os.utime(tmp_path / ".b.csv", ns=(200 * SECOND, 200 * SECOND))
    os.replace(tmp_path / ".b.csv", tmp_path / "b.csv")
    good, dead = 0, []
    deadline = time.monotonic() + WAIT_S
    while reader.position < 16 and time.monotonic() < deadline:
        read = reader.read_batch(100, WAIT_S)
        assert read is not None
        validated = source.schema.validate(
            read.batch, partition=0, first_offset=read.first_offset, offsets=read.offsets
        )
        good += validated.rows
        dead += [*validated.dead_letters, *read.dead_letters]
    assert good + len(dead) == 6 == reader.position - 10
    assert good == 1
    assert sorted((d.offset, d.reason) for d in dead) == [
        (11, "CSV row has 3 fields, expected 5"),
        (12, "column 'a' has type string, expected a number"),
        (13, "null value in column 'label'"),
        (14, "null value in column 'a'"),  # CSV reads nan as a null
        (15, "CSV row has 6 fields, expected 5"),
    ]


def test_follow_an_empty_directory_needs_the_columns_named(tmp_path):
    with pytest.raises(ConfigError, match=r"no data files under .*name the columns"):
        follow(tmp_path)
    with pytest.raises(ConfigError, match=r"name the columns"):
        follow(tmp_path, query="format=csv")
    source = follow(tmp_path, query="format=csv&features=a,b&key=id")
    assert source.schema.features == ("a", "b") and source.files == []
    reader = source.open(0)
    assert reader.high_watermark() == 0
    assert ids(reader.read_batch(10, 0.0)) == []
    land(tmp_path, "a.csv", sample_table(7), "csv", mtime_s=100)
    land(tmp_path, "b.parquet", sample_table(7), "parquet", mtime_s=100)  # not csv
    assert expect_rows(reader, 7) == row_ids(0, 7)
    assert ids(reader.read_batch(10, 0.1)) == []


def test_follow_needs_a_directory_and_a_valid_poll(tmp_path):
    land(tmp_path, "a.parquet", sample_table(5), "parquet", mtime_s=100)
    with pytest.raises(ConfigError, match=r"follow watches a directory.*is a file"):
        open_file_source(SourceSpec(str(tmp_path / "a.parquet"), follow=True))
    with pytest.raises(ConfigError, match="no such file or directory"):
        open_file_source(SourceSpec(str(tmp_path / "missing"), follow=True))
    with pytest.raises(ConfigError, match=r"poll_s='soon' is not a number"):
        open_file_source(SourceSpec(f"{tmp_path}?poll_s=soon", follow=True))
    with pytest.raises(ConfigError, match=r"poll_s \(0.0\) must be a number of seconds > 0"):
        open_file_source(SourceSpec(f"{tmp_path}?poll_s=0", follow=True))
    with pytest.raises(ConfigError, match=r"max_wait_s \(-1\)"):
        follow(tmp_path).open(0).read_batch(1, -1)


def test_follow_a_file_landing_out_of_order_is_read_next_with_a_warning(tmp_path, caplog):
    land(tmp_path, "a.parquet", sample_table(10), "parquet", mtime_s=100)
    land(tmp_path, "b.parquet", sample_table(10, start=10), "parquet", mtime_s=300)
    reader = follow(tmp_path, query="key=id").open(0)
    assert ids(reader.read_batch(15)) == row_ids(0, 15)  # b is begun
    land(tmp_path, "late.parquet", sample_table(3, start=20), "parquet", mtime_s=200)
    land(tmp_path, "next.parquet", sample_table(3, start=23), "parquet", mtime_s=400)
    with caplog.at_level(logging.WARNING, logger="pipelines.sources.files"):
        got = expect_rows(reader, 11)
    assert got == row_ids(15, 20) + row_ids(20, 23) + row_ids(23, 26)
    assert "late.parquet landed with a modification time before" in caplog.text


def test_follow_warns_when_a_landed_file_changes(tmp_path, caplog):
    path = land(tmp_path, "a.csv", sample_table(5), "csv", mtime_s=100)
    source = follow(tmp_path)
    with path.open("a") as out:
        out.write("r5,1,2,true,0\n")
    # The warning comes from the next listing (every 20 ms): poll for it under a deadline.
    with caplog.at_level(logging.WARNING, logger="pipelines.sources._file_follow"):

        def warned() -> bool:
            source.partition_rows(0)
            return "changed after it landed" in caplog.text

        wait_until(warned, WAIT_S, interval_s=0.01)
    assert "a.csv changed after it landed" in caplog.text


def test_follow_close_wakes_a_waiting_read(tmp_path):
    land(tmp_path, "a.parquet", sample_table(5), "parquet", mtime_s=100)
    reader = follow(tmp_path).open(0, 5)
    answers: list[SourceBatch | None] = []
    waiting = threading.Thread(target=lambda: answers.append(reader.read_batch(10, 30.0)))
    started = time.monotonic()
    waiting.start()
    reader.close()
    waiting.join(timeout=WAIT_S)
    assert not waiting.is_alive() and time.monotonic() - started < WAIT_S
    assert len(answers) == 1 and (answers[0] is None or answers[0].batch.num_rows == 0)
    assert reader.read_batch(10, 1.0) is None  # closed


def test_follow_batches_reconcile_offsets(tmp_path):
    """Every record of a followed partition has exactly one offset: a row or a dead letter."""
    lines = ['{"id": "r0", "a": 1, "label": 0}', "garbage", "[1, 2]", "", "null"]
    lines += ['{"id": "r4", "a": NaN, "label": 1}', '{"id": "r5", "a": 2}', "7"]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    source = follow(tmp_path, query="key=id")
    reader = source.open(0)
    seen: list[int] = []
    dead: list[DeadLetter] = []
    while (read := reader.read_batch(3)) is not None and read.next_offset > read.first_offset:
        assert read.next_offset - read.first_offset <= 3
        validated = source.schema.validate(
            read.batch, partition=0, first_offset=read.first_offset, offsets=read.offsets
        )
        seen += validated.offsets.tolist() + [d.offset for d in validated.dead_letters]
        seen += [d.offset for d in read.dead_letters]
        dead += read.dead_letters
    assert sorted(seen) == list(range(7)) == list(np.unique(seen))
    assert [(d.offset, d.reason) for d in dead] == [
        (1, "JSON line does not parse: Expecting value"),
        (2, "JSON line is an array, expected an object"),
        (3, "JSON line is null, expected an object"),
        (6, "JSON line is a number, expected an object"),
    ]
    assert dead[0].record == "garbage" and dead[0].partition == 0
