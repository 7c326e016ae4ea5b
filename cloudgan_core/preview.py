"""Small PNG previews for the Dagster UI (embedded as base64 data URIs in Markdown metadata)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image


def as_rgb(array: np.ndarray) -> np.ndarray:
    """uint8 RGB view of an image: masks (0/1 or bool) become black/white."""
    a = np.asarray(array)
    if a.dtype == bool or (a.ndim == 2 and a.dtype == np.uint8 and a.max(initial=0) <= 1):
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a.astype(np.uint8, copy=False)


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the longer side is at most ``max_side`` (area averaging)."""
    img = Image.fromarray(as_rgb(image))
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))), Image.Resampling.BOX)
    return np.asarray(img)


def side_by_side(images: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Images of equal height placed left to right with a white gap."""
    imgs = [as_rgb(i) for i in images]
    h = max(i.shape[0] for i in imgs)
    parts = []
    for i, img in enumerate(imgs):
        if i:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
        pad = np.zeros((h, img.shape[1], 3), np.uint8)
        pad[: img.shape[0]] = img
        parts.append(pad)
    return np.concatenate(parts, axis=1)


def grid(rows: Sequence[Sequence[np.ndarray]], cell: int = 96, gap: int = 4) -> np.ndarray:
    """A grid of tiles, one list per row (e.g. ``[[mask, cloud, surface, composite], ...]``)."""
    lines = [side_by_side([shrink(t, cell) for t in row], gap) for row in rows if len(row)]
    if not lines:
        return np.full((cell, cell, 3), 255, np.uint8)
    width = max(line.shape[1] for line in lines)
    out = []
    for i, line in enumerate(lines):
        if i:
            out.append(np.full((gap, width, 3), 255, np.uint8))
        pad = np.full((line.shape[0], width, 3), 255, np.uint8)
        pad[:, : line.shape[1]] = line
        out.append(pad)
    return np.concatenate(out, axis=0)


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an image as PNG bytes (deterministic: no metadata)."""
    buf = io.BytesIO()
    Image.fromarray(as_rgb(image)).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def markdown_image(image: np.ndarray, alt: str = "preview", max_side: int = 480) -> str:
    """Markdown that shows ``image`` inline (a base64 PNG data URI)."""
    data = base64.b64encode(png_bytes(shrink(image, max_side))).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"
