"""Turn stage figures and preview arrays into Dagster metadata."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import numpy as np

from cloudgan_core.preview import markdown_image
from cloudgan_core.stages.base import Markdown


def figures(values: Mapping[str, object]) -> dict[str, object]:
    """Plain values as metadata (None dropped, paths as paths, floats rounded, dicts and lists as JSON,
    :class:`~cloudgan_core.stages.base.Markdown` rendered; metadata values kept)."""
    out: dict[str, object] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, dg.MetadataValue):
            out[key] = value
        elif isinstance(value, Path):
            out[key] = dg.MetadataValue.path(str(value))
        elif isinstance(value, Markdown):
            out[key] = dg.MetadataValue.md(str(value))
        elif isinstance(value, (dict, list)):
            out[key] = dg.MetadataValue.json(value)
        elif isinstance(value, float):
            out[key] = dg.MetadataValue.float(round(value, 6))
        elif isinstance(value, (bool, np.bool_)):
            out[key] = dg.MetadataValue.bool(bool(value))
        elif isinstance(value, (int, np.integer)):
            out[key] = dg.MetadataValue.int(int(value))
        else:
            out[key] = dg.MetadataValue.text(str(value))
    return out


def preview(image: np.ndarray, caption: str, max_side: int = 480) -> dg.MetadataValue:
    """An inline PNG preview (base64 data URI inside Markdown)."""
    return dg.MetadataValue.md(f"**{caption}**\n\n{markdown_image(image, caption, max_side)}")


def stage_metadata(result, context=None) -> dict[str, object]:
    """The metadata of a stage result (:class:`cloudgan_core.stages.base.StageResult`): its figures,
    ``path`` and an inline ``preview``; its notes are logged as warnings on ``context`` when given
    (and listed under ``notes``)."""
    md = figures(result.figures())
    md["path"] = dg.MetadataValue.path(str(result.path))
    shown = result.preview()
    if shown is not None:
        md["preview"] = preview(shown.image, shown.caption, shown.max_side)
    if result.notes:
        md["notes"] = dg.MetadataValue.text("; ".join(result.notes))
        if context is not None:
            for note in result.notes:
                context.log.warning(note)
    return md
