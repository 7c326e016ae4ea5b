"""Atomic writes: a failing block leaves the old output (or nothing) and no temporary files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloudgan_core.atomic import atomic_dir, atomic_path, save_npy, write_bytes, write_text


class Boom(RuntimeError):
    pass


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(Boom):
        with atomic_dir(final) as tmp:
            assert tmp != final and tmp.parent == final.parent and tmp.is_dir()
            (tmp / "new.txt").write_text("half")
            raise Boom
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left
    assert sorted(p.name for p in final.iterdir()) == ["old.txt"]
    assert (final / "old.txt").read_text() == "old"


def test_atomic_dir_failure_without_old_folder_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(Boom):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "a").write_text("x")
            raise Boom
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_success_replaces_the_whole_folder(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "stale.txt").write_text("stale")
    with atomic_dir(final) as tmp:
        (tmp / "new.txt").write_text("new")
        assert not (final / "new.txt").exists()  # invisible until the block ends
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_path_failure_leaves_no_file(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "file.bin"
    with pytest.raises(Boom):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half written")
            raise Boom
    assert list((tmp_path / "sub").iterdir()) == []


def test_atomic_path_failure_keeps_the_old_file(tmp_path: Path) -> None:
    final = write_text(tmp_path / "f.txt", "old")
    with pytest.raises(Boom):
        with atomic_path(final) as tmp:
            tmp.write_text("new")
            raise Boom
    assert final.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_writers_round_trip(tmp_path: Path) -> None:
    assert write_bytes(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert write_text(tmp_path / "t.txt", "héllo").read_text(encoding="utf-8") == "héllo"
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4)[:, ::2]  # non-contiguous input
    save_npy(tmp_path / "a.npy", arr)
    back = np.load(tmp_path / "a.npy", mmap_mode="r")
    np.testing.assert_array_equal(back, arr)
    assert back.dtype == np.uint16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "b.bin", "t.txt"]
