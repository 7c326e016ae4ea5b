"""What every stage returns: a typed, frozen result that knows its figures and its preview.

Each module of :mod:`cloudgan_core.stages` is named as the Dagster asset it backs and has

- ``NAME``: the asset name (the folder under the storage root);
- ``build(root, key, config, ...) -> <Stage>Result``: does the work from typed inputs and config;
- ``read(root, key)`` and ``write(...)``: the only code that knows that asset's files. Downstream
  stages read their inputs through the upstream module's ``read``.

A result satisfies :class:`StageResult`: ``path`` (what was written), ``notes`` (remarks a user
should see), ``figures()`` (plain JSON-able numbers and strings for the run's metadata) and
``preview()`` (a small image, or None). A figure may also be a :class:`~pathlib.Path` (shown as a
path), a dict or list (shown as JSON) or :class:`Markdown` text (shown rendered).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from cloudgan_core.atomic import recover_folders
from cloudgan_core.digests import new_digest
from cloudgan_core.storage import asset_dir


@dataclass(frozen=True)
class Preview:
    """A picture of a stage's output for people: ``image`` (uint8 ``(H, W)`` or ``(H, W, 3)``),
    what it shows (``caption``) and the longest side it should be shown at (pixels)."""

    image: np.ndarray
    caption: str
    max_side: int = 480


@runtime_checkable
class StageResult(Protocol):
    """The interface every stage result has (each stage defines its own frozen dataclass)."""

    @property
    def path(self) -> Path: ...

    @property
    def notes(self) -> tuple[str, ...]: ...

    def figures(self) -> dict[str, object]: ...

    def preview(self) -> Preview | None: ...


class Markdown(str):
    """A figure whose text is Markdown (a table, say): shown rendered rather than as plain text."""


def stored_partitions(root: Path, asset: str, keys: Iterable[str]) -> list[str]:
    """The partitions among ``keys`` whose ``<root>/<asset>/<key>`` folder exists, sorted, after an
    interrupted folder swap of any of them is put back (:func:`cloudgan_core.atomic.recover_folders`).

    What the unpartitioned stages use to find the products to gather (each stage's ``read`` then
    checks the folder's files)."""
    recover_folders(asset_dir(root, asset))
    return sorted({k for k in keys if asset_dir(root, asset, k).is_dir()})


def derived_seed(seed: int, key: str) -> int:
    """A per-partition seed: the first 8 bytes of ``sha256("<seed>:<key>")`` as a big-endian integer
    (the cloud generator and the surface assignment of each product draw from their own stream)."""
    digest = new_digest("sha256")
    digest.update(f"{seed}:{key}".encode())
    return int(digest.hexdigest()[:16], 16)


def csv_text(rows: Iterable[Mapping[str, object]], columns: Sequence[str]) -> str:
    """The ``index.csv`` text of ``rows``: a header of ``columns``, then one line per row (keys not
    in ``columns`` left out, ``None`` written empty, ``\n`` line ends). Every stage's index is
    written with it."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
