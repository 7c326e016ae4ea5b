"""Cloud cover: the one range object and the one histogram (and its Markdown table).

Cover is a **percentage of a tile's pixels that are cloud** (0–100), everywhere in the project:
tile sorting, the generator's inputs, CDSE discovery (the catalogue's ``cloudCover``), the checks
on composites and the training-set selection. A :class:`CoverRange` ``(min, max]`` holds a cover
``c`` when ``min < c <= max``; a range starting at 0 also holds 0 (``[0, max]``), so ``(0, 100]``
holds everything. Covers are rounded to 6 decimals before comparing, so float noise
(``100 * 0.07 == 7.000000000000001``) never moves a tile across an edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cloudgan_core.settings import SettingError


@dataclass(frozen=True)
class CoverRange:
    """A cloud-cover range in percent: ``(min, max]``, with ``min = 0`` meaning ``[0, max]``."""

    min: float = 10.0
    max: float = 95.0

    def __post_init__(self) -> None:
        lo, hi = float(self.min), float(self.max)
        if not 0.0 <= lo < hi <= 100.0:  # NaN fails too
            raise SettingError(f"cover range must satisfy 0 <= min_cover < max_cover <= 100 (percent), "
                               f"got min_cover={self.min!r}, max_cover={self.max!r}")
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "max", hi)

    def contains(self, percent: float | np.ndarray) -> bool | np.ndarray:
        """Whether a cover (percent; scalar or array) lies in the range."""
        p = np.round(np.asarray(percent, dtype=np.float64), 6)
        inside = ((p > self.min) | ((self.min == 0.0) & (p >= 0.0))) & (p <= self.max)
        return bool(inside) if inside.ndim == 0 else inside

    def contains_fraction(self, fraction: float | np.ndarray) -> bool | np.ndarray:
        """Whether a cloud fraction (0..1; scalar or array) lies in the range."""
        return self.contains(np.asarray(fraction, dtype=np.float64) * 100.0)

    @property
    def label(self) -> str:
        """``"(10, 95] %"`` (``"[0, 95] %"`` from 0)."""
        return f"{'[' if self.min == 0 else '('}{self.min:g}, {self.max:g}] %"


class CoverFields(BaseModel):
    """``min_cover`` / ``max_cover`` (percent) as config fields, checked together; ``.cover`` is the
    :class:`CoverRange`. Config classes that select by cover inherit this (and may change the
    defaults by redeclaring the fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_cover: float = Field(10.0, description="cloud cover above this (percent of the tile; 0 also takes 0) ...")
    max_cover: float = Field(95.0, description="... and at most this (percent)")

    @model_validator(mode="after")
    def _check_cover(self):
        CoverRange(self.min_cover, self.max_cover)
        return self

    @property
    def cover(self) -> CoverRange:
        return CoverRange(self.min_cover, self.max_cover)


#: Edges of the histogram every report shows: ten 10 % bins.
HISTOGRAM_EDGES: tuple[float, ...] = tuple(float(10 * i) for i in range(11))


def cover_histogram(percent: Sequence[float] | np.ndarray,
                    edges: Sequence[float] = HISTOGRAM_EDGES) -> dict[str, list]:
    """Counts of covers (percent) per bin ``[e_i, e_i+1)``, the last bin closed: ``{"edges", "counts"}``."""
    e = np.asarray(edges, dtype=np.float64)
    counts, _ = np.histogram(np.round(np.asarray(percent, dtype=np.float64), 6), bins=e)
    return {"edges": [float(x) for x in e], "counts": [int(c) for c in counts]}


def histogram_markdown(histogram: Mapping[str, Sequence]) -> str:
    """A :func:`cover_histogram` as a Markdown table: one row per bin (``[10 %, 20 %)``, the last bin
    closed) with its count of pairs."""
    edges, counts = histogram["edges"], histogram["counts"]
    lines = ["| cloud cover | pairs |", "|---|---|"]
    for k, count in enumerate(counts):
        close = "]" if k == len(counts) - 1 else ")"
        lines.append(f"| [{edges[k]:g} %, {edges[k + 1]:g} %{close} | {count} |")
    return "\n".join(lines)
