"""File and stream digests: the one place the project hashes bytes it stores or receives.

Two algorithms are used: MD5, because the Sentinel-3 manifest and the CDSE catalogue give MD5
checksums (an integrity check against a published value, not a security feature), and SHA-256
for everything this project publishes itself (generator checkpoints, ``training_set.zip``).
Digests are lower-case hexadecimal strings.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, Protocol

Algorithm = Literal["md5", "sha256"]
ALGORITHMS: tuple[str, ...] = ("md5", "sha256")
#: Bytes read per chunk when hashing a file (1 MiB: memory stays bounded whatever the file's size).
CHUNK_BYTES = 1 << 20


class Digest(Protocol):
    """What :func:`new_digest` returns (a :mod:`hashlib` object)."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def new_digest(algorithm: Algorithm = "sha256") -> Digest:
    """An empty digest to feed chunk by chunk (``update``), e.g. while a file is copied or received.

    Raises
    ------
    ValueError
        ``algorithm`` is not one of :data:`ALGORITHMS`.
    """
    if algorithm == "md5":
        return hashlib.md5(usedforsecurity=False)  # the checksum the manifest and catalogue publish
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"digest algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


def file_digest(path: str | Path, algorithm: Algorithm = "sha256") -> str:
    """Hex digest of a file's bytes, read in :data:`CHUNK_BYTES` chunks.

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        ``algorithm`` is not one of :data:`ALGORITHMS`.
    """
    digest = new_digest(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
