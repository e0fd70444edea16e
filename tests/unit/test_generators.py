"""The SEA, Agrawal and delivery generators, and the ``rate`` option of synthetic streams."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pyarrow as pa
import pytest

from actors.errors import ConfigError
from pipelines.sources import PartitionReader, SourceSpec, StreamSource, open_source
from pipelines.sources.agrawal import AGRAWAL_FEATURES, group_a
from pipelines.sources.delivery import (
    ORDERS_PER_COURIER,
    POST_HOUR_COLUMNS,
    PRE_HOUR_FEATURES,
    START_EPOCH_S,
    DeliveryGenerator,
)
from pipelines.sources.sea import SEA_THRESHOLDS, sea_schema
from pipelines.sources.synthetic import (
    BLOCK_ROWS,
    GENERATORS,
    SyntheticPartitionReader,
    SyntheticSource,
)

NEW_GENERATORS = ("sea", "agrawal", "delivery")


def stream(name: str, query: str = "", partitions: int = 2, seed: int = 0) -> SyntheticSource:
    source = open_source(SourceSpec(f"synthetic://{name}?{query}", partitions, None, seed))
    assert isinstance(source, SyntheticSource)
    return source


def read_table(reader: PartitionReader, max_rows: int = 5000) -> pa.Table:
    """Every remaining row of a bounded `reader`, checking the offsets are contiguous."""
    batches = []
    expected = reader.position
    while (read := reader.read_batch(max_rows)) is not None:
        assert read.first_offset == expected and 0 < read.batch.num_rows <= max_rows
        expected = read.next_offset
        batches.append(read.batch)
    return pa.Table.from_batches(batches).combine_chunks()


def columns(source: SyntheticSource, partition: int = 0) -> dict[str, np.ndarray]:
    """Every row of `partition` as numpy arrays by column (timestamps as epoch seconds)."""
    table = read_table(source.open(partition))
    result = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        result[name] = column.to_numpy()
    return result


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predicted.astype(bool) == labels.astype(bool)))


# --- every new generator -----------------------------------------------------------------


@pytest.mark.parametrize("name", NEW_GENERATORS)
def test_opens_through_the_registry_with_batches_matching_the_schema(name):
    source = stream(name, "rows=3000")
    assert name in GENERATORS and isinstance(source, StreamSource)
    reader = source.open(1)
    assert isinstance(reader, PartitionReader)
    read = reader.read_batch(700)
    assert read is not None and read.batch.num_rows == 700
    assert read.batch.schema.equals(source.arrow_schema)
    assert set(source.schema.features) <= set(read.batch.schema.names)
    validated = source.schema.validate(read.batch, partition=1, first_offset=0)
    assert validated.rows == 700 and not validated.dead_letters
    assert set(np.unique(validated.y)) <= {0.0, 1.0}


@pytest.mark.parametrize("name", NEW_GENERATORS)
def test_same_rows_whatever_the_reads_and_the_process(name):
    source = stream(name, "rows=24000")
    reference = read_table(source.open(1), max_rows=3 * BLOCK_ROWS)
    assert reference.num_rows == 12_000
    for max_rows in (999, BLOCK_ROWS + 1):
        assert read_table(source.open(1), max_rows).equals(reference), f"max_rows={max_rows}"
    for offset in (BLOCK_ROWS - 1, 5_003):
        assert read_table(source.open(1, offset), 777).equals(reference.slice(offset))
    assert read_table(stream(name, "rows=24000").open(1)).equals(reference)
    # Ray pickles what it ships to an actor: the copy must yield the same rows.
    assert read_table(pickle.loads(pickle.dumps(source)).open(1)).equals(reference)


@pytest.mark.parametrize("name", NEW_GENERATORS)
def test_seed_and_partition_change_the_rows(name):
    label = stream(name).schema.label
    a = columns(stream(name, "rows=4000", seed=1), 0)[label]
    b = columns(stream(name, "rows=4000", seed=2), 0)[label]
    c = columns(stream(name, "rows=4000", seed=1), 1)[label]
    assert not np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("name", NEW_GENERATORS)
def test_noise_flips_labels_at_the_rate_given_per_partition(name):
    # The flip draws do not depend on the noise level, so a noiseless twin of the stream
    # shows exactly which labels were flipped.
    clean = stream(name, "rows=90000&noise=0", partitions=3)
    noisy = stream(name, "rows=90000&noise=0,0.1,0.3", partitions=3)
    for partition, requested in enumerate([0.0, 0.1, 0.3]):
        label = noisy.schema.label
        flipped = columns(noisy, partition)[label] != columns(clean, partition)[label]
        assert abs(flipped.mean() - requested) < 0.012, (partition, flipped.mean())
        assert noisy.noise(partition) == requested


@pytest.mark.parametrize(
    ("name", "query", "words"),
    [
        ("sea", "concept=4", ["concept", "4", "0..3"]),
        ("sea", "concept=low", ["concept", "'low'", "SEA concepts in 0..3"]),
        ("sea", "drift_concept=0,-1", ["drift_concept", "-1", "0..3", "per partition"]),
        ("sea", "noise=1.2", ["noise", "1.2", "[0, 1]"]),
        ("sea", "drift_at=2", ["drift_at", "2.0", "[0, 1]", "'none'"]),
        ("sea", "features=3", ["'features'", "synthetic://sea", "concept, drift_concept"]),
        ("sea", "noise=0.1&noise=0.2", ["noise", "twice"]),
        ("agrawal", "function=10", ["function", "10", "0..9"]),
        ("agrawal", "drift_function=two", ["drift_function", "'two'", "functions in 0..9"]),
        ("agrawal", "perturbation=2", ["perturbation", "2.0", "[0, 1]"]),
        ("agrawal", "perturbation=some", ["perturbation", "'some'", "[0, 1]"]),
        ("agrawal", "rows=0", ["rows", "0", ">= 1"]),
        ("delivery", "shops=0", ["shops", "0", ">= 1"]),
        ("delivery", "shops=many", ["shops", "'many'", "numbers of shops >= 1"]),
        ("delivery", "leaky=maybe", ["leaky", "'maybe'", "true or false"]),
        ("delivery", "noise=-0.1", ["noise", "-0.1", "[0, 1]"]),
        ("delivery", "leak=true", ["'leak'", "synthetic://delivery", "leaky", "rate"]),
        ("delivery", "rate=0", ["rate", "0.0", "> 0", "'none'"]),
        ("sea", "rate=fast", ["rate", "'fast'", "rows per second"]),
        ("sea", "rate=-5", ["rate", "-5.0", "> 0"]),
    ],
)
def test_bad_options_name_option_value_and_expectation(name, query, words):
    with pytest.raises(ConfigError) as caught:
        stream(name, query)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


# --- SEA ---------------------------------------------------------------------------------


@pytest.mark.parametrize("concept", range(4))
def test_sea_label_is_the_threshold_rule_with_the_standard_balance(concept):
    source = stream("sea", f"rows=80000&concept={concept}&drift_at=none&noise=0", 1)
    c = columns(source)
    assert all(
        c[f].dtype == np.float32 and c[f].min() >= 0 and c[f].max() <= 10
        for f in ["f0", "f1", "f2"]
    )
    theta = SEA_THRESHOLDS[concept]
    np.testing.assert_array_equal(c["label"], (c["f0"].astype(np.float64) + c["f1"] <= theta))
    assert abs(c["label"].mean() - theta**2 / 200) < 0.01  # the area under f0 + f1 = theta
    assert abs(np.corrcoef(c["f2"], c["label"])[0, 1]) < 0.02  # f2 is irrelevant


def test_sea_switches_concept_abruptly_at_drift_at():
    source = stream("sea", "rows=40000&noise=0&drift_at=0.25", 1)
    c = columns(source)
    switch = source.switch_offset(0)
    assert switch == 10_000
    total = c["f0"].astype(np.float64) + c["f1"]
    old = accuracy(total <= 8.0, c["label"])
    before, after = total[:switch] <= 8.0, total[switch:] <= 8.0
    assert old < 1.0
    assert accuracy(before, c["label"][:switch]) == 1.0
    assert accuracy(after, c["label"][switch:]) < 0.95  # the 8 -> 7 step relabels ~7.5%
    assert accuracy(total[switch:] <= 7.0, c["label"][switch:]) == 1.0
    generator = source.generator
    assert generator.threshold(0, switch - 1) == 8.0 and generator.threshold(0, switch) == 7.0


def test_sea_concepts_and_switches_differ_per_partition():
    source = stream("sea", "rows=40000&noise=0&concept=0,1&drift_concept=3&drift_at=none,0.5")
    zero, one = columns(source, 0), columns(source, 1)
    assert source.switch_offset(0) is None and source.switch_offset(1) == 10_000
    np.testing.assert_array_equal(zero["label"], zero["f0"].astype(np.float64) + zero["f1"] <= 8)
    total = one["f0"].astype(np.float64) + one["f1"]
    np.testing.assert_array_equal(one["label"][:10_000], total[:10_000] <= 9.0)
    np.testing.assert_array_equal(one["label"][10_000:], total[10_000:] <= 9.5)


def test_sea_default_is_an_abrupt_switch_under_ten_percent_noise():
    source = stream("sea", "rows=40000", 1)
    c = columns(source)
    switch = source.switch_offset(0)
    assert switch == 20_000 and source.noise(0) == 0.1
    clean = c["f0"].astype(np.float64) + c["f1"] <= np.where(np.arange(40_000) < switch, 8, 7)
    assert abs(accuracy(clean, c["label"]) - 0.9) < 0.01


# --- Agrawal -----------------------------------------------------------------------------


def test_agrawal_attributes_are_drawn_as_in_the_paper():
    c = columns(stream("agrawal", "rows=40000&drift_at=none", 1))
    assert all(c[name].dtype == np.float32 for name in (*AGRAWAL_FEATURES, "label"))
    salary, commission = c["salary"], c["commission"]
    assert salary.min() >= 20_000 and salary.max() <= 150_000
    np.testing.assert_array_equal(commission == 0, salary >= 75_000)
    paid = commission[commission > 0]
    assert paid.min() >= 10_000 and paid.max() <= 85_000
    for name, low, high in [("age", 20, 80), ("elevel", 0, 4), ("car", 1, 20)]:
        assert set(np.unique(c[name]).tolist()) == set(range(low, high + 1)), name
    assert set(np.unique(c["zipcode"]).tolist()) == set(range(9))
    assert set(np.unique(c["hyears"]).tolist()) == set(range(1, 31))
    house = (9 - c["zipcode"].astype(np.float64)) * 100_000
    ratio = c["hvalue"] / house
    assert ratio.min() >= 0.5 and ratio.max() <= 1.5
    assert c["loan"].min() >= 0 and c["loan"].max() <= 500_000


@pytest.mark.parametrize("function", range(10))
def test_agrawal_labels_follow_the_chosen_function(function):
    c = columns(stream("agrawal", f"rows=20000&function={function}&drift_at=none", 1))
    np.testing.assert_array_equal(c["label"], group_a(function, c))


def applicant(**values: float) -> dict[str, np.ndarray]:
    row = dict.fromkeys(AGRAWAL_FEATURES, 0.0) | values
    return {name: np.array([value]) for name, value in row.items()}


@pytest.mark.parametrize(
    ("function", "values", "group"),
    [
        (0, {"age": 39}, True),
        (0, {"age": 40}, False),
        (0, {"age": 60}, True),
        (1, {"age": 45, "salary": 80_000}, True),
        (1, {"age": 45, "salary": 60_000}, False),
        (2, {"age": 65, "elevel": 1}, False),
        (2, {"age": 65, "elevel": 4}, True),
        (3, {"age": 30, "elevel": 0, "salary": 30_000}, True),
        (3, {"age": 30, "elevel": 3, "salary": 30_000}, False),
        (4, {"age": 30, "salary": 60_000, "loan": 150_000}, True),
        (4, {"age": 30, "salary": 20_000, "loan": 350_000}, True),
        (4, {"age": 70, "salary": 100_000, "loan": 400_000}, False),
        (5, {"age": 30, "salary": 40_000, "commission": 20_000}, True),
        (5, {"age": 30, "salary": 40_000}, False),
        (6, {"salary": 60_000}, True),  # 40k - 0 - 20k > 0
        (6, {"salary": 60_000, "loan": 200_000}, False),  # 40k - 40k - 20k
        (7, {"salary": 60_000, "elevel": 4}, False),  # 40k - 20k - 20k = 0, not > 0
        (8, {"salary": 60_000, "elevel": 1, "loan": 50_000}, True),  # 40k - 5k - 10k - 10k
        (9, {"salary": 15_000, "hyears": 30, "hvalue": 100_000}, True),  # 10k + 20k - 10k
        (9, {"salary": 15_000, "hyears": 19, "hvalue": 100_000}, False),
    ],
)
def test_agrawal_functions_match_the_papers_rules(function, values, group):
    assert group_a(function, applicant(**values)).tolist() == [group]


def test_agrawal_switches_function_at_drift_at():
    source = stream("agrawal", "rows=40000&function=0&drift_function=2&drift_at=0.5", 1)
    c = columns(source)
    switch = source.switch_offset(0)
    old = group_a(0, c)
    assert accuracy(old[:switch], c["label"][:switch]) == 1.0
    assert accuracy(old[switch:], c["label"][switch:]) < 0.6
    assert accuracy(group_a(2, c)[switch:], c["label"][switch:]) == 1.0
    assert source.generator.function(0, switch - 1) == 0
    assert source.generator.function(0, switch) == 2


def test_agrawal_functions_differ_per_partition():
    source = stream("agrawal", "rows=20000&function=0,5&drift_at=none")
    np.testing.assert_array_equal(columns(source, 1)["label"], group_a(5, columns(source, 1)))
    np.testing.assert_array_equal(columns(source, 0)["label"], group_a(0, columns(source, 0)))


def test_agrawal_perturbation_moves_attributes_within_range_not_labels():
    plain = columns(stream("agrawal", "rows=20000", 1))
    moved = columns(stream("agrawal", "rows=20000&perturbation=0.2", 1))
    np.testing.assert_array_equal(moved["label"], plain["label"])
    for name in ("elevel", "car", "zipcode"):
        np.testing.assert_array_equal(moved[name], plain[name])
    spread = np.abs(moved["salary"] - plain["salary"])
    assert spread.mean() > 0 and spread.max() <= 0.2 * 130_000 + 1
    assert moved["salary"].min() >= 20_000 and moved["salary"].max() <= 150_000
    assert moved["age"].min() >= 20 and moved["age"].max() <= 80
    np.testing.assert_array_equal(moved["age"], np.round(moved["age"]))
    np.testing.assert_array_equal(moved["commission"] == 0, plain["commission"] == 0)


# --- delivery ----------------------------------------------------------------------------


def test_delivery_declares_key_and_event_time_and_keeps_the_leak_out_of_features():
    honest = stream("delivery", "rows=2000")
    leaky = stream("delivery", "rows=2000&leaky=true")
    assert (honest.schema.key, honest.schema.event_time) == ("shop_id", "hour_start")
    assert honest.schema.label == "busy"
    assert honest.schema.features == PRE_HOUR_FEATURES
    assert not set(POST_HOUR_COLUMNS) & set(honest.schema.features)
    assert leaky.schema.features == PRE_HOUR_FEATURES + POST_HOUR_COLUMNS
    honest_batch = read_table(honest.open(0))
    # The leak is in every batch, leaky or not: only the schema decides what is learned.
    assert set(POST_HOUR_COLUMNS) <= set(honest_batch.column_names)
    assert honest_batch.equals(read_table(leaky.open(0)))
    assert honest_batch.schema.field("shop_id").type == pa.int64()
    assert honest_batch.schema.field("hour_start").type == pa.timestamp("s", tz="UTC")
    validated = leaky.schema.validate(honest_batch.to_batches()[0], partition=0, first_offset=0)
    assert validated.x.shape[1] == len(PRE_HOUR_FEATURES) + len(POST_HOUR_COLUMNS)


def test_delivery_rows_are_every_shop_once_per_hour_with_city_wide_weather():
    shops = 7  # an hour straddles each block boundary (4096 is not a multiple of 7)
    source = stream("delivery", f"rows=30000&shops={shops},3&drift_at=none")
    c = columns(source, 0)
    n = len(c["busy"])
    hours = np.arange(n) // shops
    np.testing.assert_array_equal(c["shop_id"], np.arange(n) % shops)
    np.testing.assert_array_equal(c["hour_start"], START_EPOCH_S + 3600 * hours)
    np.testing.assert_array_equal(c["hour"], hours % 24)
    np.testing.assert_array_equal(c["weekday"], (hours // 24) % 7)  # 2024-01-01 was a Monday
    for name in ("weather", "temperature", "is_holiday"):
        per_hour = c[name][: n - n % shops].reshape(-1, shops)
        assert (per_hour == per_hour[:, :1]).all(), name
    assert len(np.unique(c["weather"][: n - n % 21].reshape(-1, 21))) > 1
    # The sky comes in 3-hour spells; within a wet one the temperature picks rain or snow.
    sky = np.minimum(c["weather"], 2)[: n - n % (3 * shops)].reshape(-1, 3 * shops)
    assert (sky == sky[:, :1]).all()
    assert set(np.unique(c["weather"]).tolist()) <= {0, 1, 2, 3}
    assert 0.0 < c["is_holiday"].mean() < 0.1 and 0.0 < c["promo"].mean() < 0.3
    other = columns(source, 1)
    assert set(np.unique(other["shop_id"]).tolist()) == {7, 8, 9}  # ids unique per stream
    assert not np.array_equal(other["weather"][:300:3], c["weather"][:700:7])


def test_delivery_post_hour_columns_give_the_label_away():
    c = columns(stream("delivery", "rows=60000&noise=0", 1))
    capacity = ORDERS_PER_COURIER * c["couriers_scheduled"]
    np.testing.assert_array_equal(c["busy"], c["orders"] > capacity)
    busy = c["busy"] == 1
    np.testing.assert_array_equal(c["couriers_busy"][busy], c["couriers_scheduled"][busy])
    assert c["avg_delivery_minutes"][busy].mean() > c["avg_delivery_minutes"][~busy].mean() + 10
    noisy = columns(stream("delivery", "rows=60000&noise=0.1", 1))
    leak = noisy["orders"] > ORDERS_PER_COURIER * noisy["couriers_scheduled"]
    assert abs(accuracy(leak, noisy["busy"]) - 0.9) < 0.01


def lookup_oracle(c: dict[str, np.ndarray], fit: np.ndarray):
    """Majority label per (shop type, hour, promo, wet weather), fitted on rows `fit`."""
    key = ((c["shop_type"] * 24 + c["hour"]) * 2 + c["promo"]) * 2 + (c["weather"] >= 2)
    key = key.astype(np.int64)
    size = int(key.max()) + 1
    count = np.bincount(key[fit], minlength=size)
    positive = np.bincount(key[fit], weights=c["busy"][fit], minlength=size)
    majority = positive > count / 2
    return lambda rows: accuracy(majority[key[rows]], c["busy"][rows])


@pytest.mark.parametrize("seed", [0, 1])
def test_delivery_rules_change_at_drift_at(seed):
    source = stream("delivery", "rows=200000", 1, seed=seed)
    c = columns(source)
    switch = source.switch_offset(0)
    assert switch == 100_000 and switch % source.generator.shops(0) == 0
    offsets = np.arange(len(c["busy"]))
    before, after = offsets < switch, offsets >= switch
    old_rules = lookup_oracle(c, offsets < switch // 2)
    held_out = before & (offsets >= switch // 2)
    assert old_rules(held_out) > 0.78
    assert old_rules(after) < old_rules(held_out) - 0.1
    new_rules = lookup_oracle(c, after & (offsets < switch + switch // 2))
    assert new_rules(after & (offsets >= switch + switch // 2)) > 0.78
    for rows in (before, after):
        assert 0.15 < c["busy"][rows].mean() < 0.5


def test_delivery_switch_is_rounded_up_to_a_whole_hour():
    source = stream("delivery", "rows=10000&shops=7&drift_at=0.3,none", 2)
    assert source.switch_offset(0) == 1505  # 0.3 * 5000 = 1500, rounded up to 215 * 7
    assert source.switch_offset(1) is None


def test_delivery_partitions_are_cities_with_their_own_shop_mix():
    source = stream("delivery", "rows=40000&shops=40,15", 4)
    generator = source.generator
    assert isinstance(generator, DeliveryGenerator)
    tables = [generator.shop_table(p) for p in range(4)]
    assert [len(t.types) for t in tables] == [40, 15, 40, 15]
    assert [t.first_id for t in tables] == [0, 40, 55, 95]
    mixes = np.stack([t.mix for t in tables])
    assert np.ptp(mixes, axis=0).max() > 0.1
    assert len({t.climate for t in tables}) == 4
    busy = [columns(source, p)["busy"].mean() for p in range(4)]
    assert all(0.1 < share < 0.5 for share in busy)


# --- the rate option: live partitions ------------------------------------------------------


class FakeClock:
    """A clock that moves only when told to, and a sleep that moves it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def live_reader(query: str, offset: int = 0) -> tuple[SyntheticPartitionReader, FakeClock]:
    clock = FakeClock()
    source = stream("sea", query, partitions=1)
    return SyntheticPartitionReader(source, 0, offset, clock=clock, sleep=clock.sleep), clock


def test_rate_makes_rows_available_over_time_from_the_open_offset():
    reader, clock = live_reader("rows=10000&rate=1000", offset=100)
    assert reader.high_watermark() == 100
    clock.now += 0.5
    assert reader.high_watermark() == 600
    read = reader.read_batch(10_000)
    assert read is not None and (read.first_offset, read.next_offset) == (100, 600)
    clock.now += 2.0
    read = reader.read_batch(300)
    assert read is not None and read.batch.num_rows == 300
    assert reader.high_watermark() - reader.position == 1700  # the lag of a slow reader
    clock.now += 100.0
    assert reader.high_watermark() == 10_000  # capped at the partition's rows


def test_rate_rows_are_the_bounded_streams_rows():
    reader, clock = live_reader("rows=5000&rate=100", offset=0)
    clock.now += 60.0
    bounded = read_table(stream("sea", "rows=5000", 1).open(0))
    assert read_table(reader).equals(bounded)


def test_rate_answers_an_empty_batch_when_nothing_arrives_within_max_wait():
    reader, clock = live_reader("rows=1000&rate=10", offset=40)  # a row every 0.1 s
    read = reader.read_batch(5)
    assert read is not None and read.batch.num_rows == 0 and read.first_offset == 40
    assert read.batch.schema.equals(sea_schema().arrow_schema()) and not clock.sleeps
    read = reader.read_batch(5, max_wait_s=0.04)
    assert read is not None and read.batch.num_rows == 0 and read.next_offset == 40
    assert clock.sleeps == [0.04]
    read = reader.read_batch(5, max_wait_s=10.0)  # sleeps only until the next row is due
    assert read is not None and read.batch.num_rows == 1 and read.first_offset == 40
    assert clock.sleeps[1] == pytest.approx(0.06)
    assert reader.position == 41


def test_rate_partition_still_ends_after_its_rows():
    reader, clock = live_reader("rows=50&rate=5", offset=45)
    clock.now += 1.0
    read = reader.read_batch(100, max_wait_s=1.0)
    assert read is not None and read.next_offset == 50
    assert reader.read_batch(100, max_wait_s=5.0) is None
    assert not clock.sleeps  # nothing more will come, so it does not wait


def test_without_rate_partitions_are_bounded_and_never_wait():
    source = stream("sea", "rows=100&rate=none", 1)
    assert source.rate is None
    reader = source.open(0, None)
    assert reader.position == 0 and reader.high_watermark() == 100
    read = reader.read_batch(1000, max_wait_s=30.0)
    assert read is not None and read.batch.num_rows == 100
    assert reader.read_batch(10, max_wait_s=30.0) is None
    with pytest.raises(ConfigError, match="max_wait_s"):
        reader.read_batch(10, max_wait_s=-1.0)


def test_rate_applies_to_every_generator():
    for name in GENERATORS:
        source = stream(name, "rows=1000&rate=250.5")
        assert source.rate == 250.5
        assert source.open(0).high_watermark() < 500


def test_rate_waits_on_the_real_clock():
    # The real clock and sleep are what this checks, so it waits for real (about 50 ms).
    reader = stream("sea", "rows=100000&rate=1000", 1).open(0, None)
    started = time.monotonic()
    read = reader.read_batch(10, max_wait_s=5.0)
    assert read is not None and read.batch.num_rows >= 1
    assert time.monotonic() - started < 2.5  # waited for the next row, not for max_wait_s
    mark = reader.high_watermark()
    # The stream makes 1,000 rows/s by the clock: the time passing is what is measured.
    time.sleep(0.05)  # the elapsed time itself is what is measured
    assert reader.high_watermark() >= mark + 45
