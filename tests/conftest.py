"""Shared fixtures for the core-library tests: small simulated SL_1_RBT products and helpers that
turn a copy of one into a real bad file (corrupt, edited, truncated) for the error tests."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from cloudgan_core.simulate import SceneTruth, simulate_product
from tests.paths import REAL_DIR

#: Size of the shared simulated scene: small (fast) but with a ragged remainder for 64 px tiles.
SIM_ROWS, SIM_COLS, SIM_SEED = 240, 320, 7



@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SceneTruth]:
    """``(folder, truth)`` of one simulated ``.SEN3`` product. Read-only: copy before editing."""
    path, truth = simulate_product(tmp_path_factory.mktemp("sim"), seed=SIM_SEED, rows=SIM_ROWS, cols=SIM_COLS,
                                   return_truth=True)
    return path, truth


@pytest.fixture(scope="session")
def sim_product(sim: tuple[Path, SceneTruth]) -> Path:
    """The ``.SEN3`` folder of :func:`sim`."""
    return sim[0]


@pytest.fixture(scope="session")
def sim_truth(sim: tuple[Path, SceneTruth]) -> SceneTruth:
    """The simulated fields behind :func:`sim_product`."""
    return sim[1]


@pytest.fixture(scope="session")
def sim_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same product as :func:`sim_product` (same seed and size), written as a ``.zip``."""
    return simulate_product(tmp_path_factory.mktemp("simzip"), seed=SIM_SEED, rows=SIM_ROWS, cols=SIM_COLS,
                            as_zip=True)


@pytest.fixture
def copy_product(sim_product: Path, tmp_path: Path) -> Callable[[], Path]:
    """A function that copies the shared product folder into ``tmp_path`` and returns the copy."""

    def _copy() -> Path:
        dest = tmp_path / "copy" / sim_product.name
        shutil.copytree(sim_product, dest)
        return dest

    return _copy


def _update_manifest_md5(folder: Path, fname: str) -> None:
    manifest = folder / "xfdumanifest.xml"
    text = manifest.read_text(encoding="utf-8")
    marker = f'href="./{fname}"'
    at = text.index(marker)
    start = text.index('checksumName="MD5">', at) + len('checksumName="MD5">')
    end = text.index("</checksum>", start)
    data = (folder / fname).read_bytes()
    text = text[:start] + hashlib.md5(data, usedforsecurity=False).hexdigest() + text[end:]
    size_at = text.rindex('size="', 0, at) + len('size="')  # the byteStream that holds this file
    size_end = text.index('"', size_at)
    manifest.write_text(text[:size_at] + str(len(data)) + text[size_end:], encoding="utf-8")


@pytest.fixture
def update_manifest_md5() -> Callable[[Path, str], None]:
    """A function ``(folder, fname)`` that writes the current MD5 and size of ``fname`` into the manifest,
    so a deliberately edited file passes the checksum and reaches the reader."""
    return _update_manifest_md5


def _zip_folder(folder: Path, target: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(folder.iterdir()):
            zf.writestr(f"{folder.name}/{f.name}", f.read_bytes())
        for name, data in (extra or {}).items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return target


@pytest.fixture
def zip_folder() -> Callable[..., Path]:
    """A function ``(folder, target, extra=None)`` that zips a ``.SEN3`` folder as ``<name>.SEN3/...``
    plus raw ``extra`` entries (names written exactly as given, e.g. ``"../evil"``)."""
    return _zip_folder


@pytest.fixture(scope="session")
def real_product_dir() -> Path:
    """The real partial product's ``.SEN3`` folder; skips the test when it is not on this machine."""
    found = sorted(REAL_DIR.glob("*.SEN3")) if REAL_DIR.is_dir() else []
    if not found:
        pytest.skip(f"real SLSTR product not present at {REAL_DIR}")
    return found[0]


@pytest.fixture(autouse=True)
def _no_real_cdse(monkeypatch):
    """Tests never reach the internet: unless a test points CDSE at its local server, the
    endpoints go to a closed port on 127.0.0.1 and no account is set."""
    for var in ("CDSE_TOKEN_URL", "CDSE_CATALOGUE_URL", "CDSE_DOWNLOAD_URL"):
        monkeypatch.setenv(var, "http://127.0.0.1:9/odata/v1" if "TOKEN" not in var else "http://127.0.0.1:9/token")
    for var in ("CDSE_USERNAME", "CDSE_PASSWORD", "CDSE_TOTP"):
        monkeypatch.delenv(var, raising=False)
