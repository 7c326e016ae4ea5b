"""Where outputs live: one folder per asset and partition under a storage root.

``<root>/<asset>/<partition>/`` — e.g. ``storage/masks/S3A_SL_1_RBT____2024.../flags.npy``.

Every path built from a name (an asset, a partition key, a product from a catalogue) goes through
:func:`inside`, which refuses a name that would land outside its root (``..``, a separator, an
absolute path, a symlink pointing away).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cloudgan_core.errors import CloudGANError

#: The repository (or install) folder; the default storage root and inbox live beneath it.
PROJECT_DIR = Path(__file__).resolve().parents[1]

_ASSET = re.compile(r"^[a-z][a-z0-9_]*$")


class UnsafePathError(CloudGANError, ValueError):
    """A name would make a path outside its root."""


def default_storage_root() -> Path:
    """``$CLOUDGAN_STORAGE`` or ``<project>/storage``."""
    return Path(os.environ.get("CLOUDGAN_STORAGE", PROJECT_DIR / "storage"))


def default_inbox() -> Path:
    """``$CLOUDGAN_INBOX`` or ``<project>/userdata/product_store`` (the original's folder)."""
    return Path(os.environ.get("CLOUDGAN_INBOX", PROJECT_DIR / "userdata" / "product_store"))


def inside(root: str | Path, *names: str) -> Path:
    """``root/name/...`` after checking that each name is one plain path component and that the
    result resolves (symlinks followed) inside ``root``.

    Raises
    ------
    UnsafePathError
        A name is empty, ``.``/``..``, holds a separator or a NUL, or the path leaves ``root``.
    """
    root = Path(root)
    path = root
    for name in names:
        if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name
                or len(name) > 255):
            raise UnsafePathError(f"{name!r} is not a plain file or folder name; refusing to use it under {root}")
        path = path / name
    base = root.resolve()
    resolved = path.resolve()
    if resolved != base and base not in resolved.parents:
        raise UnsafePathError(f"{path} resolves to {resolved}, outside {base}; refusing to use it")
    return path


def asset_dir(root: str | Path, asset: str, partition: str | None = None) -> Path:
    """The folder of one asset (and partition) under ``root``; always inside ``root``."""
    if not _ASSET.match(asset):
        raise UnsafePathError(f"{asset!r} is not an asset name")
    return inside(root, asset, partition) if partition else inside(root, asset)
