"""Exceptions raised by the core library.

Every error names what it is about (a file, a URL, a setting) and what is wrong, so a failing
Dagster partition shows the user something they can act on.
"""

from __future__ import annotations

from pathlib import Path


class CloudGANError(Exception):
    """Base class of every error the core library raises on purpose."""


class ProductError(CloudGANError):
    """A Sentinel-3 product (or one file inside it) is unusable.

    Parameters
    ----------
    source
        The product or file the problem is about (path or name).
    problem
        What is wrong, in words a user understands.
    """

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")
