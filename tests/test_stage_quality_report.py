"""The quality_report stage called directly: report.json, report.png, read back, notes."""

from __future__ import annotations

import hashlib
import json

import pytest

from cloudgan_core.atomic import MissingInputError
from cloudgan_core.errors import CloudGANError
from cloudgan_core.stages import quality_report, training_set
from tests.stage_helpers import composites_of, pool_of_two, provenance


def test_quality_report_of_a_training_set(tmp_path):
    pool_of_two(tmp_path)
    ts = training_set.build(tmp_path, products=composites_of(tmp_path, {"A": 5, "B": 4}))
    result = quality_report.build(tmp_path)
    saved = json.loads((tmp_path / "quality_report" / "report.json").read_text())
    zip_bytes = (tmp_path / "training_set" / "training_set.zip").read_bytes()
    assert saved["zip_sha256"] == ts.zip_sha256 == result.zip_sha256 == hashlib.sha256(zip_bytes).hexdigest()
    f = result.figures()
    assert f["pairs"] == saved["n_pairs"] == 9
    assert f["composite_brightness_outside_abs"] == 0.0 < f["original_brightness_outside_abs"]
    assert f["composite_detector_iou"] == saved["composite"]["detector_iou"]
    assert saved["generator"] == f["generator"] == "gan" and saved["realism_pairs"] == 9
    assert saved["realism"]["composite"]["bright_cold_fraction"] == f["composite_bright_cold_fraction"]
    assert saved["realism"]["composite"]["s5_s3_snow_pixels"] > 0  # the snow of surface A under some clouds
    assert saved["cover_histogram"]["edges"][-1] == 100.0 and sum(saved["cover_histogram"]["counts"]) == 9
    assert "| detector IoU (set Otsu) |" in f["table"] and "| cloud cover | pairs |" in f["cover_histogram"]
    assert f["report"] == tmp_path / "quality_report" / "report.json"
    shown = result.preview()
    assert shown.image.ndim == 3 and shown.max_side == 720
    assert (tmp_path / "quality_report" / "report.png").read_bytes()[:4] == b"\x89PNG"
    back = quality_report.read(tmp_path)
    assert back.report == result.report and back.zip_sha256 == result.zip_sha256
    assert back.plot_png == (tmp_path / "quality_report" / "report.png").read_bytes()
    # these clouds are clean bright blocks: the 50 % blend finds them as well, and the note says so
    assert result.report.iou_gain <= 0 and result.notes[0] == (
        f"the composite does not beat the original blend on detector IoU "
        f"({result.report.composite.detector_iou:.3f} vs {result.report.original.detector_iou:.3f})")
    missed = [k for k, met in saved["targets_met"].items() if met is False]
    assert (result.notes[1:] == (f"realism targets missed: {', '.join(missed)} (see the table)",)) == bool(missed)


def test_missing_and_empty_inputs_are_named(tmp_path):
    with pytest.raises(MissingInputError, match="materialize training_set first"):
        quality_report.build(tmp_path)
    training_set.write(tmp_path, [], provenance=provenance())
    with pytest.raises(CloudGANError, match="the training set is empty"):
        quality_report.build(tmp_path)
    with pytest.raises(MissingInputError, match="materialize quality_report first"):
        quality_report.read(tmp_path)
    (tmp_path / "quality_report").mkdir()
    (tmp_path / "quality_report" / "report.json").write_text("{}")
    with pytest.raises(CloudGANError, match="not a quality report"):
        quality_report.read(tmp_path)
