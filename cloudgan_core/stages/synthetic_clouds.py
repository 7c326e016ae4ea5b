"""The ``synthetic_clouds`` stage: a product's mask tiles become clouds (optical thickness + top height).

Files (``<root>/synthetic_clouds/<key>/``), aligned tile by tile:

- ``clouds.npy``: ``uint8 (N, H, W, 3)`` the clouds as pictures: the generator's output (``gan``),
  or the cloud rendered in false colour over a black surface (``procedural``);
- ``masks.npy``: ``uint8 (N, H, W)`` the mask behind each, 1 = cloud;
- ``tau.npy``: ``float32 (N, H, W)`` the cloud's optical thickness at 0.55 um, 0 exactly outside
  the mask and at least :data:`~cloudgan_core.clouds.MIN_TAU` inside;
- ``index.csv``: the tiles' index rows (as the sorted tiles have them) plus ``top_height_km`` and
  the four angles of the cloud's own tile (``solar_zenith``, ``solar_azimuth``, ``view_zenith``,
  ``view_azimuth``, degrees);
- ``clouds.json``: what made them: ``generator``, ``model`` and ``model_sha256`` (for
  ``procedural``: ``"procedural"`` and the SHA-256 of the settings' canonical JSON), the
  ``procedural`` settings, ``top_height_km``, ``seed``, the tile count and cover range. No
  timings and no device: the files are byte-identical between runs and executors (timings go to
  the run's metadata only).

The generators (:mod:`cloudgan_core.clouds`):

- ``gan`` (default): the CycleGAN G_B turns each mask into an 8-bit false-colour cloud; its green
  channel (S3 reflectance x 255) is inverted to tau through the renderer's own radiative model,
  ``tau = thickness_from_reflectance(G / 255, geometry of the cloud's tile, mask)``, after a
  [1, 2, 2, 2, 1] / 8 filter along rows and columns (``gan_antialias``) that removes the
  checkerboards of the generator's two transposed-convolution upsamplers: per axis its response
  cos(pi f) sin(4 pi f) / (4 sin(pi f)) is 0 at the Nyquist (period 2) and half-Nyquist
  (period 4) frequencies and 1 at zero frequency (kept inside the mask only; the mask is kept).
  On the demo set with the bundled model it brings the Nyquist / half-Nyquist spike ratios of the
  composites from 128 / 105 to 0.80 / 0.93 and moves the texture slope from -2.09 to -2.28.
  The generator draws its clouds opaque up to the mask's edge, so tau is then tapered towards the
  edge over ``edge_width`` pixels like the procedural clouds' (:func:`thin_edges`);
- ``procedural``: a seeded log-normal fractal field with thin edges
  (:func:`cloudgan_core.clouds.procedural_thickness`), one field per tile from one random stream
  per product (seed ``sha256("<seed>:<product>")``).

Its inputs are the ``gan_input`` tiles of :mod:`cloudgan_core.stages.sorted_tiles` whose cover lies
in the configured range.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from scipy.ndimage import correlate1d

from cloudgan_core.atomic import atomic_dir, require_inputs, save_npy, write_text
from cloudgan_core.clouds import (BANDS, MIN_TAU, REFLECTIVE, CloudField, CloudModelError, ProceduralClouds,
                                  edge_taper, false_color, procedural_thickness, render, thickness_from_reflectance)
from cloudgan_core.composite import GEOMETRY_COLUMNS, tile_geometry
from cloudgan_core.cover import CoverFields, CoverRange
from cloudgan_core.digests import new_digest
from cloudgan_core.errors import CloudGANError
from cloudgan_core.preview import grid
from cloudgan_core.stages import sorted_tiles
from cloudgan_core.stages.base import Preview, csv_text, derived_seed
from cloudgan_core.stages.tiles import read_index
from cloudgan_core.storage import asset_dir
from cloudgan_core.tiles import INDEX_COLUMNS

NAME = "synthetic_clouds"
CLOUDS_FILE = "clouds.npy"
MASKS_FILE = "masks.npy"
TAU_FILE = "tau.npy"
INDEX_FILE = "index.csv"
INFO_FILE = "clouds.json"
GENERATORS = ("gan", "procedural")
#: Index columns this stage adds to the sorted tiles' (the cloud's tile geometry and top height).
CLOUD_COLUMNS = (*GEOMETRY_COLUMNS, "top_height_km")
#: Brightness temperature of the black surface the procedural clouds are pictured over, K.
PICTURE_SURFACE_K = 288.0
#: The anti-alias kernel of the GAN path: [1, 1] * [1, 1, 1, 1] / 8, zero response at periods 2 and 4.
ANTIALIAS_KERNEL = np.array([1.0, 2.0, 2.0, 2.0, 1.0], np.float32) / np.float32(8.0)
#: Rows (mask | cloud) in the preview.
PREVIEW_ROWS = 6


class SyntheticCloudsConfig(CoverFields):
    """Which mask tiles become clouds (cover in percent) and which generator makes them."""

    min_cover: float = Field(10.0, description="mask tiles with cloud cover above this (percent) ...")
    max_cover: float = Field(95.0, description="... and at most this (percent) become clouds; "
                                               "0 <= min_cover < max_cover <= 100")
    generator: Literal["gan", "procedural"] = Field(
        "gan", description="'gan': the CycleGAN G_B (generator resource); its S3 brightness is inverted to optical "
                           "thickness. 'procedural': a seeded log-normal fractal cloud (no model needed)")
    mean_tau: float = Field(10.0, description="procedural: mean optical thickness of the cloud core (0.5-150)")
    tau_spread: float = Field(0.6, description="procedural: standard deviation of ln(tau) (0-2)")
    spectral_slope: float = Field(8.0 / 3.0, description="procedural: exponent of the 2-D power spectrum (1-5)")
    edge_width: float = Field(8.0, description="both generators: pixels over which tau rises from the mask edge to "
                                               "its full value (0-128; 0 = hard edges)")
    top_height_km: float = Field(2.0, description="cloud-top height, km (0-20), both generators")
    gan_antialias: bool = Field(True, description="gan: a [1, 2, 2, 2, 1]/8 filter on the generated S3 inside the "
                                                  "mask before the inversion (removes the period-2 and period-4 "
                                                  "checkerboards of the upsamplers)")
    seed: int = Field(0, description="procedural: seed; each product draws from sha256('<seed>:<product>')")

    @model_validator(mode="after")
    def _procedural(self):
        self.procedural  # noqa: B018 - validates the settings together (CloudModelError names the field)
        return self

    @property
    def procedural(self) -> ProceduralClouds:
        """The procedural settings as the cloud model's :class:`~cloudgan_core.clouds.ProceduralClouds`."""
        return ProceduralClouds(mean_tau=self.mean_tau, tau_spread=self.tau_spread,
                                spectral_slope=self.spectral_slope, edge_width=self.edge_width,
                                top_height_km=self.top_height_km)


@dataclass(frozen=True)
class SyntheticCloudsData:
    """What :func:`read` returns (arrays memory-mapped).

    Attributes
    ----------
    clouds
        ``uint8 (N, H, W, 3)`` the clouds as pictures.
    masks
        ``uint8 (N, H, W)`` their masks, 1 = cloud.
    tau
        ``float32 (N, H, W)`` optical thickness, 0 outside the mask.
    index
        One tile index row per cloud (``product``, ``row``, ``col``, ``cloud_fraction``, ...,
        ``top_height_km`` and the four angles).
    model, model_sha256
        File name and SHA-256 of the generator (``"procedural"`` and the digest of its settings).
    generator
        ``"gan"`` or ``"procedural"``.
    seed
        Seed of the run (``None`` for a deterministic generator).
    settings
        The procedural settings (``None`` for ``gan``).
    """

    clouds: np.ndarray
    masks: np.ndarray
    tau: np.ndarray
    index: list[dict]
    model: str
    model_sha256: str
    generator: str = "gan"
    seed: int | None = None
    settings: dict | None = None


@dataclass(frozen=True)
class SyntheticCloudsResult:
    """What :func:`build` made.

    Attributes
    ----------
    path
        The partition's folder.
    tiles
        Clouds made.
    cover
        The cover range of the mask tiles used.
    generator, model, model_sha256
        The generator.
    mean_tau
        Mean optical thickness over the cloud pixels (0 without any).
    device, precision, batch_size, seconds, tiles_per_second
        How the GAN ran (``None`` for ``procedural`` or when there was nothing to do; metadata only).
    sample
        ``(mask, cloud)`` pairs of the first tiles, for the preview.
    notes
        Remarks for the user (no mask tile in the cover range).
    """

    path: Path
    tiles: int
    cover: CoverRange
    generator: str
    model: str
    model_sha256: str
    mean_tau: float
    device: str | None = None
    precision: str | None = None
    batch_size: int | None = None
    seconds: float | None = None
    tiles_per_second: float | None = None
    sample: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    notes: tuple[str, ...] = ()

    def figures(self) -> dict[str, object]:
        """The figures shown in the run's metadata (timings and device included; never in the files)."""
        return {"tiles": self.tiles, "generator": self.generator, "model": self.model,
                "model_sha256": self.model_sha256, "cover_range": self.cover.label, "mean_tau": self.mean_tau,
                "device": self.device, "precision": self.precision, "batch_size": self.batch_size,
                "seconds": None if self.seconds is None else round(self.seconds, 3),
                "tiles_per_second": None if self.tiles_per_second is None else round(self.tiles_per_second, 2)}

    def preview(self) -> Preview | None:
        """Mask | synthetic cloud, one row per tile of :attr:`sample`."""
        if not self.sample:
            return None
        return Preview(grid([list(pair) for pair in self.sample], 112), f"mask | synthetic cloud ({self.generator})")


def folder(root: Path, key: str) -> Path:
    """``<root>/synthetic_clouds/<key>``."""
    return asset_dir(root, NAME, key)


def settings_sha256(settings: dict) -> str:
    """SHA-256 of the canonical JSON of procedural settings (the ``model_sha256`` of ``procedural``)."""
    digest = new_digest("sha256")
    digest.update(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def _index_csv(rows: list[dict]) -> str:
    """The sorted tiles' columns the rows have (in their order), then :data:`CLOUD_COLUMNS`."""
    first = rows[0] if rows else {}
    cols = [c for c in INDEX_COLUMNS if c in first and c not in CLOUD_COLUMNS] if rows else list(INDEX_COLUMNS[:5])
    return csv_text(rows, [*cols, *CLOUD_COLUMNS])


def write(root: Path, key: str, data: SyntheticCloudsData, info: dict[str, object] | None = None) -> Path:
    """Write ``data`` as the partition's folder (swapped in whole). ``clouds.json`` holds ``info``
    (plain JSON, no timings) with ``generator``, ``model``, ``model_sha256``, ``seed`` and
    ``procedural`` from ``data``."""
    meta = {k: v for k, v in (info or {}).items() if v is not None}
    meta.update(generator=data.generator, model=data.model, model_sha256=data.model_sha256)
    if data.seed is not None:
        meta["seed"] = int(data.seed)
    if data.settings is not None:
        meta["procedural"] = data.settings
    path = folder(root, key)
    with atomic_dir(path) as tmp:
        save_npy(tmp / CLOUDS_FILE, np.asarray(data.clouds, dtype=np.uint8))
        save_npy(tmp / MASKS_FILE, np.asarray(data.masks, dtype=np.uint8))
        save_npy(tmp / TAU_FILE, np.asarray(data.tau, dtype=np.float32))
        write_text(tmp / INDEX_FILE, _index_csv(data.index))
        write_text(tmp / INFO_FILE, json.dumps(meta, indent=2, sort_keys=True))
    return path


def read(root: Path, key: str) -> SyntheticCloudsData:
    """The clouds of ``key``, checked.

    Raises
    ------
    MissingInputError
        The folder does not exist ("materialize synthetic_clouds for <key> first").
    CloudGANError
        A file is missing, shapes or counts disagree, a mask value is not 0/1, tau is negative,
        not finite or nonzero outside the mask, an index row lacks its top height, or
        ``clouds.json`` does not name the generator (the message names the file).
    """
    path = folder(root, key)
    require_inputs(synthetic_clouds=path)
    for name in (CLOUDS_FILE, MASKS_FILE, TAU_FILE, INDEX_FILE, INFO_FILE):
        if not (path / name).is_file():
            raise CloudGANError(f"{path / name}: missing; materialize synthetic_clouds for {key} again")
    clouds = np.load(path / CLOUDS_FILE, mmap_mode="r")
    masks = np.load(path / MASKS_FILE, mmap_mode="r")
    tau = np.load(path / TAU_FILE, mmap_mode="r")
    index = read_index(path / INDEX_FILE)
    try:
        info = json.loads((path / INFO_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CloudGANError(f"{path / INFO_FILE}: not JSON ({exc}); materialize synthetic_clouds for {key} "
                            "again") from None
    if clouds.dtype != np.uint8 or clouds.ndim != 4 or clouds.shape[-1] != 3:
        raise CloudGANError(f"{path / CLOUDS_FILE}: expected uint8 (N, H, W, 3), got {clouds.dtype} {clouds.shape}")
    if masks.shape != clouds.shape[:3]:
        raise CloudGANError(f"{path / MASKS_FILE}: shape {masks.shape} does not match the clouds' "
                            f"{clouds.shape[:3]}")
    if tau.dtype != np.float32 or tau.shape != masks.shape:
        raise CloudGANError(f"{path / TAU_FILE}: expected float32 {masks.shape}, got {tau.dtype} {tau.shape}")
    if len(index) != len(clouds):
        raise CloudGANError(f"{path / INDEX_FILE}: {len(index)} rows for {len(clouds)} cloud tiles")
    if ((masks != 0) & (masks != 1)).any():
        raise CloudGANError(f"{path / MASKS_FILE}: mask values must be 0 or 1")
    if not np.isfinite(tau).all() or (tau < 0).any() or ((tau > 0) != (masks == 1)).any():
        raise CloudGANError(f"{path / TAU_FILE}: tau must be finite, > 0 inside the mask and 0 outside it")
    if any(not isinstance(r.get("top_height_km"), (int, float)) for r in index):
        raise CloudGANError(f"{path / INDEX_FILE}: a row has no top_height_km")
    if not isinstance(info, dict) or not isinstance(info.get("model_sha256"), str):
        raise CloudGANError(f"{path / INFO_FILE}: no model_sha256 (which generator made these clouds?)")
    seed, settings = info.get("seed"), info.get("procedural")
    return SyntheticCloudsData(clouds, masks, tau, index, model=str(info.get("model", "")),
                               model_sha256=info["model_sha256"], generator=str(info.get("generator", "gan")),
                               seed=seed if isinstance(seed, int) else None,
                               settings=settings if isinstance(settings, dict) else None)


def antialias(reflectance: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The [1, 2, 2, 2, 1] / 8 filter along rows and columns, kept inside ``mask`` (float32 (H, W)).

    Its frequency response per axis, cos(pi f) sin(4 pi f) / (4 sin(pi f)), is 0 at the Nyquist
    (f = 1/2 cycle/px: period-2 checkerboard) and half-Nyquist (f = 1/4: period 4) frequencies and
    1 at zero frequency; outside the mask the input stays (the inversion sets tau = 0 there
    anyway). Borders are mirrored.
    """
    out = correlate1d(reflectance, ANTIALIAS_KERNEL, axis=0, mode="reflect")
    out = correlate1d(out, ANTIALIAS_KERNEL, axis=1, mode="reflect")
    return np.where(mask, out, reflectance).astype(np.float32, copy=False)


def thin_edges(tau: np.ndarray, mask: np.ndarray, edge_width: float) -> None:
    """Taper a GAN cloud's tau in place towards the mask edge, as the procedural generator does:
    ``tau = max(tau * S(d / edge_width), MIN_TAU)`` inside ``mask`` (``S`` the smoothstep of
    :func:`cloudgan_core.clouds.edge_taper`, ``d`` the distance to the edge in pixels), 0 outside.

    The generator draws its clouds opaque up to the mask's edge; a real cloud thins out there.
    """
    tau *= edge_taper(mask, edge_width)
    np.maximum(tau, np.float32(MIN_TAU), out=tau, where=mask)
    tau[~mask] = 0.0


def picture(field: CloudField, geometry) -> np.ndarray:
    """The cloud in false colour over a black surface (reflectance 0, :data:`PICTURE_SURFACE_K`), no shadow."""
    h, w = field.tau.shape
    black = np.zeros((len(BANDS), h, w), np.float32)
    black[len(REFLECTIVE):] = PICTURE_SURFACE_K
    return false_color(render(black, field, geometry, shadows=False).bands)


def _tile(where: str, i: int, make: Callable[[], object]):
    try:
        return make()
    except CloudModelError as exc:
        raise CloudGANError(f"{where}, tile {i}: {exc}") from None


def build(root: Path, key: str, config: SyntheticCloudsConfig = SyntheticCloudsConfig(), *, model=None,
          model_name: str = "", model_sha256: str = "", device: str = "auto", batch_size: int = 16,
          precision: str = "fp32", num_threads: int | None = None,
          progress: Callable[[int, int], None] | None = None) -> SyntheticCloudsResult:
    """Make one cloud per ``gan_input`` mask tile of ``key`` whose cover lies in the config's range.

    Parameters
    ----------
    root, key
        Storage root and product partition.
    config
        The cover range, the generator and its settings.
    model
        The mask → cloud generator (G_B, a ``torch.nn.Module``); needed for ``gan`` only.
    model_name, model_sha256
        File name and SHA-256 of its checkpoint (recorded in ``clouds.json``).
    device, batch_size, precision, num_threads, progress
        See :func:`cloudgan_core.gan.generate_clouds` (``gan`` only).

    Raises
    ------
    MissingInputError
        The product's sorted tiles are missing.
    CloudGANError
        ``gan`` without a model, or a tile's index row lacks its sun and view angles (tiles from
        before they were recorded) or has angles outside the cloud model's range.
    """
    tiles = sorted_tiles.read(root, key).gan_input
    where = f"{sorted_tiles.folder(root, key) / 'gan_input' / INDEX_FILE}"
    keep = np.flatnonzero(config.cover.contains_fraction([r["cloud_fraction"] for r in tiles.index]))
    masks = np.asarray(tiles.masks[keep], dtype=np.uint8)
    n = len(masks)
    geometries = [tile_geometry(tiles.index[i], f"{where} row {int(i) + 1}") for i in keep]
    height = config.top_height_km
    index = [{**tiles.index[i], **{c: getattr(g, c) for c in GEOMETRY_COLUMNS}, "top_height_km": height}
             for i, g in zip(keep, geometries)]
    shape = masks.shape[1:] if masks.ndim == 3 else (0, 0)
    tau = np.zeros((n, *shape), np.float32)
    how: dict[str, object] = {}
    settings: dict | None = None
    if config.generator == "gan":
        if model is None:
            raise CloudGANError("generator 'gan' needs a generator model (the generator resource); or set "
                                "generator: procedural")
        seed = None
        name, sha = model_name, model_sha256
        if n:
            from cloudgan_core.gan import generate_clouds

            run = generate_clouds(model, masks, device=device, batch_size=batch_size, precision=precision,
                                  num_threads=num_threads, progress=progress)
            clouds = run.clouds
            how = {"device": str(run.device), "precision": run.precision, "batch_size": run.batch_size,
                   "seconds": run.seconds, "tiles_per_second": run.tiles_per_second}
        else:
            clouds = np.zeros((0, *shape, 3), np.uint8)
        for i in range(n):
            refl = clouds[i, ..., 1].astype(np.float32) / np.float32(255.0)
            if config.gan_antialias:
                refl = antialias(refl, masks[i] == 1)
            tau[i] = _tile(where, i, lambda: thickness_from_reflectance(
                refl, geometries[i], mask=masks[i], top_height_km=height).tau)
            thin_edges(tau[i], masks[i] == 1, config.edge_width)
    else:
        seed = config.seed
        procedural = config.procedural
        settings = asdict(procedural)
        name, sha = "procedural", settings_sha256(settings)
        rng = np.random.default_rng(derived_seed(seed, key))
        clouds = np.zeros((n, *shape, 3), np.uint8)
        for i in range(n):
            field = _tile(where, i, lambda: procedural_thickness(masks[i], procedural, rng))
            tau[i] = field.tau
            clouds[i] = picture(field, geometries[i])
    cloudy = masks == 1
    mean_tau = round(float(tau[cloudy].mean(dtype=np.float64)), 4) if cloudy.any() else 0.0
    notes: tuple[str, ...] = () if n else (
        f"no mask tile of {key} has its cover in {config.cover.label}: no clouds made",)
    data = SyntheticCloudsData(clouds, masks, tau, index, name, sha, generator=config.generator, seed=seed,
                               settings=settings)
    info = {"tiles": n, "cover_range": config.cover.label, "top_height_km": height, "mean_tau": mean_tau}
    if config.generator == "gan":
        info["gan_antialias"] = config.gan_antialias
        info["edge_width"] = config.edge_width
    path = write(root, key, data, info)
    k = min(n, PREVIEW_ROWS)
    return SyntheticCloudsResult(path, n, config.cover, config.generator, name, sha, mean_tau,
                                 sample=tuple((masks[i].copy(), clouds[i].copy()) for i in range(k)), notes=notes,
                                 **how)
