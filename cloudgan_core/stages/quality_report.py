"""The ``quality_report`` stage: how realistic the training set's composites are, next to the original blend.

Files (``<root>/quality_report/``):

- ``report.json``: :class:`cloudgan_core.quality.QualityReport` as JSON (``n_pairs``,
  ``generator``, the detector and brightness figures of the ``composite`` and of the ``original``
  50 % blend of the same clouds and surfaces, ``iou_gain``, ``iou_gain_per_tile``,
  ``cover_histogram`` in percent, the ``realism`` figures of both with ``realism_pairs`` and
  ``targets_met``) plus ``zip_sha256``, the SHA-256 of the ``training_set.zip`` it describes;
- ``report.png``: bar charts and the realism table (:func:`cloudgan_core.quality.report_plot_png`).

The realism figures (:func:`cloudgan_core.realism.realism_figures`) are computed on the bands of
the split netCDF files, with the surfaces' snow/ice flag as the snow mask, on the first
:data:`~cloudgan_core.quality.MAX_REALISM_PAIRS` pairs.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from cloudgan_core.atomic import atomic_dir, require_inputs, write_bytes, write_text
from cloudgan_core.cover import histogram_markdown
from cloudgan_core.errors import CloudGANError
from cloudgan_core.quality import (MAX_REALISM_PAIRS, REALISM_TARGETS, BlendFigures, QualityReport, quality_report,
                                   report_plot_png)
from cloudgan_core.stages import training_set
from cloudgan_core.stages.base import Markdown, Preview
from cloudgan_core.storage import asset_dir

NAME = "quality_report"
REPORT_JSON = "report.json"
REPORT_PNG = "report.png"


@dataclass(frozen=True)
class QualityReportData:
    """What :func:`read` returns: the report, the SHA-256 of the training-set zip it describes and
    the plot's PNG bytes."""

    report: QualityReport
    zip_sha256: str
    plot_png: bytes


@dataclass(frozen=True)
class QualityReportResult:
    """What :func:`build` made (the report, the zip's SHA-256 and the plot as an image)."""

    path: Path
    report: QualityReport
    zip_sha256: str
    plot: np.ndarray
    notes: tuple[str, ...] = ()

    def figures(self) -> dict[str, object]:
        r = self.report
        a, o = r.composite, r.original
        realism = {f"{which}_{name}": value for which, figures in r.realism.items()
                   for name, value in figures.items() if name in REALISM_TARGETS}
        return {"pairs": r.n_pairs, "generator": r.generator, "composite_detector_iou": a.detector_iou,
                "original_detector_iou": o.detector_iou, "iou_gain": r.iou_gain,
                "iou_gain_per_tile": r.iou_gain_per_tile,
                "composite_brightness_outside_abs": a.brightness_outside_abs,
                "original_brightness_outside_abs": o.brightness_outside_abs, **realism,
                "realism_pairs": r.realism_pairs, "targets_met": dict(r.targets_met), "zip_sha256": self.zip_sha256,
                "table": Markdown(self.report.table_markdown()),
                "cover_histogram": Markdown(histogram_markdown(self.report.cover_histogram)),
                "report": self.path / REPORT_JSON, "report_png": self.path / REPORT_PNG}

    def preview(self) -> Preview | None:
        return Preview(self.plot, "detector IoU, brightness change, cover histogram, realism figures", 720)


def folder(root: Path) -> Path:
    """``<root>/quality_report``."""
    return asset_dir(root, NAME)


def write(root: Path, report: QualityReport, zip_sha256: str) -> Path:
    """Write ``report.json`` and ``report.png`` (the folder swapped in whole)."""
    path = folder(root)
    with atomic_dir(path) as tmp:
        write_text(tmp / REPORT_JSON, json.dumps({**report.as_dict(), "zip_sha256": zip_sha256}, indent=2,
                                                 sort_keys=True))
        write_bytes(tmp / REPORT_PNG, report_plot_png(report))
    return path


def read(root: Path) -> QualityReportData:
    """The report written by :func:`write`.

    Raises
    ------
    MissingInputError
        No report ("materialize quality_report first").
    CloudGANError
        A file is missing or ``report.json`` is not a report.
    """
    path = folder(root)
    require_inputs(quality_report=path)
    try:
        raw = json.loads((path / REPORT_JSON).read_text(encoding="utf-8"))
        blend = {f.name for f in fields(BlendFigures)}
        report = QualityReport(
            n_pairs=int(raw["n_pairs"]), generator=str(raw["generator"]),
            composite=BlendFigures(**{k: raw["composite"][k] for k in blend}),
            original=BlendFigures(**{k: raw["original"][k] for k in blend}), iou_gain=float(raw["iou_gain"]),
            iou_gain_per_tile=float(raw["iou_gain_per_tile"]), cover_histogram=dict(raw["cover_histogram"]),
            realism={k: dict(v) for k, v in raw["realism"].items()}, realism_pairs=int(raw["realism_pairs"]),
            targets_met=dict(raw["targets_met"]))
        return QualityReportData(report, str(raw["zip_sha256"]), (path / REPORT_PNG).read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CloudGANError(f"{path}: not a quality report ({type(exc).__name__}: {exc}); materialize "
                            "quality_report again") from None


def build(root: Path) -> QualityReportResult:
    """Quality and realism figures of the training set (see :func:`cloudgan_core.quality.quality_report`).

    Detector IoU (brightness threshold vs mask), brightness change inside the mask and outside
    cloud and shadow (digital numbers) and the realism figures, for the set's composites and for
    the original 50 % blend of the same clouds and surfaces, plus the cover histogram and the
    SHA-256 of ``training_set.zip``. Notes say when the composite does not beat the original blend
    on detector IoU and which realism targets it misses.

    Raises
    ------
    MissingInputError
        No training set.
    CloudGANError
        The set is empty or unreadable.
    """
    from PIL import Image

    data = training_set.read(root)
    cover = np.array([100.0 * float(r["cloud_fraction"]) for r in data.manifest], dtype=np.float64)
    generators = sorted({str(r.get("generator", "")) for r in data.manifest})
    nc = data.netcdf(("bands", "surface", "snow_mask"), limit=MAX_REALISM_PAIRS) if data.manifest else {}
    report = quality_report(data.arrays("images"), data.arrays("surface"), data.arrays("clouds"),
                            data.arrays("masks"), cover=cover, shadows=data.arrays("shadows"),
                            bands=nc.get("bands"), surface_bands=nc.get("surface"), snow=nc.get("snow_mask"),
                            generator=", ".join(generators))
    zip_sha256 = data.zip_sha256()
    path = write(root, report, zip_sha256)
    plot = np.asarray(Image.open(io.BytesIO((path / REPORT_PNG).read_bytes())).convert("RGB"))
    a, o = report.composite, report.original
    notes: tuple[str, ...] = () if report.iou_gain > 0 else (
        f"the composite does not beat the original blend on detector IoU ({a.detector_iou:.3f} vs "
        f"{o.detector_iou:.3f})",)
    missed = [name for name, met in report.targets_met.items() if met is False]
    if missed:
        notes += (f"realism targets missed: {', '.join(missed)} (see the table)",)
    return QualityReportResult(path, report, zip_sha256, plot, notes)
