"""Where outputs live: one folder per asset and partition under a storage root.

``<root>/<asset>/<partition>/`` — e.g. ``storage/masks/S3A_SL_1_RBT____2024.../flags.npy``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository (or install) folder; the default storage root and inbox live beneath it.
PROJECT_DIR = Path(__file__).resolve().parents[1]


def default_storage_root() -> Path:
    """``$CLOUDGAN_STORAGE`` or ``<project>/storage``."""
    return Path(os.environ.get("CLOUDGAN_STORAGE", PROJECT_DIR / "storage"))


def default_inbox() -> Path:
    """``$CLOUDGAN_INBOX`` or ``<project>/userdata/product_store`` (the original's folder)."""
    return Path(os.environ.get("CLOUDGAN_INBOX", PROJECT_DIR / "userdata" / "product_store"))


def asset_dir(root: str | Path, asset: str, partition: str | None = None) -> Path:
    """The folder of one asset (and partition) under ``root``."""
    path = Path(root) / asset
    return path / partition if partition else path
