"""Write files and folders under a temporary name, then rename into place.

A crash (or a failing step) never leaves half a file that looks whole: readers either see the
old complete output, the new complete output, or nothing.

Temporaries are siblings of the output named ``.<name>.<kind>-<pid>-<host>-<random>``: ``tmp``
(being written), ``old`` (the previous complete folder during a swap) and ``del`` (a replaced
folder being deleted); ``<host>`` is 8 hex digits of a hash of the machine name. A killed writer
leaves them behind, so every writer first:

- restores an interrupted folder swap (:func:`recover_dir`): killed between its two renames, a
  swap leaves the output missing and the previous complete folder under its ``old`` name;
- sweeps the output's stale temporaries (:func:`sweep_stale`): those whose writer is gone.

Readers call :func:`require_inputs`, which restores an interrupted swap too and otherwise names
the asset to materialize. A full disk raises :class:`DiskFullError` naming the output.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudgan_core.errors import CloudGANError
from cloudgan_core.locks import process_alive, this_host

#: Temporaries written on another machine (their pid means nothing here), or named before the
#: host was part of the name, are swept once untouched for this many hours (environment
#: variable ``CLOUDGAN_STALE_TEMP_HOURS``).
DEFAULT_STALE_TEMP_HOURS = 24.0
#: An ``old`` folder from another machine is restored once the output has been missing this long
#: (s): a live swap renames it back within microseconds.
SWAP_GRACE_S = 60.0
#: How long a reader waits (s) for a swap in progress in a live process on this machine.
SWAP_WAIT_S = 5.0

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old|del)-(?P<pid>\d{1,10})-(?:(?P<host>[0-9a-f]{8})-)?"
                   r"[0-9a-f]{8}$")
_FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}


class DiskFullError(CloudGANError):
    """The file system ran out of space (or quota) while an output was written.

    Parameters
    ----------
    path
        The output being written (the final name, not the temporary one).
    reason
        ``"no space left on the device"`` or ``"disk quota exceeded"``.
    free
        Free bytes on that file system when the error was seen (None: unknown).
    what
        What was being made, e.g. ``"masks for <partition>"``.
    """

    def __init__(self, path: str | Path, reason: str, free: int | None, what: str | None = None) -> None:
        self.path, self.reason, self.free, self.what = Path(path), reason, free, what
        room = "free space unknown" if free is None else f"{_size(free)} free there"
        super().__init__(f"{what + ': ' if what else ''}{reason} while writing {self.path} ({room}); "
                         "free some space (or move the storage root) and run it again")

    def about(self, what: str) -> DiskFullError:
        """The same error, saying what was being made."""
        return DiskFullError(self.path, self.reason, self.free, what)


class MissingInputError(CloudGANError, FileNotFoundError):
    """An input folder does not exist: its asset has not been materialized for that partition."""


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _full_disk_error(exc: BaseException, final: Path) -> DiskFullError | None:
    """A :class:`DiskFullError` for ``final`` when ``exc`` (or what caused it) is ENOSPC/EDQUOT."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, DiskFullError):
            return DiskFullError(final, exc.reason, exc.free, exc.what)
        if isinstance(exc, OSError) and exc.errno in _FULL:
            try:
                free: int | None = shutil.disk_usage(final.parent).free
            except OSError:
                free = None
            return DiskFullError(final, _FULL[exc.errno], free)
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _host_tag() -> str:
    return hashlib.sha256(this_host().encode("utf-8")).hexdigest()[:8]


def _temp_sibling(final: Path, kind: str) -> Path:
    return final.with_name(f".{final.name}.{kind}-{os.getpid()}-{_host_tag()}-{uuid.uuid4().hex[:8]}")


@dataclass(frozen=True)
class _Temp:
    path: Path
    kind: str
    pid: int
    host: str | None
    changed: float  # st_ctime: the last rename or write, after the writer started

    def writer_gone(self, grace_s: float) -> bool:
        """This machine's writer no longer runs; elsewhere (or unknown): untouched for ``grace_s``."""
        if self.host == _host_tag():
            return not process_alive(self.pid, started_before=self.changed)
        return time.time() - self.changed > grace_s


def _temporaries(final: Path) -> list[_Temp]:
    """The temporaries of ``final`` in its folder (nothing else there), newest first."""
    found = []
    try:
        entries = list(os.scandir(final.parent))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or m["name"] != final.name:
            continue
        try:
            changed = entry.stat(follow_symlinks=False).st_ctime
        except FileNotFoundError:
            continue
        found.append(_Temp(Path(entry.path), m["kind"], int(m["pid"]), m["host"], changed))
    return sorted(found, key=lambda t: t.changed, reverse=True)


def _stale_hours() -> float:
    raw = os.environ.get("CLOUDGAN_STALE_TEMP_HOURS", "")
    try:
        hours = float(raw) if raw else DEFAULT_STALE_TEMP_HOURS
    except ValueError:
        raise CloudGANError(f"CLOUDGAN_STALE_TEMP_HOURS={raw!r} is not a number of hours") from None
    return max(hours, 0.0)


def recover_dir(final: str | Path, *, wait_s: float = SWAP_WAIT_S) -> bool:
    """Put back the previous complete folder when a swap was killed between its two renames.

    When ``final`` is missing and an ``old`` sibling is left by a writer that is gone (its pid no
    longer runs here; from another machine: after :data:`SWAP_GRACE_S`), the newest such folder
    is renamed back to ``final``. A swap that may still be in progress (its writer runs here, or
    it is younger than that grace) is given up to ``wait_s`` seconds to finish instead.

    Returns
    -------
    bool
        Whether a folder was restored.
    """
    final = Path(final)
    deadline = time.monotonic() + wait_s
    while not os.path.lexists(final):
        olds = [t for t in _temporaries(final) if t.kind == "old" and t.path.is_dir() and not t.path.is_symlink()]
        if not olds:
            return False
        gone = [t for t in olds if t.writer_gone(SWAP_GRACE_S)]
        if gone:
            try:
                os.rename(gone[0].path, final)
            except OSError:  # another process restored or wrote it meanwhile
                return False
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return False


def recover_folders(parent: str | Path) -> list[Path]:
    """:func:`recover_dir` for every folder of ``parent`` with an ``old`` sibling (one listing of
    ``parent``, so a folder of many partitions costs one scan); returns the restored folders."""
    parent = Path(parent)
    try:
        names = {m["name"] for e in os.scandir(parent) if (m := _TEMP.match(e.name)) and m["kind"] == "old"}
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [parent / name for name in sorted(names) if recover_dir(parent / name)]


def sweep_stale(final: str | Path) -> list[Path]:
    """Remove the temporaries that killed writers left beside ``final``.

    Only siblings named like this module's temporaries of ``final`` are looked at. One is removed
    when its writer (the pid in its name) no longer runs on this machine, or, when it was written
    on another machine (or named by an older version), when it has been untouched for
    ``$CLOUDGAN_STALE_TEMP_HOURS`` (default 24) hours. A live writer's temporaries stay; so does
    an ``old`` folder while ``final`` is missing (:func:`recover_dir` may need it).

    Returns
    -------
    list of Path
        What was removed.
    """
    final = Path(final)
    grace = _stale_hours() * 3600.0
    missing = not os.path.lexists(final)
    removed = []
    for temp in _temporaries(final):
        if (temp.kind == "old" and missing) or not temp.writer_gone(grace):
            continue
        if temp.path.is_dir() and not temp.path.is_symlink():
            shutil.rmtree(temp.path, ignore_errors=True)
        else:
            temp.path.unlink(missing_ok=True)
        if not os.path.lexists(temp.path):
            removed.append(temp.path)
    return removed


def require_inputs(**folders: str | Path | Iterable[str | Path]) -> None:
    """Check that input folders exist, restoring an interrupted swap first (:func:`recover_dir`).

    Parameters
    ----------
    **folders
        Asset name → its folder (``<root>/<asset>/<partition>`` or ``<root>/<asset>``), or an
        iterable of such folders, e.g. ``require_inputs(masks=masks_dir, false_color=fc_dir)``.

    Raises
    ------
    MissingInputError
        A folder does not exist: "materialize <asset> for <partition> first".
    """
    for asset, value in folders.items():
        for folder in map(Path, [value] if isinstance(value, (str, os.PathLike)) else value):
            recover_dir(folder)
            if not folder.is_dir():
                which = f" for {folder.name}" if folder.name != asset else ""
                raise MissingInputError(f"{folder} does not exist: materialize {asset}{which} first")


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` when the block succeeds.

    The temporary file is removed if the block raises; stale temporaries of ``final`` left by
    killed writers are removed first (:func:`sweep_stale`).

    Raises
    ------
    DiskFullError
        The file system is full (ENOSPC) or the quota is used up (EDQUOT).
    """
    final = Path(final)
    tmp = _temp_sibling(final, "tmp")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(final)
        yield tmp
        os.replace(tmp, final)
    except BaseException as exc:
        full = _full_disk_error(exc, final)
        if full is not None:
            raise full from exc
        raise
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Atomically save ``array`` as a ``.npy`` file (opens with ``np.load(path, mmap_mode='r')``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
    return path


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder; swap it in for ``final`` when the block succeeds.

    An existing ``final`` is replaced whole: it is renamed aside (``old``), the new folder renamed
    in, and only then the old one deleted (renamed to ``del`` first, so an ``old`` folder is always
    complete). If the block raises, the temporary folder is removed and ``final`` is untouched.
    Before anything, an interrupted swap of ``final`` is restored (:func:`recover_dir`) and stale
    temporaries are removed (:func:`sweep_stale`).

    Raises
    ------
    DiskFullError
        The file system is full (ENOSPC) or the quota is used up (EDQUOT) while writing.
    """
    final = Path(final)
    tmp, old = _temp_sibling(final, "tmp"), _temp_sibling(final, "old")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        recover_dir(final)
        sweep_stale(final)
        tmp.mkdir()
        yield tmp
        if os.path.lexists(final):
            os.replace(final, old)
        os.replace(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if os.path.lexists(old) and not os.path.lexists(final):  # the second rename failed: undo the first
            os.replace(old, final)
        full = _full_disk_error(exc, final)
        if full is not None:
            raise full from exc
        raise
    if os.path.lexists(old):
        trash = _temp_sibling(final, "del")
        os.replace(old, trash)
        shutil.rmtree(trash, ignore_errors=True)
