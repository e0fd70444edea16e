"""Parsing and checking of ``synthetic://`` URI options, shared by every generator.

Every message names the option, repeats the value received and says what is expected, in
one line, so a typo in a URI is fixed without reading the source.
"""

from __future__ import annotations

import math
from typing import TypeVar
from urllib.parse import parse_qsl

from actors.errors import ConfigError

_T = TypeVar("_T")

READER_OPTIONS = ("rate",)
"""Options every generator accepts because the reader, not the generator, applies them."""

DRIFT_AT_EXPECTED = "comma-separated fractions in [0, 1] or 'none', one per partition"


def cycled(values: tuple[_T, ...], partition: int) -> _T:
    """The entry of a per-partition list that applies to `partition` (the list cycles)."""
    return values[partition % len(values)]


def query_values(query: str, generator: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """The options of a URI query string by name, refusing unknown and repeated ones.

    The reader's options (`READER_OPTIONS`) are accepted on top of `allowed`; the
    generator ignores them.
    """
    known = (*allowed, *READER_OPTIONS)
    values: dict[str, str] = {}
    for name, text in parse_qsl(query, keep_blank_values=True):
        if name not in known:
            raise ConfigError(
                f"unknown synthetic://{generator} option {name!r}; expected one of "
                + ", ".join(known)
            )
        if name in values:
            raise ConfigError(f"synthetic option {name!r} is given twice")
        values[name] = text.strip()
    return values


def check_drift_at(drift_at: tuple[float | None, ...]) -> None:
    if not drift_at:
        raise ConfigError(
            "drift_at must list at least one fraction in [0, 1] or 'none', one per partition"
        )
    for fraction in drift_at:
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ConfigError(
                f"drift_at ({fraction}) must be a fraction in [0, 1], or 'none' for no "
                "drift (a comma list gives one per partition, cycled)"
            )


def check_flip_noise(noise: tuple[float, ...]) -> None:
    """Label-flip probabilities: at least one, each in [0, 1]."""
    if not noise:
        raise ConfigError("noise must list at least one probability in [0, 1]")
    for p in noise:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"noise ({p}) must be a label-flip probability in [0, 1]")


def check_choices(name: str, values: tuple[int, ...], count: int, what: str) -> None:
    """Per-partition indices into a table of `count` entries (concepts, functions)."""
    if not values:
        raise ConfigError(f"{name} must list at least one {what} in 0..{count - 1}")
    for value in values:
        if value not in range(count):
            raise ConfigError(
                f"{name} ({value}) must be a {what} in 0..{count - 1} "
                "(a comma list gives one per partition, cycled)"
            )


def check_rows(rows: int | None) -> None:
    if rows is not None and rows < 1:
        raise ConfigError(f"rows ({rows}) must be an integer >= 1")


def parse_drift_at(text: str) -> tuple[float | None, ...]:
    return tuple(
        None
        if part.strip().lower() == "none"
        else parse_float("drift_at", part.strip(), DRIFT_AT_EXPECTED)
        for part in text.split(",")
    )


def parse_floats(name: str, text: str, expected: str) -> tuple[float, ...]:
    return tuple(parse_float(name, part, expected) for part in text.split(","))


def parse_flip_noise(values: dict[str, str], default: tuple[float, ...]) -> tuple[float, ...]:
    """The ``noise`` option as per-partition label-flip probabilities, or `default`."""
    if "noise" not in values:
        return default
    return parse_floats("noise", values["noise"], "comma-separated probabilities in [0, 1]")


def parse_ints(name: str, text: str, expected: str) -> tuple[int, ...]:
    return tuple(parse_int(name, part.strip(), expected) for part in text.split(","))


def parse_rows(values: dict[str, str]) -> int | None:
    return parse_int("rows", values["rows"], "an integer >= 1") if "rows" in values else None


def parse_bool(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ConfigError(f"synthetic option {name}={text!r} is not valid; expected true or false")


def parse_rate(query: str) -> float | None:
    """The reader's ``rate`` option of a URI query: rows per second per partition.

    Returns:
        None (the default, or ``rate=none``): the partition is bounded and fully available.

    Raises:
        ConfigError: unless the value is ``none`` or a finite number > 0.
    """
    text = dict(parse_qsl(query, keep_blank_values=True)).get("rate", "none").strip()
    if text.lower() == "none":
        return None
    expected = "rows per second per partition, a number > 0, or 'none' (all rows available)"
    rate = parse_float("rate", text, expected)
    if rate <= 0.0:
        raise ConfigError(f"rate ({rate}) must be {expected}")
    return rate


def parse_int(name: str, text: str, expected: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"synthetic option {name}={text!r} is not valid; expected {expected}"
        ) from None


def parse_float(name: str, text: str, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"synthetic option {name}={text!r} is not valid; expected {expected}"
        ) from None
    if not math.isfinite(value):
        raise ConfigError(f"synthetic option {name}={text!r} is not valid; expected {expected}")
    return value
