"""``synthetic://agrawal``: loan applicants and the ten classification functions of Agrawal et al.

The nine attributes of R. Agrawal, T. Imielinski and A. Swami, "Database Mining: A
Performance Perspective" (IEEE TKDE 5(6), 1993), drawn as River's ``synth.Agrawal`` and
MOA's ``AgrawalGenerator`` draw them, all float32 (the categoricals as integer codes):

==========  ===============================================================
salary      uniform in [20 000, 150 000]
commission  0 if salary >= 75 000, else uniform in [10 000, 75 000]
age         integer, uniform in 20..80
elevel      education level, integer code 0..4
car         car make, integer code 1..20
zipcode     integer code 0..8
hvalue      house value, uniform in [0.5, 1.5] * (9 - zipcode) * 100 000
hyears      years owned, integer 1..30
loan        uniform in [0, 500 000]
==========  ===============================================================

The float32 label is 1 when the applicant is in the paper's *Group A* under the active
classification function, 0 otherwise. The functions are numbered 0..9 here (the paper's
1..10): 0 and 1 age bands and salary bands, 2 and 3 add the education level, 4 the loan,
5 total salary, 6 to 9 a disposable income (label 1 when it is > 0) with loan, education
and home equity terms. MOA codes Group A as 0 and River mixes both codings (and has typos
in function 4); here Group A is always 1. Labels are computed in float64 from the float32
attribute values, so `group_a` applied to a batch reproduces its clean labels.

Each partition starts on ``function`` and switches abruptly at ``drift_at`` to
``drift_function`` (both comma lists cycled over partitions), then each label is flipped
with the partition's ``noise`` probability. ``perturbation`` is River's attribute noise:
after labelling, salary, commission (when > 0), age, hvalue, hyears and loan each move by
up to ``perturbation`` times their range, uniformly, clipped to it (age and hyears
rounded), so the rule holds on the unperturbed values only.

Options: ``function`` (0..9, default 0), ``drift_function`` (0..9, default 2),
``drift_at`` (default 0.5), ``noise`` (flip probability in [0, 1], default 0.0),
``perturbation`` (in [0, 1], default 0.0), ``rows``, ``rate``. Rows of block ``b`` of
partition ``p`` come from spawn key ``(5, p, b)``.

Example:
    >>> from pipelines.sources import SourceSpec, open_source
    >>> source = open_source(SourceSpec("synthetic://agrawal?rows=100", partitions=1))
    >>> source.schema.features[:3], source.open(0).read_batch(5).batch.num_rows
    (('salary', 'commission', 'age'), 5)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

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
    check_choices,
    check_drift_at,
    check_flip_noise,
    check_rows,
    cycled,
    parse_drift_at,
    parse_flip_noise,
    parse_float,
    parse_ints,
    parse_rows,
    query_values,
)
from pipelines.sources.base import SourceSpec

__all__ = ["AGRAWAL_FEATURES", "AgrawalGenerator", "AgrawalOptions", "agrawal_schema", "group_a"]

AGRAWAL_FEATURES = (
    "salary",
    "commission",
    "age",
    "elevel",
    "car",
    "zipcode",
    "hvalue",
    "hyears",
    "loan",
)
FUNCTIONS = 10

_OPTIONS = ("function", "drift_function", "drift_at", "noise", "perturbation", "rows")
_SPAWN_PREFIX = 5

_Columns = Mapping[str, np.ndarray]


def agrawal_schema() -> StreamSchema:
    """The schema of an Agrawal stream: the nine attributes, label ``label``."""
    return StreamSchema(features=AGRAWAL_FEATURES, label="label")


def _within(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.asarray((low <= values) & (values <= high))


def _by_age(age: np.ndarray, young: np.ndarray, middle: np.ndarray, old: np.ndarray) -> np.ndarray:
    """`young` below 40, `middle` from 40 to 59, `old` from 60 on."""
    return np.asarray(np.where(age < 40, young, np.where(age < 60, middle, old)))


def _salary_bands(age: np.ndarray, pay: np.ndarray) -> np.ndarray:
    """Functions 1 and 5: a pay band per age band."""
    return _by_age(
        age,
        _within(pay, 50_000, 100_000),
        _within(pay, 75_000, 125_000),
        _within(pay, 25_000, 75_000),
    )


def _education_bands(elevel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which education levels form each age band's group in functions 2 and 3."""
    return elevel <= 1, (elevel >= 1) & (elevel <= 3), elevel >= 2


def _f0(c: _Columns) -> np.ndarray:
    return np.asarray((c["age"] < 40) | (c["age"] >= 60))


def _f1(c: _Columns) -> np.ndarray:
    return _salary_bands(c["age"], c["salary"])


def _f2(c: _Columns) -> np.ndarray:
    return _by_age(c["age"], *_education_bands(c["elevel"]))


def _f3(c: _Columns) -> np.ndarray:
    young, middle, old = _education_bands(c["elevel"])
    salary = c["salary"]
    low, mid, high = (
        _within(salary, 25_000, 75_000),
        _within(salary, 50_000, 100_000),
        _within(salary, 75_000, 125_000),
    )
    return _by_age(
        c["age"],
        np.where(young, low, mid),
        np.where(middle, mid, high),
        np.where(old, mid, low),
    )


def _f4(c: _Columns) -> np.ndarray:
    salary, loan = c["salary"], c["loan"]
    return _by_age(
        c["age"],
        np.where(
            _within(salary, 50_000, 100_000),
            _within(loan, 100_000, 300_000),
            _within(loan, 200_000, 400_000),
        ),
        np.where(
            _within(salary, 75_000, 125_000),
            _within(loan, 200_000, 400_000),
            _within(loan, 300_000, 500_000),
        ),
        np.where(
            _within(salary, 25_000, 75_000),
            _within(loan, 300_000, 500_000),
            _within(loan, 100_000, 300_000),
        ),
    )


def _f5(c: _Columns) -> np.ndarray:
    return _salary_bands(c["age"], c["salary"] + c["commission"])


def _disposable(c: _Columns) -> np.ndarray:
    return np.asarray(2.0 * (c["salary"] + c["commission"]) / 3.0)


def _f6(c: _Columns) -> np.ndarray:
    return np.asarray(_disposable(c) - c["loan"] / 5.0 - 20_000 > 0)


def _f7(c: _Columns) -> np.ndarray:
    return np.asarray(_disposable(c) - 5_000 * c["elevel"] - 20_000 > 0)


def _f8(c: _Columns) -> np.ndarray:
    return np.asarray(_disposable(c) - 5_000 * c["elevel"] - c["loan"] / 5.0 - 10_000 > 0)


def _f9(c: _Columns) -> np.ndarray:
    hyears = c["hyears"]
    equity = np.where(hyears >= 20, c["hvalue"] * (hyears - 20) / 10.0, 0.0)
    return np.asarray(_disposable(c) - 5_000 * c["elevel"] + equity / 5.0 - 10_000 > 0)


_FUNCTIONS: tuple[Callable[[_Columns], np.ndarray], ...] = (
    _f0,
    _f1,
    _f2,
    _f3,
    _f4,
    _f5,
    _f6,
    _f7,
    _f8,
    _f9,
)


def group_a(function: int, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Whether each applicant is in Group A under classification `function` (0..9).

    Args:
        function: the classification function, 0..9 (the paper's 1..10).
        columns: the nine attributes by name (arrays of equal length; extra keys ignored).

    Returns:
        A boolean array: the clean label of each row.

    Raises:
        ConfigError: on a function outside 0..9.
    """
    if function not in range(FUNCTIONS):
        raise ConfigError(f"function ({function}) must be an Agrawal function in 0..9")
    as_float = {name: np.asarray(columns[name], dtype=np.float64) for name in AGRAWAL_FEATURES}
    return np.asarray(_FUNCTIONS[function](as_float), dtype=bool)


@dataclass(frozen=True)
class AgrawalOptions:
    """Options of ``synthetic://agrawal``; see the module docstring for their meaning.

    Args:
        function: per partition, cycled: the classification function (0..9) before the
            switch.
        drift_function: per partition, cycled: the function after the switch.
        drift_at: per partition, cycled: the fraction of the partition's rows after which
            the function switches, in [0, 1], or None for no switch.
        noise: label-flip probabilities, one per partition, cycled.
        perturbation: attribute noise, a fraction of each attribute's range in [0, 1].
        rows: total rows over all partitions; None defers to `SourceSpec.rows`.

    Raises:
        ConfigError: if a value is out of range.
    """

    function: tuple[int, ...] = (0,)
    drift_function: tuple[int, ...] = (2,)
    drift_at: tuple[float | None, ...] = (0.5,)
    noise: tuple[float, ...] = (0.0,)
    perturbation: float = 0.0
    rows: int | None = None

    def __post_init__(self) -> None:
        check_choices("function", self.function, FUNCTIONS, "classification function")
        check_choices("drift_function", self.drift_function, FUNCTIONS, "classification function")
        check_drift_at(self.drift_at)
        check_flip_noise(self.noise)
        if not (math.isfinite(self.perturbation) and 0.0 <= self.perturbation <= 1.0):
            raise ConfigError(
                f"perturbation ({self.perturbation}) must be a fraction of each attribute's "
                "range in [0, 1]"
            )
        check_rows(self.rows)

    @classmethod
    def from_query(cls, query: str) -> AgrawalOptions:
        """Parse a URI query string such as ``function=1&drift_function=4,5&noise=0.05``.

        Raises:
            ConfigError: on an unknown or repeated option, or a value that does not parse or
                is out of range; the message names the option, the value and what is expected.
        """
        values = query_values(query, "agrawal", _OPTIONS)
        functions = {
            name: parse_ints(name, values[name], "comma-separated functions in 0..9")
            for name in ("function", "drift_function")
            if name in values
        }
        return cls(
            function=functions.get("function", cls.function),
            drift_function=functions.get("drift_function", cls.drift_function),
            drift_at=parse_drift_at(values["drift_at"]) if "drift_at" in values else cls.drift_at,
            noise=parse_flip_noise(values, cls.noise),
            perturbation=(
                parse_float("perturbation", values["perturbation"], "a fraction in [0, 1]")
                if "perturbation" in values
                else cls.perturbation
            ),
            rows=parse_rows(values),
        )


class AgrawalGenerator(PerPartitionDrift):
    """The rows of ``synthetic://agrawal``: nine applicant attributes, 0/1 labels.

    Args:
        options: the stream's options.
        seed: the stream's seed; draws every block.
        layout: rows per partition, which places each partition's switch.
    """

    def __init__(self, options: AgrawalOptions, seed: int, layout: PartitionLayout) -> None:
        self.options = options
        self.seed = seed
        self.layout = layout
        self.schema = agrawal_schema()
        self.arrow_schema = self.schema.arrow_schema()

    @classmethod
    def from_spec(cls, spec: SourceSpec, query: str) -> AgrawalGenerator:
        """The generator of `spec`, with options parsed from the URI's `query`."""
        options = AgrawalOptions.from_query(query)
        return cls(options, spec.seed, PartitionLayout.of(spec, options.rows))

    def function(self, partition: int, offset: int) -> int:
        """The classification function in force at `offset` of `partition`."""
        switch = self.switch_offset(partition)
        before = switch is None or offset < switch
        return cycled(self.options.function if before else self.options.drift_function, partition)

    def generate_columns(self, partition: int, block: int) -> dict[str, np.ndarray]:
        """Rows ``block * BLOCK_ROWS ..`` of `partition`: the nine attributes and ``label``."""
        rng = block_rng(self.seed, _SPAWN_PREFIX, partition, block)
        n = BLOCK_ROWS
        salary = 20_000 + 130_000 * rng.random(n)
        commission = np.where(salary >= 75_000, 0.0, 10_000 + 75_000 * rng.random(n))
        zipcode = rng.integers(0, 9, n)
        columns = {
            "salary": salary,
            "commission": commission,
            "age": rng.integers(20, 81, n),
            "elevel": rng.integers(0, 5, n),
            "car": rng.integers(1, 21, n),
            "zipcode": zipcode,
            "hvalue": (9 - zipcode) * 100_000 * (0.5 + rng.random(n)),
            "hyears": rng.integers(1, 31, n),
            "loan": 500_000 * rng.random(n),
        }
        flip_draw = rng.random(n)
        features = {name: values.astype(np.float32) for name, values in columns.items()}
        clean = {name: values.astype(np.float64) for name, values in features.items()}
        before = _FUNCTIONS[cycled(self.options.function, partition)](clean)
        after = _FUNCTIONS[cycled(self.options.drift_function, partition)](clean)
        switched = drifted(block_offsets(block), self.switch_offset(partition))
        labels = np.where(switched, after, before) ^ (flip_draw < self.noise(partition))
        if self.options.perturbation > 0.0:
            features = _perturbed(features, zipcode, self.options.perturbation, rng)
        features["label"] = labels.astype(np.float32)
        return frozen(features)


def _perturbed(
    columns: dict[str, np.ndarray],
    zipcode: np.ndarray,
    perturbation: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """River's attribute noise: each value moves by up to `perturbation` of its range."""
    house = (9 - zipcode) * 100_000.0
    bounds: dict[str, tuple[float | np.ndarray, float | np.ndarray]] = {
        "salary": (20_000.0, 150_000.0),
        "commission": (10_000.0, 75_000.0),
        "age": (20.0, 80.0),
        "hvalue": (0.5 * house, 1.5 * house),
        "hyears": (1.0, 30.0),
        "loan": (0.0, 500_000.0),
    }
    result = dict(columns)
    for name, (low, high) in bounds.items():
        values = columns[name].astype(np.float64)
        moved = values + (np.asarray(high) - low) * perturbation * rng.uniform(
            -1.0, 1.0, len(values)
        )
        moved = np.clip(moved, low, high)
        if name in ("age", "hyears"):
            moved = np.round(moved)
        if name == "commission":
            moved = np.where(values > 0, moved, 0.0)  # no commission stays none
        result[name] = moved.astype(np.float32)
    return result
