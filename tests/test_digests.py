"""cloudgan_core.digests: the one file and stream hashing of the project."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cloudgan_core.digests import CHUNK_BYTES, file_digest, new_digest


def test_file_digest_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * ((2 * CHUNK_BYTES + 123) // 256 + 1)  # more than two chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()
    assert file_digest(path, "sha256") == hashlib.sha256(data).hexdigest()
    assert file_digest(path, "md5") == hashlib.md5(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_digest(empty) == hashlib.sha256(b"").hexdigest()


def test_stream_digest_equals_file_digest(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"cloud" * 1000)
    digest = new_digest("md5")
    for k in range(0, 5000, 777):
        digest.update((b"cloud" * 1000)[k:k + 777])
    assert digest.hexdigest() == file_digest(path, "md5")


def test_unknown_algorithm_and_missing_file_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"one of \('md5', 'sha256'\), got 'sha1'"):
        new_digest("sha1")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        file_digest(tmp_path / "nothing")
