"""Stage helpers shared by the modules of cloudgan_core.stages, and their Dagster metadata."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from cloudgan_assets.metadata import figures
from cloudgan_core.atomic import atomic_dir
from cloudgan_core.stages.base import Markdown, stored_partitions
from cloudgan_core.storage import UnsafePathError


def test_stored_partitions_lists_the_keys_with_a_folder(tmp_path):
    for key in ("B", "A"):
        (tmp_path / "composites" / key).mkdir(parents=True)
    assert stored_partitions(tmp_path, "composites", ["C", "B", "A", "B"]) == ["A", "B"]
    assert stored_partitions(tmp_path, "surface_tiles", ["A"]) == []  # nothing stored at all
    with pytest.raises(UnsafePathError):
        stored_partitions(tmp_path, "composites", ["../composites"])


def test_stored_partitions_puts_back_an_interrupted_swap(tmp_path):
    folder = tmp_path / "composites" / "A"
    with atomic_dir(folder) as tmp:
        (tmp / "x").write_text("1")
    with atomic_dir(tmp_path / "probe") as probe:  # this machine's temporaries are named like this
        host, tag = probe.name.rsplit("-", 2)[1:]
    folder.rename(folder.with_name(f".A.old-999999999-{host}-{tag}"))  # a writer killed between its renames
    assert stored_partitions(tmp_path, "composites", ["A"]) == ["A"]
    assert (folder / "x").read_text() == "1"


def test_figures_become_typed_metadata():
    md = figures({"n": 3, "f": 0.1234567891, "p": Path("/x/index.csv"), "table": Markdown("| a |\n|---|"),
                  "per_product": {"A": 1}, "keys": ["A"], "none": None, "text": "hi"})
    assert md["n"] == dg.MetadataValue.int(3) and md["f"] == dg.MetadataValue.float(0.123457)
    assert md["p"] == dg.MetadataValue.path("/x/index.csv")
    assert md["table"] == dg.MetadataValue.md("| a |\n|---|")
    assert md["per_product"] == dg.MetadataValue.json({"A": 1}) and md["keys"] == dg.MetadataValue.json(["A"])
    assert md["text"] == dg.MetadataValue.text("hi") and "none" not in md
