"""Checks of user settings: the allowed ranges of stage arguments and asset config fields.

The core functions call these on their arguments, and the Dagster config classes call the same
functions from their pydantic validators, so a bad value gets the same message whether it comes
from a notebook or from a run's config, and a run fails before its step reads or writes anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

from cloudgan_core.errors import CloudGANError

#: Most equal-width cover bins a balanced training-set selection may ask for (each is an array
#: element; a huge count would only exhaust memory).
MAX_COVER_BINS = 1000


class SettingError(CloudGANError, ValueError):
    """A setting is outside its allowed range.

    A :class:`ValueError` too, so pydantic reports it as a validation error of the field.
    """


def check_between(name: str, value: float, low: float, high: float, *, open_low: bool = False,
                  unit: str = "") -> float:
    """``value`` as a float when ``low <= value <= high`` (``low < value`` with ``open_low``).

    Raises
    ------
    SettingError
        Naming ``name`` and the interval, e.g. ``"max_solar_zenith must be within (0, 90] degrees,
        got 95.0"``. NaN is always outside.
    """
    v = float(value)
    inside = (low < v if open_low else low <= v) and v <= high
    if not inside:  # NaN fails every comparison
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise SettingError(f"{name} must be within {interval}{' ' + unit if unit else ''}, got {value!r}")
    return v


def check_fraction(name: str, value: float) -> float:
    """``value`` as a float when it is a share in ``[0, 1]``; else :class:`SettingError`."""
    return check_between(name, value, 0.0, 1.0)


def check_positive(name: str, value: float) -> float:
    """``value`` as a float when it is finite and ``> 0``; else :class:`SettingError`."""
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise SettingError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_count(name: str, value: int, low: int, high: int | None = None) -> int:
    """``value`` when it is an integer ``>= low`` (and ``<= high`` when given); else :class:`SettingError`."""
    if (isinstance(value, bool) or not isinstance(value, Integral) or value < low
            or (high is not None and value > high)):
        allowed = f"within [{low}, {high}]" if high is not None else f">= {low}"
        raise SettingError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def check_order(low_name: str, low: float, high_name: str, high: float) -> None:
    """``low <= high``; else :class:`SettingError` naming both settings."""
    if not float(low) <= float(high):
        raise SettingError(f"{low_name} must be <= {high_name}, got {low_name}={low!r}, {high_name}={high!r}")


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """``value`` when it is one of ``choices``; else :class:`SettingError` listing them."""
    if value not in choices:
        raise SettingError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_split_fractions(train: float, val: float, test: float) -> tuple[float, float, float]:
    """Shares of products in train/val/test: each in ``[0, 1]``, summing to 1, train > 0."""
    shares = tuple(check_fraction(n, v) for n, v in (("train_fraction", train), ("val_fraction", val),
                                                     ("test_fraction", test)))
    if abs(sum(shares) - 1.0) > 1e-6:
        raise SettingError(f"train_fraction + val_fraction + test_fraction must sum to 1, got "
                           f"{train!r} + {val!r} + {test!r} = {sum(shares):g}")
    if shares[0] <= 0:
        raise SettingError(f"train_fraction must be > 0 (every split needs training products), got {train!r}")
    return shares  # type: ignore[return-value]
