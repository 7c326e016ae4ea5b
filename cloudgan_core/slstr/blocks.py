"""Row blocks: whole-scene arithmetic done a few rows at a time, so the temporaries of each step
stay in the CPU cache instead of making one pass over a 30 MB array per operation."""

from __future__ import annotations

from collections.abc import Iterator

#: Bytes of one float32 block: a few passes over it fit in a core's cache.
BLOCK_BYTES = 512 * 1024


def row_blocks(rows: int, cols: int, itemsize: int = 4) -> Iterator[slice]:
    """Slices of consecutive rows covering ``range(rows)``, each about :data:`BLOCK_BYTES` of
    ``cols`` values of ``itemsize`` bytes (at least one row)."""
    step = max(1, BLOCK_BYTES // max(1, cols * itemsize))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))
