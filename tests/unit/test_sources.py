"""Stream sources without Ray: the synthetic generator, the file source, the registry."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from actors.errors import ConfigError, SourceError
from pipelines.sources import (
    SCHEMES,
    PartitionReader,
    SourceSpec,
    StreamSource,
    open_source,
)
from pipelines.sources.files import FileSource, open_file_source
from pipelines.sources.synthetic import (
    BLOCK_ROWS,
    DEFAULT_ROWS,
    SyntheticSource,
    hyperplane_schema,
)


def read_all(reader: PartitionReader, max_rows: int = 1000) -> pa.Table:
    """Every remaining row of `reader` as a table, checking offsets are contiguous."""
    batches = []
    expected = reader.position
    while (read := reader.read_batch(max_rows)) is not None:
        assert read.first_offset == expected
        assert 0 < read.batch.num_rows <= max_rows
        expected = read.next_offset
        batches.append(read.batch)
    assert reader.position == expected
    if not batches:
        return pa.table({})
    return pa.Table.from_batches(batches).combine_chunks()


def features_and_labels(table: pa.Table, features: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([table.column(f"x{i}").to_numpy() for i in range(features)], axis=1)
    return x, table.column("label").to_numpy()


def synthetic(query: str = "", partitions: int = 2, rows: int | None = None, seed: int = 0):
    return open_source(SourceSpec(f"synthetic://hyperplane?{query}", partitions, rows, seed))


# --- synthetic ---------------------------------------------------------------------------


def test_synthetic_implements_the_protocols():
    source = synthetic("rows=10")
    assert isinstance(source, SyntheticSource)
    assert isinstance(source, StreamSource)
    assert isinstance(source.open(0), PartitionReader)
    assert isinstance(open_source(SourceSpec("synthetic://")), SyntheticSource)


def test_synthetic_same_rows_whatever_the_batch_size():
    source = synthetic("features=4&rows=20000", partitions=2)
    reference = read_all(source.open(1), max_rows=BLOCK_ROWS * 3)
    assert reference.num_rows == 10_000
    for max_rows in (1, 999, BLOCK_ROWS + 1):
        reader = source.open(1, offset=9_000) if max_rows == 1 else source.open(1)
        table = read_all(reader, max_rows)
        start = 9_000 if max_rows == 1 else 0
        assert table.equals(reference.slice(start)), f"max_rows={max_rows}"
    again = read_all(synthetic("features=4&rows=20000", partitions=2).open(1), 4096)
    assert again.equals(reference)


def test_synthetic_open_at_offset_yields_the_tail():
    source = synthetic("features=3&rows=12000", partitions=1)
    whole = read_all(source.open(0), 700)
    for offset in (1, BLOCK_ROWS - 1, BLOCK_ROWS, 5_003, 12_000):
        tail = read_all(source.open(0, offset), 333)
        assert tail.num_rows == 12_000 - offset
        if offset < 12_000:
            assert tail.equals(whole.slice(offset))


def test_synthetic_seed_and_partition_change_the_data():
    a = read_all(synthetic("rows=2000", seed=1).open(0))
    b = read_all(synthetic("rows=2000", seed=2).open(0))
    c = read_all(synthetic("rows=2000", seed=1).open(1))
    assert not a.column("x0").equals(b.column("x0"))
    assert not a.column("x0").equals(c.column("x0"))


def test_synthetic_partition_rows_sum_to_the_total():
    source = synthetic("rows=10003", partitions=4)
    sizes = [source.open(p).high_watermark() for p in source.partitions()]
    assert sizes == [2501, 2501, 2501, 2500]
    assert sum(read_all(source.open(p), 4000).num_rows for p in source.partitions()) == 10_003
    assert synthetic(partitions=3).total_rows == DEFAULT_ROWS
    assert synthetic(partitions=3, rows=90).total_rows == 90
    assert synthetic("rows=60", partitions=3, rows=90).total_rows == 60  # the URI wins


def test_synthetic_batches_match_the_declared_schema():
    source = synthetic("features=3&rows=100")
    assert source.schema == hyperplane_schema(3)
    assert source.schema.features == ("x0", "x1", "x2")
    read = source.open(0).read_batch(50)
    assert read is not None
    assert read.batch.schema.equals(source.schema.arrow_schema())
    x = np.stack([read.batch.column(i).to_numpy() for i in range(3)])
    assert x.min() >= 0.0 and x.max() < 1.0
    validated = source.schema.validate(read.batch, partition=0, first_offset=0)
    assert validated.rows == 50 and not validated.dead_letters


def test_synthetic_concept_switches_at_drift_at():
    source = synthetic("features=5&rows=16000&noise=0&drift_at=0.25", partitions=2)
    switch = source.switch_offset(1)
    assert switch == 2000
    x, y = features_and_labels(read_all(source.open(1), 3000), 5)
    before, after = source.concept_weights(1, 0), source.concept_weights(1, switch)
    assert not np.allclose(before, after)

    def agreement(w: np.ndarray, rows: slice) -> float:
        predicted = (x[rows] @ w > w.sum() / 2).astype(np.float32)
        return float(np.mean(predicted == y[rows]))

    assert agreement(before, slice(0, switch)) > 0.999
    assert agreement(after, slice(switch, None)) > 0.999
    # A model of the old concept is at chance on the new one.
    assert 0.35 < agreement(before, slice(switch, None)) < 0.65
    assert 0.4 < y.mean() < 0.6


def test_synthetic_drift_none_keeps_one_concept():
    source = synthetic("features=4&rows=8000&noise=0&drift_at=none", partitions=1)
    assert source.switch_offset(0) is None
    x, y = features_and_labels(read_all(source.open(0), 4000), 4)
    w = source.concept_weights(0, 0)
    assert np.mean((x @ w > w.sum() / 2) == y) > 0.999


def clean_agreement(source, partition: int, offset: int, x: np.ndarray, y: np.ndarray) -> float:
    """Share of rows `x`, `y` labelled by the concept in force at `offset` of `partition`."""
    w = source.concept_weights(partition, offset)
    return float(np.mean((x @ w > w.sum() / 2).astype(np.float32) == y))


def test_synthetic_drift_at_per_partition_switches_only_the_listed_partitions():
    source = synthetic(
        "features=4&rows=16000&noise=0,0,0,0.5&drift_at=none,none,0.3,none", partitions=4
    )
    assert [source.switch_offset(p) for p in range(4)] == [None, None, 1200, None]
    for partition in (0, 1):
        x, y = features_and_labels(read_all(source.open(partition), 4000), 4)
        assert clean_agreement(source, partition, 0, x, y) > 0.999
        assert np.allclose(source.concept_weights(partition, 3999), source.concept_weights(0, 0))
    x, y = features_and_labels(read_all(source.open(2), 4000), 4)
    assert clean_agreement(source, 2, 0, x[:1200], y[:1200]) > 0.999
    assert clean_agreement(source, 2, 1200, x[1200:], y[1200:]) > 0.999
    assert 0.35 < clean_agreement(source, 2, 0, x[1200:], y[1200:]) < 0.65
    assert source.noise(3) == 0.5 and source.switch_offset(3) is None


def test_synthetic_drift_at_list_cycles_and_single_value_applies_to_all():
    source = synthetic("rows=6000&drift_at=0.5,none,0.25", partitions=6)
    assert [source.switch_offset(p) for p in range(6)] == [500, None, 250, 500, None, 250]
    single = synthetic("rows=6000&drift_at=0.1", partitions=3)
    assert [single.switch_offset(p) for p in range(3)] == [200, 200, 200]
    assert synthetic("rows=6000", partitions=2).switch_offset(1) == 1500  # default 0.5
    assert synthetic("rows=6000&drift_at=NONE", partitions=2).switch_offset(1) is None


def test_synthetic_rotation_turns_the_concept_gradually():
    source = synthetic("features=4&rows=6000&noise=0&drift_at=none&rotation=0.0005", 1)
    first, last = source.concept_weights(0, 0), source.concept_weights(0, 5999)
    assert np.isclose(np.linalg.norm(first), np.linalg.norm(last))
    assert not np.allclose(first, last)
    x, y = features_and_labels(read_all(source.open(0), 2500), 4)
    clean = [(x[i] @ (w := source.concept_weights(0, i)) > w.sum() / 2) for i in range(0, 6000, 7)]
    assert np.mean(np.array(clean, dtype=np.float32) == y[::7]) > 0.99


def test_synthetic_rotation_per_partition_turns_only_those_partitions():
    source = synthetic("features=4&rows=6000&noise=0&drift_at=none&rotation=0,0.001", 3)
    assert [source.generator.rotation(p) for p in range(3)] == [0.0, 0.001, 0.0]
    for still in (0, 2):
        assert np.allclose(source.concept_weights(still, 0), source.concept_weights(still, 1999))
    turned = source.concept_weights(1, 1999)
    assert not np.allclose(source.concept_weights(1, 0), turned)
    # The labels of the turning partition follow its own turning concept.
    x, y = features_and_labels(read_all(source.open(1), 500), 4)
    clean = [(x[i] @ (w := source.concept_weights(1, i)) > w.sum() / 2) for i in range(0, 2000, 7)]
    assert np.mean(np.array(clean, dtype=np.float32) == y[::7]) > 0.99


def test_synthetic_noise_rate_per_partition():
    source = synthetic("features=3&rows=40000&drift_at=none&noise=0,0.1,0.3", partitions=4)
    assert [source.noise(p) for p in range(4)] == [0.0, 0.1, 0.3, 0.0]
    for partition, requested in enumerate([0.0, 0.1, 0.3, 0.0]):
        x, y = features_and_labels(read_all(source.open(partition), 5000), 3)
        w = source.concept_weights(partition, 0)
        flipped = np.mean((x @ w > w.sum() / 2) != y)
        assert abs(flipped - requested) < 0.02, (partition, flipped, requested)


def test_synthetic_pure_noise_labels_are_uncorrelated():
    source = synthetic("features=4&rows=20000&drift_at=none&noise=0.5", partitions=1)
    x, y = features_and_labels(read_all(source.open(0), 5000), 4)
    w = source.concept_weights(0, 0)
    assert abs(np.mean((x @ w > w.sum() / 2) == y) - 0.5) < 0.02
    for i in range(4):
        assert abs(np.corrcoef(x[:, i], y)[0, 1]) < 0.05


# Pinned before the generator became pluggable: the hyperplane stream must not change.
@pytest.mark.parametrize(
    ("uri", "partitions", "seed", "partition", "offset", "rows", "digest", "x0", "positives"),
    [
        (
            "synthetic://hyperplane?rows=40000",
            *(4, 0, 1, 0, 10_000),
            "b5f141aa28f6092b",
            [0.8353248834609985, 0.9799150228500366, 0.5349390506744385],
            5040,
        ),
        (
            "synthetic://hyperplane?features=3&rows=50000&drift_at=0.3,none&noise=0.1"
            "&rotation=0.001",
            *(2, 7, 0, 4000, 12_000),
            "6462d24b7cc82890",
            [0.27882593870162964, 0.8959006071090698, 0.5489009618759155],
            6011,
        ),
        (
            "synthetic://",
            *(4, 3, 3, 5000, 6000),
            "4e8536b7bb8c2700",
            [0.3417302370071411, 0.6039133667945862, 0.15030109882354736],
            3005,
        ),
    ],
)
def test_synthetic_hyperplane_rows_are_pinned(
    uri, partitions, seed, partition, offset, rows, digest, x0, positives
):
    source = open_source(SourceSpec(uri, partitions, None, seed))
    read = source.open(partition, offset).read_batch(rows)
    assert read is not None and read.batch.num_rows == rows
    sha = hashlib.sha256()
    for column in read.batch.columns:
        sha.update(column.to_numpy().tobytes())
    assert sha.hexdigest()[:16] == digest
    assert read.batch.column("x0").to_numpy()[:3].tolist() == x0
    assert read.batch.column("label").to_numpy().sum() == positives


def test_synthetic_reader_bookkeeping():
    reader = synthetic("rows=100", partitions=1).open(0, offset=90)
    assert reader.position == 90
    assert reader.high_watermark() == 100
    read = reader.read_batch(50)
    assert read is not None and (read.first_offset, read.next_offset) == (90, 100)
    assert reader.read_batch(50) is None
    reader.commit(95)
    assert reader.committed == 95
    with pytest.raises(SourceError, match="cannot commit offset 101"):
        reader.commit(101)
    with pytest.raises(ConfigError, match="max_rows"):
        reader.read_batch(0)
    reader.close()


@pytest.mark.parametrize(
    ("partition", "offset", "message"),
    [(2, 0, "no partition 2"), (0, 51, "offset 51 is outside"), (0, -1, "offset -1")],
)
def test_synthetic_open_rejects_bad_positions(partition, offset, message):
    with pytest.raises(SourceError, match=message):
        synthetic("rows=100", partitions=2).open(partition, offset)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("noise=abc", ["noise", "'abc'", "probabilities in [0, 1]"]),
        ("noise=0.1,1.5", ["noise", "1.5", "[0, 1]"]),
        ("drift_at=2", ["drift_at", "2.0", "[0, 1]"]),
        ("drift_at=soon", ["drift_at", "'soon'", "'none'"]),
        ("drift_at=0.3,abc", ["drift_at", "'abc'", "'none'", "per partition"]),
        ("drift_at=1.5", ["drift_at", "1.5", "[0, 1]"]),
        ("drift_at=none,1.5", ["drift_at", "1.5", "[0, 1]"]),
        ("drift_at=0.3,", ["drift_at", "''", "fractions in [0, 1]"]),
        ("features=1", ["features", "1", ">= 2"]),
        ("features=ten", ["features", "'ten'", "integer"]),
        ("rotation=-0.1", ["rotation", "-0.1", ">= 0"]),
        ("rotation=0,-0.1", ["rotation", "-0.1", ">= 0"]),
        ("rows=0", ["rows", "0", ">= 1"]),
        ("nosie=0.1", ["nosie", "noise"]),
        ("noise=0.1&noise=0.2", ["noise", "twice"]),
    ],
)
def test_synthetic_bad_options_name_option_value_and_expectation(query, words):
    with pytest.raises(ConfigError) as caught:
        synthetic(query)
    for word in words:
        assert word in str(caught.value)


def test_synthetic_unknown_generator_and_bad_spec():
    with pytest.raises(ConfigError, match=r"unknown synthetic generator 'spiral'.*hyperplane"):
        open_source(SourceSpec("synthetic://spiral"))
    with pytest.raises(ConfigError, match="partitions"):
        open_source(SourceSpec("synthetic://", partitions=0))
    with pytest.raises(ConfigError, match="seed"):
        open_source(SourceSpec("synthetic://", seed=-1))


# --- files -------------------------------------------------------------------------------


def sample_table(rows: int, start: int = 0) -> pa.Table:
    ids = np.arange(start, start + rows)
    return pa.table(
        {
            "id": pa.array([f"r{i}" for i in ids]),
            "a": pa.array(ids * 0.5, pa.float64()),
            "b": pa.array(ids % 7, pa.int64()),
            "flag": pa.array(ids % 2 == 0),
            "label": pa.array(ids % 3 == 0, pa.int64()),
        }
    )


def write(table: pa.Table, path, fmt: str) -> None:
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=50)
    elif fmt == "arrow":
        feather.write_feather(table, path)
    elif fmt == "csv":
        pa_csv.write_csv(table, path)
    else:
        with open(path, "w") as out:
            for row in table.to_pylist():
                out.write(json.dumps(row) + "\n")


EXTENSIONS = {"parquet": "parquet", "arrow": "arrow", "csv": "csv", "jsonl": "jsonl"}


@pytest.fixture(params=sorted(EXTENSIONS))
def data_dir(request, tmp_path):
    """Three files of 120, 90 and 150 rows in one directory, plus files to be ignored."""
    fmt = request.param
    for i, (rows, start) in enumerate([(120, 0), (90, 120), (150, 210)]):
        write(sample_table(rows, start), tmp_path / f"part-{i}.{EXTENSIONS[fmt]}", fmt)
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".part-0.crc").write_text("junk")
    return tmp_path, fmt


def test_file_round_trip_split_across_partitions(data_dir):
    path, fmt = data_dir
    source = open_source(SourceSpec(f"{path}?key=id", partitions=2))
    assert isinstance(source, FileSource) and isinstance(source, StreamSource)
    assert source.format == fmt
    assert source.schema.features == ("a", "b", "flag")
    assert source.schema.key == "id"
    sizes = [source.open(p).high_watermark() for p in source.partitions()]
    assert sizes == [120 + 150, 90]  # files dealt round-robin in path order
    tables = [read_all(source.open(p), 64) for p in source.partitions()]
    assert [t.num_rows for t in tables] == sizes
    ids = [i for t in tables for i in t.column("id").to_pylist()]
    assert sorted(ids) == sorted(f"r{i}" for i in range(360))
    expected = sample_table(360)
    by_id = {r["id"]: r for r in expected.to_pylist()}
    for table in tables:
        validated = source.schema.validate(table.to_batches()[0], partition=0, first_offset=0)
        assert not validated.dead_letters
        assert validated.x.dtype == np.float32
        for row, features, label in zip(
            table.column("id").to_pylist(), validated.x, validated.y, strict=True
        ):
            want = by_id[row]
            assert list(features) == [want["a"], want["b"], float(want["flag"])]
            assert label == want["label"]


def test_file_open_at_offset_skips_rows(data_dir):
    path, _ = data_dir
    source = open_source(SourceSpec(str(path), partitions=2))
    whole = read_all(source.open(0), 100)
    for offset in (0, 1, 119, 120, 200, 270):
        tail = read_all(source.open(0, offset), 37)
        assert tail.num_rows == 270 - offset
        if tail.num_rows:
            assert tail.equals(whole.slice(offset))
    with pytest.raises(SourceError, match="past the partition's end"):
        source.open(0, 271)


def test_file_single_file_and_file_uri(tmp_path):
    write(sample_table(40), tmp_path / "one.csv", "csv")
    for uri in (str(tmp_path / "one.csv"), (tmp_path / "one.csv").as_uri()):
        source = open_source(SourceSpec(uri, partitions=3))
        assert [source.open(p).high_watermark() for p in range(3)] == [40, 0, 0]
        assert source.open(2).read_batch(10) is None


def test_file_parquet_splits_by_row_group_when_files_are_few(tmp_path):
    write(sample_table(200), tmp_path / "one.parquet", "parquet")  # 4 row groups of 50
    source = open_source(SourceSpec(str(tmp_path / "one.parquet"), partitions=3))
    assert [source.open(p).high_watermark() for p in range(3)] == [100, 50, 50]
    ids = [read_all(source.open(p), 30).column("a").to_pylist() for p in range(3)]
    assert sorted(v for part in ids for v in part) == [i * 0.5 for i in range(200)]
    assert ids[1][0] == 25.0  # partition 1 starts at row group 1 (row 50)
    # partition 0 holds row groups 0 and 3: offset 60 is row 10 of group 3, i.e. row 160
    assert read_all(source.open(0, 60), 30).column("a").to_pylist()[0] == 160 * 0.5


def test_file_options_format_label_features(tmp_path):
    table = pa.table({"u": [1.0, 2.0], "v": [3, 4], "y": [0, 1], "label": [9, 9]})
    pa_csv.write_csv(table, tmp_path / "rows.txt")
    source = open_source(SourceSpec(f"{tmp_path}/rows.txt?format=csv&label=y&features=v", 1))
    assert (source.schema.features, source.schema.label) == (("v",), "y")
    batch = read_all(source.open(0))
    assert batch.column_names == ["v", "y"]
    assert batch.column("y").to_pylist() == [0.0, 1.0]


def test_file_bad_values_survive_to_be_dead_lettered(tmp_path):
    (tmp_path / "rows.csv").write_text(
        "a,b,label\n1,2,0\n3,4,1\n5,abc,1\n7,,0\n9,NaN,1\n11, 12 ,true\n13,14,0\n"
    )
    source = open_source(SourceSpec(f"{tmp_path}/rows.csv?features=a,b", partitions=1))
    reader = source.open(0)
    good, dead = 0, []
    while (read := reader.read_batch(100)) is not None:
        validated = source.schema.validate(read.batch, partition=0, first_offset=read.first_offset)
        good += validated.rows
        dead += validated.dead_letters
    assert reader.position == 7
    assert good + len(dead) == 7
    assert [(d.offset, d.reason) for d in dead] == [
        (2, "column 'b' has type string, expected a number"),
        (3, "null value in column 'b'"),
        (4, "null value in column 'b'"),  # CSV reads NaN as a null
    ]
    assert "abc" in dead[0].record


def test_file_parquet_nulls_and_nan_survive(tmp_path):
    table = pa.table({"a": [1.0, None, float("nan"), 4.0], "label": [0, 1, None, 1]})
    pq.write_table(table, tmp_path / "rows.parquet")
    source = open_source(SourceSpec(str(tmp_path / "rows.parquet"), partitions=1))
    read = source.open(0).read_batch(10)
    assert read is not None
    validated = source.schema.validate(read.batch, partition=0, first_offset=0)
    assert validated.rows == 2
    assert [d.offset for d in validated.dead_letters] == [1, 2]


def test_file_jsonl_type_changes_and_malformed_lines(tmp_path):
    lines = [
        '{"a": 1, "b": 2, "label": 0}',
        '{"a": "oops", "b": 2, "label": 1}',
        "not json",
        "",
        '{"b": 3, "label": true}',
        '{"a": 4.5, "b": 1, "label": false}',
    ]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    source = open_source(SourceSpec(f"{tmp_path}/rows.jsonl?features=a,b", partitions=1))
    reader = source.open(0)
    assert reader.high_watermark() == 5  # the blank line is not a row
    good, dead, unparsed = 0, [], []
    while (read := reader.read_batch(100)) is not None:
        validated = source.schema.validate(
            read.batch, partition=0, first_offset=read.first_offset, offsets=read.offsets
        )
        good += validated.rows
        dead += validated.dead_letters
        unparsed += read.dead_letters
    assert good == 2
    assert [d.offset for d in dead] == [1, 3]
    assert "'a'" in dead[0].reason and "oops" in dead[0].record
    assert [(d.offset, d.reason, d.record) for d in unparsed] == [
        (2, "JSON line does not parse: Expecting value", "not json")
    ]
    tail = read_all(source.open(0, 4))
    assert tail.column("a").to_pylist() == [4.5]


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file or directory"):
        open_source(SourceSpec(str(tmp_path / "missing")))
    write(sample_table(10), tmp_path / "a.csv", "csv")
    with pytest.raises(ConfigError, match="label column 'target' not found"):
        open_source(SourceSpec(f"{tmp_path}?label=target"))
    with pytest.raises(ConfigError, match=r"feature column\(s\) \['zz'\] not found"):
        open_source(SourceSpec(f"{tmp_path}?features=a,zz"))
    with pytest.raises(ConfigError, match="format='xls' is not supported"):
        open_source(SourceSpec(f"{tmp_path}?format=xls"))
    with pytest.raises(ConfigError, match=r"unknown file source option\(s\) \['lable'\]"):
        open_source(SourceSpec(f"{tmp_path}?lable=y"))
    write(sample_table(10), tmp_path / "b.parquet", "parquet")
    with pytest.raises(ConfigError, match="mixes formats"):
        open_file_source(SourceSpec(str(tmp_path)))
    assert open_file_source(SourceSpec(f"{tmp_path}?format=parquet")).format == "parquet"
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="cannot tell the format"):
        open_file_source(SourceSpec(str(tmp_path / "notes.txt")))


def test_file_open_without_an_offset_starts_at_zero(tmp_path):
    write(sample_table(5), tmp_path / "a.parquet", "parquet")
    reader = open_source(SourceSpec(str(tmp_path), partitions=1)).open(0, None)
    assert reader.position == 0  # files keep no committed offsets
    assert read_all(reader).num_rows == 5


def test_file_csv_lines_with_the_wrong_field_count_are_dead_letters_in_place(tmp_path):
    # Over 1 MiB, so pyarrow parses it in several blocks; bad lines sit in each of them.
    bad = {0, 1, 17, 75_000, 75_001, 100_000, 149_998, 149_999}
    lines = ["a,label"] + [f"{i}" if i in bad else f"{i},{i % 2}" for i in range(150_000)]
    lines.insert(1_000, "")  # blank lines are not records
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n")
    assert (tmp_path / "big.csv").stat().st_size > 1 << 20
    source = open_source(SourceSpec(str(tmp_path), partitions=1))
    reader = source.open(0)
    assert reader.high_watermark() == 150_000
    rows, dead = [], []
    while (read := reader.read_batch(7_000)) is not None:
        assert read.next_offset - read.first_offset <= 7_000
        offsets = read.row_offsets()
        assert offsets.tolist() == read.batch.column("a").to_numpy().astype(int).tolist()
        rows += offsets.tolist()
        dead += read.dead_letters
    assert [d.offset for d in dead] == sorted(bad)
    assert {d.reason for d in dead} == {"CSV row has 1 fields, expected 2"}
    assert [d.record for d in dead[:2]] == ["0", "1"] and dead[0].partition == 0
    assert len(rows) == 150_000 - len(bad)
    tail = source.open(0, 75_000).read_batch(3)
    assert tail is not None and [d.offset for d in tail.dead_letters] == [75_000, 75_001]
    assert tail.row_offsets().tolist() == [75_002] and tail.next_offset == 75_003


def _poisoned(directory, fmt: str) -> tuple[int, int, list[str]]:
    """A clean file and one with poison of every kind `fmt` can hold.

    Returns:
        Records written, how many of them are good, and the reasons the source itself
        gives for the records it cannot turn into rows, in offset order.
    """
    write(sample_table(40), directory / f"0-clean.{fmt}", fmt)
    if fmt in ("parquet", "arrow"):
        inf, nan = float("inf"), float("nan")
        values = {"a": [1.0, nan, inf, -inf, None, 2.0], "label": [0, 1, 0, 1, 1, None]}
        text = {"a": ["1.5", "abc", " 2 ", ""], "label": [0, 1, 0, 1]}  # unparseable
        nested = {"a": [[1.0], [2.0]], "label": [0, 1]}  # wrong type
        for name, columns in (("1-values", values), ("2-text", text), ("3-nested", nested)):
            n = len(columns["a"])
            table = pa.table({"id": [f"p{i}" for i in range(n)], **columns, "b": [1] * n})
            write(
                table.append_column("flag", pa.array([True] * n)), directory / f"{name}.{fmt}", fmt
            )
        write(sample_table(3).drop_columns(["label"]), directory / f"4-unlabelled.{fmt}", fmt)
        return 40 + 6 + 4 + 2 + 3, 40 + 1 + 2, []
    if fmt == "csv":
        lines = [
            "id,a,b,flag,label",
            "p0,1,2,true,1",
            "p1,1,2",  # too few fields
            "p2,1,2,true,1,9",  # too many
            "p3,abc,2,true,0",  # unparseable number
            "p4,1,2,true,",  # missing label
            "p5,nan,2,true,1",  # NaN (CSV reads it as null)
            "p6,inf,2,true,1",  # infinite
            "p7,1,2,maybe,0",  # not a boolean
            'p8,"1,5",2,true,0',  # a quoted comma: one unparseable field
            "",
            "p9,-1e3,2,false,0",
            "p10,1",  # too few, after the last good row
        ]
        reasons = [f"CSV row has {n} fields, expected 5" for n in (3, 6, 2)]
    else:
        lines = [
            '{"id": "p0", "a": 1, "b": 2, "flag": true, "label": 1}',
            "not json",
            "[1, 2]",
            '"text"',
            "null",
            "true",
            '{"id": "p6", "a": "abc", "b": 2, "flag": true, "label": 0}',
            '{"id": "p7", "a": 1, "b": 2, "flag": true}',  # no label
            '{"id": "p8", "a": NaN, "b": 2, "flag": true, "label": 1}',
            '{"id": "p9", "a": Infinity, "b": 2, "flag": true, "label": 1}',
            '{"id": "p10", "a": {"x": 1}, "b": 2, "flag": true, "label": 1}',  # wrong type
            '{"id": "p11", "a": 1, "b": 2, "flag": true, "label": null}',
            "",
            '{"id": "p12", "a": 1, "b": 2, "flag": true, "label": 0} trailing',
            '{"id": "p13", "a": 2.5, "b": 1, "flag": false, "label": 0}',
        ]
        reasons = [
            "JSON line does not parse: Expecting value",
            "JSON line is an array, expected an object",
            "JSON line is a string, expected an object",
            "JSON line is null, expected an object",
            "JSON line is a boolean, expected an object",
            "JSON line does not parse: Extra data",
        ]
    (directory / f"1-poison.{fmt}").write_text("\n".join(lines) + "\n")
    records = sum(1 for line in lines[1 if fmt == "csv" else 0 :] if line)
    return 40 + records, 40 + 2, reasons


@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("fmt", sorted(EXTENSIONS))
def test_file_counts_reconcile_with_poison_of_every_kind(tmp_path, fmt, partitions):
    written, good_written, source_reasons = _poisoned(tmp_path, fmt)
    source = open_source(SourceSpec(f"{tmp_path}?key=id", partitions=partitions))
    assert source.schema.features == ("a", "b", "flag")
    good, schema_dead, source_dead = 0, [], []
    for partition in source.partitions():
        reader = source.open(partition)
        seen = []
        while (read := reader.read_batch(4)) is not None:
            validated = source.schema.validate(
                read.batch,
                partition=partition,
                first_offset=read.first_offset,
                offsets=read.offsets,
            )
            good += validated.rows
            schema_dead += validated.dead_letters
            source_dead += read.dead_letters
            seen += validated.offsets.tolist() + [d.offset for d in validated.dead_letters]
            seen += [d.offset for d in read.dead_letters]
        # Every record of the partition has exactly one offset: a row or a dead letter.
        assert sorted(seen) == list(range(reader.high_watermark())), partition
    assert good + len(schema_dead) + len(source_dead) == written
    assert good == good_written
    assert [d.reason for d in sorted(source_dead, key=lambda d: d.offset)] == source_reasons
    reasons = " | ".join(d.reason for d in schema_dead)
    for kind in ("null value in column 'label'", "column 'a' has type string", "value in column"):
        assert kind in reasons
    if fmt != "csv":  # CSV reads NaN as a null
        assert "non-finite value in column 'a'" in reasons


# --- registry ----------------------------------------------------------------------------


def test_registry_routes_schemes():
    assert SCHEMES["file"] is open_file_source
    assert SCHEMES[""] is open_file_source
    for scheme in ("s3", "gs", "hdfs"):
        assert SCHEMES[scheme] is open_file_source


def test_registry_unknown_scheme_is_one_line_listing_supported():
    with pytest.raises(ConfigError) as caught:
        open_source(SourceSpec("foo://x"))
    message = str(caught.value)
    assert "\n" not in message
    assert "unknown source scheme 'foo' in 'foo://x'" in message
    for scheme in (
        "synthetic://",
        "file://",
        "s3://",
        "gs://",
        "hdfs://",
        "kafka://host:port/topic",
    ):
        assert scheme in message
