"""``synthetic://delivery``: is a delivery shop busy this hour? With a leak to avoid.

Each row is one shop-hour. A partition is a city: its own shops (``shops`` of them, ids
unique over the stream), its own mix of shop types (drawn per partition from the seed,
so partitions differ), its own climate. Rows run hour by hour from 2024-01-01 00:00 UTC,
every shop of the city once per hour, so offset ``r`` is shop ``r % shops`` at hour
``r // shops``.

Columns, in batch order:

* ``shop_id`` (int64, the schema's key) and ``hour_start`` (timestamp[s, UTC], the
  schema's event time): carried, not learned from.
* Known *before* the hour, the features: ``hour`` (0..23), ``weekday`` (0 = Monday),
  ``shop_type`` (0 restaurant, 1 grocery, 2 pharmacy, 3 convenience store), ``weather``
  (0 clear, 1 cloudy, 2 rain, 3 snow; shared by the city, in 3-hour spells), ``temperature``
  (°C, seasonal and daily cycles), ``is_holiday`` (0/1, the same days in every city),
  ``promo`` (0/1, a promotion planned for the hour), ``shop_rating`` (1..5) and
  ``couriers_scheduled`` (couriers on shift). All float32.
* Known only *after* the hour: ``orders``, ``avg_delivery_minutes`` and ``couriers_busy``
  (float32).
* The float32 label ``busy``: 1 when the hour's orders exceeded what the scheduled
  couriers deliver (`ORDERS_PER_COURIER` each), then flipped with the partition's
  ``noise`` probability.

The hidden rules. Orders are Poisson around a demand built from the pre-hour features: the
shop's popularity (seen only through its rating) times an hourly profile per shop type,
times multipliers for weather, promotion, weekend, holiday and heat. Before the drift,
restaurants peak at lunch and dinner, groceries in the early evening, rain and snow raise
demand and a promotion adds 40%. At ``drift_at`` (rounded up to the next hour, so one
hour of a city follows one rule) the rules change: lunch fades, restaurants and
convenience stores peak late at night, groceries in the morning, pharmacies stay open
late, weather no longer matters much and promotions stop working. A model of the old
rules keeps predicting lunch rushes that no longer come.

**The trap.** ``orders``, ``avg_delivery_minutes`` and ``couriers_busy`` are in every
batch and all but give the label away (``busy`` is ``orders > 4 * couriers_scheduled``
before the flip), but they are measured *during* the hour being predicted: a model
serving a prediction at the start of the hour cannot know them. They are therefore not
features by default; they are carried so that a pipeline can join them later (to
evaluate or backfill), and so that a test can show what goes wrong when they are used.
``leaky=true`` makes them features: such a model scores near ``1 - noise`` in training
and prequential evaluation, then is useless when served, where the columns are unknown.

Options: ``shops`` (shops per partition, an integer >= 1 or a comma list cycled over
partitions, default 40), ``drift_at`` (default 0.5), ``noise`` (flip probability in
[0, 1], default 0.05), ``leaky`` (true/false, default false), ``rows``, ``rate``.

Randomness: a partition's shops and climate come from spawn key ``(6, p)``, the per
shop-hour draws of block ``b`` (schedules, promotions, orders, delivery times, label
flips) from ``(7, p, b)``. What a whole city shares in an hour (weather spells, the day's
temperature offset, holidays) must not depend on which block a row falls in, so it is a
counter-based hash of (seed, what, partition, spell or day) rather than a block draw.

Example:
    >>> from pipelines.sources import SourceSpec, open_source
    >>> source = open_source(SourceSpec("synthetic://delivery?rows=480&shops=10", 2))
    >>> source.schema.key, source.schema.event_time, "orders" in source.schema.features
    ('shop_id', 'hour_start', False)
    >>> batch = source.open(1).read_batch(12).batch
    >>> batch.column("shop_id").to_pylist()[9:], batch.column("hour")[10].as_py()
    ([19, 10, 11], 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from actors.errors import ConfigError
from pipelines.schema import StreamSchema
from pipelines.sources._synthetic_base import (
    BLOCK_ROWS,
    PartitionLayout,
    PerPartitionDrift,
    block_offsets,
    block_rng,
    drifted,
    frozen,
)
from pipelines.sources._synthetic_options import (
    check_drift_at,
    check_flip_noise,
    check_rows,
    cycled,
    parse_bool,
    parse_drift_at,
    parse_flip_noise,
    parse_ints,
    parse_rows,
    query_values,
)
from pipelines.sources.base import SourceSpec

__all__ = [
    "POST_HOUR_COLUMNS",
    "PRE_HOUR_FEATURES",
    "SHOP_TYPES",
    "WEATHER",
    "DeliveryGenerator",
    "DeliveryOptions",
    "ShopTable",
    "delivery_schema",
]

SHOP_TYPES = ("restaurant", "grocery", "pharmacy", "convenience")
"""Names of the ``shop_type`` codes 0..3."""

WEATHER = ("clear", "cloudy", "rain", "snow")
"""Names of the ``weather`` codes 0..3."""

PRE_HOUR_FEATURES = (
    "hour",
    "weekday",
    "shop_type",
    "weather",
    "temperature",
    "is_holiday",
    "promo",
    "shop_rating",
    "couriers_scheduled",
)
"""Features known before the hour: the only ones a served model can have."""

POST_HOUR_COLUMNS = ("orders", "avg_delivery_minutes", "couriers_busy")
"""Measured during the hour: in every batch, features only with ``leaky=true``."""

ORDERS_PER_COURIER = 4.0
"""Orders one courier delivers in an hour; more orders than the shift delivers is busy."""

START_EPOCH_S = 1_704_067_200
"""``hour_start`` of offset 0: 2024-01-01 00:00 UTC, a Monday."""

_OPTIONS = ("shops", "drift_at", "noise", "leaky", "rows")
_SHOPS_PREFIX = 6
_ROWS_PREFIX = 7
# Streams of the counter-based hash, for what a city shares whichever block a row is in.
_DAY_TEMPERATURE, _WEATHER_SPELL, _HOLIDAY = 1, 2, 3
_SPELL_HOURS = 3
_HOLIDAY_PROBABILITY = 0.03
_HOT_C = 25.0


def delivery_schema(leaky: bool = False) -> StreamSchema:
    """The schema of a delivery stream: pre-hour features (plus post-hour ones if leaky).

    Args:
        leaky: also list `POST_HOUR_COLUMNS` as features (the serving trap).
    """
    features = PRE_HOUR_FEATURES + (POST_HOUR_COLUMNS if leaky else ())
    return StreamSchema(features=features, label="busy", key="shop_id", event_time="hour_start")


def _arrow_schema() -> pa.Schema:
    """Every column of a delivery batch; the same whether or not the stream is leaky."""
    return pa.schema(
        [
            pa.field("shop_id", pa.int64()),
            pa.field("hour_start", pa.timestamp("s", tz="UTC")),
            *(pa.field(name, pa.float32()) for name in PRE_HOUR_FEATURES + POST_HOUR_COLUMNS),
            pa.field("busy", pa.float32()),
        ]
    )


def _profile(base: float, *spans: tuple[int, int, float]) -> np.ndarray:
    """24 hourly demand levels: `base`, then each ``(start, stop, level)``; stop may pass 24."""
    levels = np.full(24, base)
    for start, stop, level in spans:
        levels[np.arange(start, stop) % 24] = level
    return levels


@dataclass(frozen=True)
class _Rules:
    """One concept: demand multipliers, indexed by shop type (or weather code)."""

    profiles: np.ndarray  # (shop type, hour)
    weather: np.ndarray  # (weather code,)
    promo: float
    weekend: np.ndarray
    holiday: np.ndarray
    heat: np.ndarray


# What does not change at the drift: weekends, holidays and hot days, per shop type.
_WEEKEND = np.array([1.25, 1.15, 0.8, 1.1])
_HOLIDAY_DEMAND = np.array([1.3, 1.1, 0.6, 1.2])
_HEAT = np.array([1.0, 1.05, 1.0, 1.35])


_BEFORE = _Rules(
    profiles=np.stack(
        [
            _profile(
                0.15, (7, 11, 0.4), (11, 14, 1.3), (14, 18, 0.5), (18, 22, 1.5), (22, 24, 0.45)
            ),
            _profile(0.1, (7, 10, 0.5), (10, 17, 0.8), (17, 21, 1.35), (21, 23, 0.4)),
            _profile(0.05, (8, 20, 0.8), (17, 19, 1.2)),
            _profile(0.3, (7, 18, 0.6), (18, 24, 1.25), (24, 26, 0.7)),
        ]
    ),
    weather=np.array([1.0, 1.05, 1.45, 1.6]),
    promo=1.4,
    weekend=_WEEKEND,
    holiday=_HOLIDAY_DEMAND,
    heat=_HEAT,
)
# Lunch fades, the night grows, weather and promotions stop mattering.
_AFTER = _Rules(
    profiles=np.stack(
        [
            _profile(
                0.15, (7, 11, 0.4), (11, 14, 0.6), (14, 19, 0.5), (19, 24, 1.4), (24, 26, 1.25)
            ),
            _profile(0.1, (6, 10, 1.35), (10, 17, 0.6), (17, 21, 0.65), (21, 23, 0.4)),
            _profile(0.05, (8, 20, 0.8), (20, 24, 1.25)),
            _profile(0.3, (7, 18, 0.6), (18, 22, 0.75), (22, 28, 1.4)),
        ]
    ),
    weather=np.array([1.0, 1.0, 1.0, 1.15]),
    promo=1.0,
    weekend=_WEEKEND,
    holiday=_HOLIDAY_DEMAND,
    heat=_HEAT,
)


@dataclass(frozen=True)
class DeliveryOptions:
    """Options of ``synthetic://delivery``; see the module docstring for their meaning.

    Args:
        shops: shops per partition (each >= 1), cycled over partitions.
        drift_at: per partition, cycled: the fraction of the partition's rows after which
            the rules change (rounded up to a whole hour), in [0, 1], or None.
        noise: label-flip probabilities, one per partition, cycled.
        leaky: also make the post-hour columns features.
        rows: total rows over all partitions; None defers to `SourceSpec.rows`.

    Raises:
        ConfigError: if a value is out of range.
    """

    shops: tuple[int, ...] = (40,)
    drift_at: tuple[float | None, ...] = (0.5,)
    noise: tuple[float, ...] = (0.05,)
    leaky: bool = False
    rows: int | None = None

    def __post_init__(self) -> None:
        if not self.shops:
            raise ConfigError("shops must list at least one number of shops >= 1")
        for count in self.shops:
            if count < 1:
                raise ConfigError(
                    f"shops ({count}) must be a number of shops >= 1 per partition "
                    "(a comma list gives one per partition, cycled)"
                )
        check_drift_at(self.drift_at)
        check_flip_noise(self.noise)
        check_rows(self.rows)

    @classmethod
    def from_query(cls, query: str) -> DeliveryOptions:
        """Parse a URI query string such as ``shops=20,50&drift_at=0.6&leaky=true``.

        Raises:
            ConfigError: on an unknown or repeated option, or a value that does not parse or
                is out of range; the message names the option, the value and what is expected.
        """
        values = query_values(query, "delivery", _OPTIONS)
        return cls(
            shops=(
                parse_ints("shops", values["shops"], "comma-separated numbers of shops >= 1")
                if "shops" in values
                else cls.shops
            ),
            drift_at=parse_drift_at(values["drift_at"]) if "drift_at" in values else cls.drift_at,
            noise=parse_flip_noise(values, cls.noise),
            leaky=parse_bool("leaky", values["leaky"]) if "leaky" in values else cls.leaky,
            rows=parse_rows(values),
        )


@dataclass(frozen=True)
class ShopTable:
    """The shops of one partition (a city), drawn from the seed.

    Attributes:
        first_id: ``shop_id`` of the partition's first shop; ids are consecutive.
        mix: the city's probability of each shop type (the per-partition difference).
        types: shop type code of each shop.
        popularity: each shop's typical peak orders per hour (hidden; the rating hints).
        fleet: couriers each shop usually schedules, sized to its popularity.
        rating: each shop's public rating, 1..5.
        promo_rate: how often each shop runs a promotion in an hour.
        climate: the city's temperature offset, °C.
    """

    first_id: int
    mix: np.ndarray
    types: np.ndarray
    popularity: np.ndarray
    fleet: np.ndarray
    rating: np.ndarray
    promo_rate: np.ndarray
    climate: float

    @classmethod
    def draw(cls, seed: int, partition: int, shops: int, first_id: int) -> ShopTable:
        """The shops of `partition`, from spawn key ``(6, partition)``."""
        rng = np.random.default_rng(
            np.random.SeedSequence(seed, spawn_key=(_SHOPS_PREFIX, partition))
        )
        mix = rng.dirichlet(np.full(len(SHOP_TYPES), 2.0))
        types = rng.choice(len(SHOP_TYPES), size=shops, p=mix)
        type_scale = np.array([1.0, 0.9, 0.6, 0.8])[types]
        popularity = type_scale * np.exp(rng.normal(math.log(14.0), 0.35, shops))
        fleet = np.maximum(
            1, np.round(popularity * rng.uniform(0.8, 1.2, shops) / ORDERS_PER_COURIER)
        )
        standardised = np.log(popularity / (14.0 * type_scale)) / 0.35
        rating = np.clip(3.8 + 0.4 * standardised + rng.normal(0.0, 0.3, shops), 1.0, 5.0)
        return cls(
            first_id=first_id,
            mix=mix,
            types=types,
            popularity=popularity,
            fleet=fleet,
            rating=np.round(rating, 1),
            promo_rate=rng.uniform(0.0, 0.25, shops),
            climate=float(rng.normal(0.0, 4.0)),
        )


class DeliveryGenerator(PerPartitionDrift):
    """The rows of ``synthetic://delivery``: shop-hours, busy or not.

    Args:
        options: the stream's options.
        seed: the stream's seed; draws the shops, the weather and every block.
        layout: rows per partition, which places each partition's switch.
    """

    def __init__(self, options: DeliveryOptions, seed: int, layout: PartitionLayout) -> None:
        self.options = options
        self.seed = seed
        self.layout = layout
        self.schema = delivery_schema(options.leaky)
        self.arrow_schema = _arrow_schema()
        self._tables: dict[int, ShopTable] = {}

    @classmethod
    def from_spec(cls, spec: SourceSpec, query: str) -> DeliveryGenerator:
        """The generator of `spec`, with options parsed from the URI's `query`."""
        options = DeliveryOptions.from_query(query)
        return cls(options, spec.seed, PartitionLayout.of(spec, options.rows))

    def shops(self, partition: int) -> int:
        """Number of shops of `partition`."""
        return cycled(self.options.shops, partition)

    def switch_offset(self, partition: int) -> int | None:
        """First offset under the new rules, at an hour's first shop; None for no switch."""
        offset = self.layout.switch_offset(partition, self.options.drift_at)
        if offset is None:
            return None
        shops = self.shops(partition)
        return min(self.layout.partition_rows(partition), -(-offset // shops) * shops)

    def shop_table(self, partition: int) -> ShopTable:
        """The shops of `partition` (drawn once, then kept)."""
        table = self._tables.get(partition)
        if table is None:
            first_id = sum(self.shops(p) for p in range(partition))
            table = ShopTable.draw(self.seed, partition, self.shops(partition), first_id)
            self._tables[partition] = table
        return table

    def generate_columns(self, partition: int, block: int) -> dict[str, np.ndarray]:
        """Rows ``block * BLOCK_ROWS ..`` of `partition`: every column of `arrow_schema`."""
        table = self.shop_table(partition)
        offsets = block_offsets(block)
        hours, shop = np.divmod(offsets, self.shops(partition))
        days, hour = np.divmod(hours, 24)
        temperature = np.round(
            11.0 * np.sin(2.0 * math.pi * (days - 105) / 365.25)
            + 4.0 * np.sin(2.0 * math.pi * (hour - 9) / 24.0)
            + 11.0
            + table.climate
            + 6.0 * (self._city_uniform(_DAY_TEMPERATURE, partition, days) - 0.5),
            1,
        )
        sky = self._city_uniform(_WEATHER_SPELL, partition, hours // _SPELL_HOURS)
        weather = np.where(sky < 0.5, 0, np.where(sky < 0.75, 1, np.where(temperature < 1, 3, 2)))
        holiday = self._city_uniform(_HOLIDAY, 0, days) < _HOLIDAY_PROBABILITY  # every city

        rng = block_rng(self.seed, _ROWS_PREFIX, partition, block)
        couriers = np.maximum(1, table.fleet[shop] + rng.integers(-1, 2, BLOCK_ROWS))
        promo = rng.random(BLOCK_ROWS) < table.promo_rate[shop]
        minutes_noise = rng.normal(0.0, 3.0, BLOCK_ROWS)
        flip = rng.random(BLOCK_ROWS) < self.noise(partition)
        types = table.types[shop]
        weekday = days % 7
        situation = (types, hour, weather, promo, weekday >= 5, holiday, temperature > _HOT_C)
        demand = table.popularity[shop] * np.where(
            drifted(offsets, self.switch_offset(partition)),
            _demand(_AFTER, *situation),
            _demand(_BEFORE, *situation),
        )
        orders = rng.poisson(demand)  # last: its draws depend on the demand
        capacity = ORDERS_PER_COURIER * couriers
        load = orders / capacity
        # An overloaded shift delivers late, up to about two hours.
        minutes = 20.0 + 30.0 * np.clip(load - 0.75, 0.0, 3.0) + 4.0 * (weather >= 2)
        columns = {
            "shop_id": table.first_id + shop,
            "hour_start": START_EPOCH_S + 3600 * hours,
            "hour": hour,
            "weekday": weekday,
            "shop_type": types,
            "weather": weather,
            "temperature": temperature,
            "is_holiday": holiday,
            "promo": promo,
            "shop_rating": table.rating[shop],
            "couriers_scheduled": couriers,
            "orders": orders,
            "avg_delivery_minutes": np.maximum(8.0, minutes + minutes_noise),
            "couriers_busy": np.minimum(couriers, np.ceil(orders / ORDERS_PER_COURIER)),
            "busy": (orders > capacity) ^ flip,
        }
        as_float = {
            name: np.asarray(values, dtype=np.float32)
            for name, values in columns.items()
            if name not in ("shop_id", "hour_start")
        }
        return frozen(
            {
                "shop_id": np.asarray(columns["shop_id"], dtype=np.int64),
                "hour_start": np.asarray(columns["hour_start"], dtype=np.int64),
                **as_float,
            }
        )

    def _city_uniform(self, what: int, partition: int, counters: np.ndarray) -> np.ndarray:
        """Uniform [0, 1) draws keyed by (seed, what, partition, counter), not by block."""
        return _counter_uniform((self.seed, what, partition), counters)


def _demand(
    rules: _Rules,
    types: np.ndarray,
    hour: np.ndarray,
    weather: np.ndarray,
    promo: np.ndarray,
    weekend: np.ndarray,
    holiday: np.ndarray,
    hot: np.ndarray,
) -> np.ndarray:
    """Expected orders per unit of popularity under `rules`."""
    return np.asarray(
        rules.profiles[types, hour]
        * rules.weather[weather]
        * np.where(promo, rules.promo, 1.0)
        * np.where(weekend, rules.weekend[types], 1.0)
        * np.where(holiday, rules.holiday[types], 1.0)
        * np.where(hot, rules.heat[types], 1.0)
    )


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective scramble of uint64 (wraps, as intended)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return np.asarray(z ^ (z >> np.uint64(31)))


def _counter_uniform(keys: tuple[int, ...], counters: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) floats, a pure function of `keys` and each (non-negative) counter."""
    z = np.zeros(counters.shape, dtype=np.uint64)
    for key in (*keys, None):
        z = _splitmix64(z ^ (counters.astype(np.uint64) if key is None else np.uint64(key)))
    return np.asarray((z >> np.uint64(11)).astype(np.float64) * 2.0**-53)
