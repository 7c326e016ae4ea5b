"""Where the tests find the repository and the real (partial) SLSTR product."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (the folder holding ``pyproject.toml``).
REPO = Path(__file__).resolve().parent.parent
#: The real (partial) product's folder: ``$CLOUDGAN_REAL_PRODUCT_DIR``, else ``../shared/slstr-real``
#: beside the checkout (where CI and the development machine keep it; it is never committed).
REAL_DIR = Path(os.environ.get("CLOUDGAN_REAL_PRODUCT_DIR") or REPO.parent / "shared" / "slstr-real")
