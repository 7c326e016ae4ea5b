"""The ``quality_report`` stage: how the training set's composites compare with the original blend.

Files (``<root>/quality_report/``):

- ``report.json``: :class:`cloudgan_core.quality.QualityReport` as JSON (``n_pairs``, ``alpha`` and
  ``original`` figures, ``iou_gain``, ``iou_gain_per_tile``, ``cover_histogram`` in percent) plus
  ``zip_sha256``, the SHA-256 of the ``training_set.zip`` it describes;
- ``report.png``: the figures as a bar chart (:func:`cloudgan_core.quality.report_plot_png`).
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
from cloudgan_core.quality import BlendFigures, QualityReport, quality_report, report_plot_png
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
        a, o = self.report.alpha, self.report.original
        return {"pairs": self.report.n_pairs, "alpha_detector_iou": a.detector_iou,
                "original_detector_iou": o.detector_iou, "iou_gain": self.report.iou_gain,
                "iou_gain_per_tile": self.report.iou_gain_per_tile,
                "alpha_brightness_outside_abs": a.brightness_outside_abs,
                "original_brightness_outside_abs": o.brightness_outside_abs, "zip_sha256": self.zip_sha256,
                "table": Markdown(self.report.table_markdown()),
                "cover_histogram": Markdown(histogram_markdown(self.report.cover_histogram)),
                "report": self.path / REPORT_JSON, "report_png": self.path / REPORT_PNG}

    def preview(self) -> Preview | None:
        return Preview(self.plot, "detector IoU, brightness change, cover histogram", 720)


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
            n_pairs=int(raw["n_pairs"]), alpha=BlendFigures(**{k: raw["alpha"][k] for k in blend}),
            original=BlendFigures(**{k: raw["original"][k] for k in blend}), iou_gain=float(raw["iou_gain"]),
            iou_gain_per_tile=float(raw["iou_gain_per_tile"]), cover_histogram=dict(raw["cover_histogram"]))
        return QualityReportData(report, str(raw["zip_sha256"]), (path / REPORT_PNG).read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CloudGANError(f"{path}: not a quality report ({type(exc).__name__}: {exc}); materialize "
                            "quality_report again") from None


def build(root: Path) -> QualityReportResult:
    """Quality figures of the training set (see :func:`cloudgan_core.quality.quality_report`).

    Detector IoU (brightness threshold vs mask) and brightness change inside/outside the mask
    (digital numbers) for the set's composites and for the original 50 % blend of the same clouds
    and surfaces, plus the cover histogram and the SHA-256 of ``training_set.zip``. A note warns
    when the alpha composite does not beat the original blend on detector IoU.

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
    report = quality_report(data.arrays("images"), data.arrays("surface"), data.arrays("clouds"),
                            data.arrays("masks"), cover=cover)
    zip_sha256 = data.zip_sha256()
    path = write(root, report, zip_sha256)
    plot = np.asarray(Image.open(io.BytesIO((path / REPORT_PNG).read_bytes())).convert("RGB"))
    a, o = report.alpha, report.original
    notes = () if report.iou_gain > 0 else (
        f"the alpha composite does not beat the original blend on detector IoU ({a.detector_iou:.3f} vs "
        f"{o.detector_iou:.3f})",)
    return QualityReportResult(path, report, zip_sha256, plot, notes)
