"""One writer per partition at a time, and whether the process behind a pid is still running.

:func:`partition_lock` guards ``<root>/_locks/<partition>.lock`` with ``fcntl.flock``. The kernel
drops a flock when its process dies (SIGKILL included), so a killed run never leaves a stale
lock behind. Steps of one run share the lock: they pass the same ``owner`` (the Dagster run id),
so the parallel steps of the multiprocess executor do not shut each other out, while a step of
another run fails at once with :class:`LockHeldError`.

Non-blocking by default: a second run of a partition is a mistake (the instance's run queue
allows one run per partition), so it fails fast with a message that names the holder, instead of
holding a run slot while it waits and then redoing the work the first run just did. Pass
``timeout`` (seconds) to wait instead.

How it works: the lock file is only held (exclusively) for the instant it takes to look at and
update its content, the current owner's record. Each holder keeps a shared flock on
``<partition>@<owner>.hold`` for as long as it holds the lock; an owner is active while someone
holds that file. flock works on local file systems and on NFSv4 (emulated with byte-range locks).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from cloudgan_core.errors import CloudGANError
from cloudgan_core.storage import UnsafePathError, inside

#: Lock files live in this folder of the storage root (no asset can have this name: asset names
#: start with a letter; not a dot folder, which would look like a temporary).
LOCK_DIR = "_locks"
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: A process that started this long (seconds) after a reference time reuses an old pid;
#: /proc gives start times to 1/CLK_TCK s against a boot time in whole seconds.
_PID_REUSE_SLACK_S = 2.0


class LockHeldError(CloudGANError):
    """Another run (or process) is writing the partition."""


def this_host() -> str:
    """The name of this machine (what a pid is relative to)."""
    return socket.gethostname()


def _proc_state(pid: int) -> tuple[str, float | None] | None:
    """``(state letter, start time as a Unix time)`` from ``/proc``, or None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ("X", None) if Path("/proc/self/stat").exists() else None
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    try:
        btime = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return fields[0], btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return fields[0] if fields else "?", None


def process_alive(pid: int, *, started_before: float | None = None) -> bool:
    """Whether a process ``pid`` runs on this host (a zombie does not count).

    Parameters
    ----------
    pid
        The process id.
    started_before
        Unix time (s) at which the process is known to have been running, e.g. when it created a
        file. A process that started later is another one that got the same pid; where ``/proc``
        is available it counts as not alive.
    """
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    state = _proc_state(pid)
    if state is None:
        return True
    letter, start = state
    if letter in ("Z", "X"):
        return False
    return not (started_before is not None and start is not None and start > started_before + _PID_REUSE_SLACK_S)


def _read_record(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        record = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(fd: int, record: dict) -> None:
    data = json.dumps(record, sort_keys=True).encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _held(path: Path) -> bool:
    """Whether some process holds a flock on ``path`` (False when it does not exist)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the probe's own lock
    return False


@contextmanager
def _gate(path: Path) -> Iterator[int]:
    """The lock file, held exclusively for the duration of the block (a short look-and-update)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


@contextmanager
def partition_lock(root: str | Path, partition: str, *, owner: str | None = None,
                   timeout: float = 0.0) -> Iterator[Path]:
    """Hold the write lock of one partition (or unpartitioned asset) of a storage root.

    Parameters
    ----------
    root
        The storage root; the lock file is ``<root>/_locks/<partition>.lock``.
    partition
        The partition key (one plain file name; checked with :func:`~cloudgan_core.storage.inside`).
    owner
        Who holds it: holders with the same owner share the lock (the steps of one Dagster run
        pass the run id). Letters, digits, ``_.-``, at most 64 characters. Default: this process.
    timeout
        Seconds to wait for another owner to finish; 0 (the default) fails at once.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    LockHeldError
        Another owner holds the lock (after ``timeout``); the message names its pid, host and
        start time.
    UnsafePathError
        ``partition`` or ``owner`` is not a plain name.
    """
    owner = owner or f"pid{os.getpid()}"
    if not _OWNER.match(owner):
        raise UnsafePathError(f"lock owner {owner!r} is not a plain name (letters, digits, _.-; at most 64)")
    folder = inside(root, LOCK_DIR)
    inside(folder, partition)  # a plain name: not empty, no separator, not . or ..
    lock = inside(root, LOCK_DIR, f"{partition}.lock")
    hold = inside(root, LOCK_DIR, f"{partition}@{owner}.hold")
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        with _gate(lock) as fd:
            record = _read_record(fd)
            other = record.get("owner")
            other_hold = (inside(root, LOCK_DIR, f"{partition}@{other}.hold")
                          if isinstance(other, str) and other != owner and _OWNER.match(other) else None)
            if other_hold is None or not _held(other_hold):
                if other_hold is not None:  # left by a killed holder
                    other_hold.unlink(missing_ok=True)
                hold_fd = os.open(hold, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                fcntl.flock(hold_fd, fcntl.LOCK_SH)
                _write_record(fd, {"owner": owner, "pid": os.getpid(), "host": this_host(),
                                   "since": datetime.now(timezone.utc).isoformat(timespec="seconds")})
                break
        if time.monotonic() >= deadline:
            waited = f" after waiting {timeout:g} s" if timeout > 0 else ""
            raise LockHeldError(
                f"another run is writing {partition} (lock {lock} held by pid {record.get('pid', '?')} on "
                f"{record.get('host', '?')} since {record.get('since', '?')}, owner {other}){waited}; let it "
                "finish, or stop it, then run this partition again")
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    try:
        yield lock
    finally:
        with _gate(lock):
            os.close(hold_fd)
            if not _held(hold):  # the last holder of this owner tidies up
                hold.unlink(missing_ok=True)
