"""Tile assets: the scene cut into tiles, and the tiles sorted into cloud-cover bins."""


import dagster as dg
import numpy as np
from pydantic import Field, field_validator, model_validator

from cloudgan_assets.guard import guarded
from cloudgan_assets.metadata import figures, preview
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.preview import grid, shrink, side_by_side
from cloudgan_core.stages import make_tiles, sort_product_tiles
from cloudgan_core.settings import check_fraction
from cloudgan_core.tiles import DEFAULT_TILE_SIZE, check_bin_edges, check_cover_range, check_tile_size, read_tiles


class TilesConfig(dg.Config):
    tile_size: int = Field(DEFAULT_TILE_SIZE, description="tile side in pixels, a positive multiple of 4, at most "
                                                          "the scene's rows and columns")

    @field_validator("tile_size")
    @classmethod
    def _tile_size(cls, value: int) -> int:
        return check_tile_size(value)


class SortConfig(dg.Config):
    bin_edges: list[float] = Field([0.0, 10.0, 95.0, 100.0], description="cloud-cover bin edges in percent, "
                                                                         "increasing strictly from 0 to 100")
    gan_min_cover: float = Field(10.0, description="generator inputs: cover above this (percent) ...")
    gan_max_cover: float = Field(95.0, description="... and at most this (percent); 0 <= min < max <= 100")
    min_valid_fraction: float = Field(0.9, description="generator inputs need at least this share (0..1) of valid "
                                                       "pixels")

    @field_validator("bin_edges")
    @classmethod
    def _bin_edges(cls, value: list[float]) -> list[float]:
        return check_bin_edges(value)

    @field_validator("min_valid_fraction")
    @classmethod
    def _min_valid_fraction(cls, value: float) -> float:
        return check_fraction("min_valid_fraction", value)

    @model_validator(mode="after")
    def _gan_cover(self) -> "SortConfig":
        check_cover_range(self.gan_min_cover, self.gan_max_cover, what="gan_min_cover/gan_max_cover")
        return self


@dg.asset(partitions_def=products_partitions, group_name="tiles", deps=["masks", "false_color"], kinds={"numpy"},
          description="Square tiles of the false-colour image and the mask, with per-tile cloud/valid/day/land "
                      "fractions in index.csv.")
@guarded
def tiles(context: dg.AssetExecutionContext, config: TilesConfig, storage: CloudGANStorage) -> dg.MaterializeResult:
    key = context.partition_key
    fc_dir, mask_dir = storage.path("false_color", key), storage.path("masks", key)
    result = make_tiles(fc_dir, mask_dir, storage.path("tiles", key), product=key, tile_size=config.tile_size)
    image = np.load(fc_dir / "false_color.npy", mmap_mode="r")
    cloud = np.load(mask_dir / "cloud.npy", mmap_mode="r")
    step = max(1, max(image.shape[:2]) // 480)
    small_img = np.array(image[::step, ::step])
    small_mask = np.array(cloud[::step, ::step]) * 255
    for arr in (small_img, small_mask):  # draw the tile grid
        for r in range(0, image.shape[0], config.tile_size):
            arr[r // step] = 255 if arr.ndim == 2 else (255, 200, 0)
        for c in range(0, image.shape[1], config.tile_size):
            arr[:, c // step] = 255 if arr.ndim == 2 else (255, 200, 0)
    return dg.MaterializeResult(metadata={
        **figures(result.figures), "path": dg.MetadataValue.path(str(result.path)),
        "index": dg.MetadataValue.path(str(result.path / "index.csv")),
        "preview": preview(side_by_side([small_img, small_mask]), "false colour | mask, with the tile grid", 720)})


@dg.asset(partitions_def=products_partitions, group_name="tiles", deps=["tiles"], kinds={"numpy"},
          description="Tiles sorted into cover bins (default 0/10/95/100 %): clear surface candidates and the "
                      "generator's mask inputs.")
@guarded
def sorted_tiles(context: dg.AssetExecutionContext, config: SortConfig, storage: CloudGANStorage) -> dg.MaterializeResult:
    key = context.partition_key
    out = storage.path("sorted_tiles", key)
    result = sort_product_tiles(storage.path("tiles", key), out, edges=config.bin_edges,
                                gan_range=(config.gan_min_cover, config.gan_max_cover),
                                min_valid_fraction=config.min_valid_fraction)
    rows = []
    for group in ("gan_input", "surface"):
        t = read_tiles(out / group, mmap=True)
        for i in range(min(3, len(t))):
            rows.append([shrink(t.images[i], 96), shrink(t.masks[i], 96)])
    md = {**figures(result.figures), "path": dg.MetadataValue.path(str(out)),
          "index": dg.MetadataValue.path(str(out / "index.csv"))}
    if rows:
        md["preview"] = preview(grid(rows, 96), "tile | mask: generator inputs, then surface candidates")
    return dg.MaterializeResult(metadata=md)
