"""Download an SL_1_RBT product from CDSE: only the files the pipeline reads, or the whole zip.

Per-file mode (default) fetches ``xfdumanifest.xml`` first, then the pipeline's files in
parallel (at most ``max_connections`` at once), each checked against the manifest's size and
MD5. Work happens in a hidden staging folder ``.<name>.SEN3.partial`` beside the product;
every file is written as ``<file>.part`` and renamed once its checksum matches, and the staging
folder becomes ``<name>.SEN3`` only when every file is there. A failed download leaves no
``.part`` file and no ``<name>.SEN3``; its verified files stay in the staging folder and are
not downloaded again by the next try.

Redirects are followed by hand so that the bearer token goes along, but only to the download
host and hosts sharing its registrable domain (:func:`cloudgan_core.cdse.http.same_site`).

Hostile servers are expected: every path is built from the validated product name with
:func:`cloudgan_core.storage.inside` (never outside ``dest_dir``); the manifest is read up to
:data:`~cloudgan_core.slstr.manifest.MAX_MANIFEST_BYTES`, a file up to its manifest size (a zip up
to its catalogue size) plus :data:`DOWNLOAD_SLACK`; a transfer slower than ``min_rate`` bytes/s
over ``stall_seconds``, silent for ``stall_seconds / 2`` or older than ``request_deadline`` fails
(:class:`~cloudgan_core.cdse.http.TransferLimits`); none of these is retried. Error texts pass
through :func:`~cloudgan_core.cdse.redact.redact` with every secret the token manager knows.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urljoin

import requests
import urllib3

from cloudgan_core.atomic import write_bytes
from cloudgan_core.cdse.auth import TokenManager
from cloudgan_core.cdse.catalogue import ProductInfo
from cloudgan_core.cdse.config import MAX_CONNECTIONS, CdseEndpoints
from cloudgan_core.cdse.errors import (
    CdseConfigError,
    CdseDownloadError,
    CdseError,
    CdseLimitError,
    CdseNotFoundError,
    CdseOfflineError,
)
from cloudgan_core.cdse.http import (
    DEFAULT_MIN_RATE,
    DEFAULT_REQUEST_DEADLINE,
    DEFAULT_STALL_SECONDS,
    REDIRECT_STATUSES,
    RETRY_STATUSES,
    Log,
    RetryPolicy,
    TransferLimits,
    TransferWatch,
    error_excerpt,
    get_log,
    parse_retry_after,
    receive,
    same_site,
    url_path,
)
from cloudgan_core.cdse.redact import redact
from cloudgan_core.digests import file_digest, new_digest
from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest, ManifestFile, parse_manifest
from cloudgan_core.slstr.product import OPTIONAL_FILES, PIPELINE_FILES
from cloudgan_core.storage import inside

#: Bytes a file may run past the size the manifest (or, for a zip, the catalogue) gives before
#: the download stops; it then fails its size check anyway.
DOWNLOAD_SLACK = 64 * 1024
#: Largest single download, in bytes (whole SL_1_RBT zips are about 0.3-0.6 GB).
MAX_DOWNLOAD_BYTES = 2 * 1024**3

_MAX_REDIRECTS = 10
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.HTTPError,  # raised by receive(), which reads the raw stream
)


def product_url(endpoints: CdseEndpoints, info: ProductInfo) -> str:
    """``{download_url}/Products(<Id>)``."""
    return f"{endpoints.download_url}/Products({info.id})"


def node_url(endpoints: CdseEndpoints, info: ProductInfo, relpath: str) -> str:
    """``$value`` URL of one file inside the product, e.g. ``.../Nodes(x.SEN3)/Nodes(a.nc)/$value``."""
    nodes = [f"{info.key}.SEN3", *relpath.split("/")]
    return product_url(endpoints, info) + "".join(f"/Nodes({quote(n, safe='')})" for n in nodes) + "/$value"


def _member(folder: Path, relpath: str, suffix: str = "") -> Path:
    """``folder/relpath`` (+ ``suffix`` on the last part), confined to ``folder``."""
    *parents, last = relpath.split("/")
    return inside(folder, *parents, last + suffix)


def _byte_cap(size: int | None, what: str) -> int:
    """Most bytes to accept for a download whose expected size is ``size`` (None: unknown)."""
    if size is None or size < 0:
        return MAX_DOWNLOAD_BYTES
    if size > MAX_DOWNLOAD_BYTES:
        raise CdseDownloadError(f"{what}: {size} bytes announced, more than the {MAX_DOWNLOAD_BYTES} "
                                "bytes any one download may have; refusing it")
    return size + DOWNLOAD_SLACK


def _intact(path: Path, md5: str | None, size: int | None) -> bool:
    if not path.is_file():
        return False
    if size is not None and size >= 0 and path.stat().st_size != size:
        return False
    return md5 is None or file_digest(path, "md5") == md5


class _Cancelled(Exception):
    """Another file failed; this one stopped early."""


@dataclass
class _Fetcher:
    """Authenticated GETs with manual redirects, retries and checksum checks."""

    endpoints: CdseEndpoints
    tokens: TokenManager
    policy: RetryPolicy
    timeout: tuple[float, float]
    session_factory: Callable[[], requests.Session]
    log: Log
    stop: threading.Event
    limits: TransferLimits

    def __post_init__(self) -> None:
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self.bytes_downloaded = 0

    def session(self) -> requests.Session:
        sess = getattr(self._local, "session", None)
        if sess is None:
            sess = self.session_factory()
            self._local.session = sess
            with self._sessions_lock:
                self._sessions.append(sess)
        return sess

    def close(self) -> None:
        with self._sessions_lock:
            for sess in self._sessions:
                sess.close()
            self._sessions.clear()

    def _get(self, url: str) -> tuple[requests.Response, str | None]:
        """GET following redirects by hand; returns the final response and the token sent to it."""
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            token = None
            headers = {}
            if same_site(self.endpoints.download_url, current):
                token = self.tokens.access_token()
                headers["Authorization"] = f"Bearer {token}"
            resp = self.session().get(
                current, headers=headers, stream=True, allow_redirects=False, timeout=self.timeout
            )
            location = resp.headers.get("Location")
            if resp.status_code in REDIRECT_STATUSES and location:
                resp.close()
                current = urljoin(current, location)
                continue
            return resp, token
        raise CdseDownloadError(f"more than {_MAX_REDIRECTS} redirects from {url_path(url)}")

    def fetch(
        self,
        url: str,
        what: str,
        *,
        max_bytes: int,
        part: Path | None = None,
        md5: str | None = None,
        size: int | None = None,
    ) -> bytes | None:
        """Download ``url``; into ``part`` (renamed to drop ``.part`` when intact) or into memory.

        Raises
        ------
        CdseDownloadError
            After the retries, or at once for 403/404/other client errors and for a reply that
            breaks a limit (more than ``max_bytes``, too slow, past the deadline), naming ``what``.
        """
        problem = ""
        attempts = self.policy.retries + 1
        for attempt in range(attempts):
            if self.stop.is_set():
                raise _Cancelled()
            retry_after = None
            watch = self.limits.watch(what, idle=self.timeout[1])
            try:
                resp, token = self._get(url)
                with resp:
                    status = resp.status_code
                    where = url_path(resp.url)
                    if status == 200:
                        data, got_size, got_md5 = self._receive(resp, part, watch, max_bytes, size)
                        if size is not None and size >= 0 and got_size != size:
                            problem = f"size mismatch (expected {size} bytes, got {got_size})"
                        elif md5 is not None and got_md5 != md5:
                            problem = f"MD5 mismatch (expected {md5}, got {got_md5})"
                        else:
                            if part is not None:
                                os.replace(part, part.with_name(part.name.removesuffix(".part")))
                            return data
                    elif status in RETRY_STATUSES:
                        problem = f"HTTP {status} from {where}"
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    elif status == 401 and token is not None:
                        problem = f"HTTP 401 from {where} (token refused)"
                        self.tokens.invalidate(token)
                    elif status == 401:
                        raise CdseDownloadError(
                            f"{what}: HTTP 401 from {where}: the download was redirected to a host "
                            f"outside {url_path(self.endpoints.download_url).split('/')[0]}, which is "
                            "never sent the CDSE token"
                        )
                    elif status == 403:
                        raise CdseDownloadError(
                            f"{what}: CDSE refused access (HTTP 403 from {where}); the account may lack "
                            "download rights or have used up its quota"
                        )
                    elif status == 404:
                        raise CdseNotFoundError(f"{what}: not found (HTTP 404 from {where})")
                    else:
                        detail = error_excerpt(resp, watch, self.tokens.secrets()) if status < 500 else ""
                        raise CdseDownloadError(f"{what}: HTTP {status} from {where} {detail}".rstrip())
            except CdseLimitError as exc:
                raise CdseDownloadError(str(exc)) from None
            except _NETWORK_ERRORS as exc:
                problem = f"{type(exc).__name__} while fetching"
            finally:
                if part is not None and part.exists():
                    part.unlink()
            if attempt + 1 < attempts:
                pause = self.policy.wait(attempt, retry_after)
                self.log.warning(redact(f"CDSE download {what}: {problem}; retry {attempt + 1}/{self.policy.retries} "
                                        f"in {pause:.1f} s", self.tokens.secrets()))
                self._pause(pause)
        raise CdseDownloadError(f"{what}: {problem} after {attempts} attempts ({url_path(url)})")

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self.stop.wait(seconds)  # wakes early when another file failed

    def _receive(self, resp: requests.Response, part: Path | None, watch: TransferWatch, max_bytes: int,
                 expected: int | None) -> tuple[bytes | None, int, str]:
        digest = new_digest("md5")
        chunks: list[bytes] = []
        with open(part, "wb") if part is not None else nullcontext() as fh:
            keep = fh.write if fh is not None else chunks.append

            def sink(piece: bytes) -> None:
                if self.stop.is_set():
                    raise _Cancelled()
                digest.update(piece)
                keep(piece)

            try:
                count = receive(resp, sink, watch, max_bytes=max_bytes, expected=expected)
            finally:
                with self._sessions_lock:
                    self.bytes_downloaded += watch.count
        return (None if part is not None else b"".join(chunks)), count, digest.hexdigest()


def _wanted_files(manifest: Manifest, files: Sequence[str] | None, product: str) -> list[ManifestFile]:
    if files is None:
        names = [*PIPELINE_FILES, *(f for f in OPTIONAL_FILES if f in manifest.files)]
    else:
        names = list(files)
    out: list[ManifestFile] = []
    for name in dict.fromkeys(names):
        if name == MANIFEST_NAME:
            continue
        if name not in manifest.files:
            raise CdseNotFoundError(f"{product}: the manifest lists no file {name!r} (with an MD5)")
        out.append(manifest.files[name])
    return out


def _adopt_existing(final: Path, staging: Path) -> None:
    """Move what an earlier, incomplete ``final`` folder holds into ``staging``; remove ``final``.

    Both are paths :func:`~cloudgan_core.storage.inside` the download folder; a symlink is never
    followed or removed.
    """
    if final.is_symlink():
        raise CdseDownloadError(f"{final} is a symbolic link, not an earlier download; remove it by hand")
    for entry in final.iterdir():
        target = inside(staging, entry.name)
        if entry.name.endswith(".part"):
            entry.unlink()
        elif not target.exists():
            os.replace(entry, target)
    shutil.rmtree(final)


def _download_files(
    info: ProductInfo,
    dest_dir: Path,
    fetcher: _Fetcher,
    *,
    files: Sequence[str] | None,
    max_connections: int,
    log: Log,
) -> Path:
    final = inside(dest_dir, f"{info.key}.SEN3")
    staging = inside(dest_dir, f".{info.key}.SEN3.partial")
    manifest_url = node_url(fetcher.endpoints, info, MANIFEST_NAME)
    raw = fetcher.fetch(manifest_url, f"{info.name}/{MANIFEST_NAME}", max_bytes=MAX_MANIFEST_BYTES)
    assert raw is not None
    try:
        manifest = parse_manifest(raw, f"{info.name}/{MANIFEST_NAME} from {url_path(manifest_url)}")
    except ProductError as exc:
        raise CdseDownloadError(str(exc)) from None
    wanted = _wanted_files(manifest, files, info.name)

    if final.is_dir() and not staging.exists():
        if (final / MANIFEST_NAME).is_file() and all(_intact(_member(final, f.name), f.md5, f.size) for f in wanted):
            log.info(f"CDSE: {final.name} already complete in {dest_dir}; nothing to download")
            return final
    staging.mkdir(parents=True, exist_ok=True)
    for leftover in staging.rglob("*.part"):
        leftover.unlink()
    if final.is_dir():
        _adopt_existing(final, staging)
    write_bytes(staging / MANIFEST_NAME, raw)

    todo = [f for f in wanted if not _intact(_member(staging, f.name), f.md5, f.size)]
    total = sum(max(f.size, 0) for f in todo)
    log.info(
        f"CDSE: {info.name}: downloading {len(todo)} of {len(wanted)} files ({total / 1e6:.1f} MB), "
        f"{len(wanted) - len(todo)} already present, up to {max_connections} at once"
    )

    caps = {f.name: _byte_cap(f.size, f"{info.name}/{f.name}") for f in todo}

    def one(mf: ManifestFile) -> None:
        part = _member(staging, mf.name, ".part")
        part.parent.mkdir(parents=True, exist_ok=True)
        fetcher.fetch(
            node_url(fetcher.endpoints, info, mf.name),
            f"{info.name}/{mf.name}",
            max_bytes=caps[mf.name],
            part=part,
            md5=mf.md5,
            size=mf.size,
        )

    if todo:
        with ThreadPoolExecutor(max_workers=min(max_connections, len(todo)), thread_name_prefix="cdse") as pool:
            futures = [pool.submit(one, f) for f in todo]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                fetcher.stop.set()
            wait(futures)
        errors = [f.exception() for f in futures if f.exception() is not None]
        real = [e for e in errors if not isinstance(e, _Cancelled)]
        if real:
            raise real[0]
    missing = [f.name for f in wanted if not _member(staging, f.name).is_file()]
    if missing:  # defensive: every fetch either renamed its file or raised
        raise CdseDownloadError(f"{info.name}: files missing after download: {', '.join(missing)}")
    os.replace(staging, final)
    log.info(f"CDSE: {info.name}: done, {fetcher.bytes_downloaded / 1e6:.1f} MB downloaded into {final}")
    return final


def _download_zip(info: ProductInfo, dest_dir: Path, fetcher: _Fetcher, *, log: Log) -> Path:
    final = inside(dest_dir, f"{info.key}.zip")
    md5 = info.checksums.get("MD5")
    size = info.size if info.size > 0 else None
    cap = _byte_cap(size, f"{info.name} (zip)")
    if md5 is None:
        log.warning(f"CDSE: the catalogue gives no MD5 for {info.name}; checking the size only")
    if _intact(final, md5, size):
        log.info(f"CDSE: {final.name} already complete in {dest_dir}; nothing to download")
        return final
    dest_dir.mkdir(parents=True, exist_ok=True)
    log.info(f"CDSE: {info.name}: downloading the whole zip ({(size or 0) / 1e6:.1f} MB)")
    fetcher.fetch(
        f"{product_url(fetcher.endpoints, info)}/$value",
        f"{info.name} (zip)",
        max_bytes=cap,
        part=inside(dest_dir, f"{info.key}.zip.part"),
        md5=md5,
        size=size,
    )
    return final


def download_product(
    info: ProductInfo,
    dest_dir: str | Path,
    *,
    endpoints: CdseEndpoints,
    tokens: TokenManager,
    mode: Literal["files", "zip"] = "files",
    files: Sequence[str] | None = None,
    max_connections: int = MAX_CONNECTIONS,
    retries: int = 4,
    timeout: float | tuple[float, float] = (10.0, 120.0),
    backoff: float = 1.0,
    max_wait: float = 60.0,
    session_factory: Callable[[], requests.Session] | None = None,
    log: Log | None = None,
    min_rate: float = DEFAULT_MIN_RATE,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
    request_deadline: float = DEFAULT_REQUEST_DEADLINE,
) -> Path:
    """Download one product from CDSE into ``dest_dir``.

    Parameters
    ----------
    info
        Catalogue entry (from :func:`~cloudgan_core.cdse.catalogue.find_product_by_name` or a search).
    dest_dir
        Folder that receives ``<name>.SEN3/`` (files mode) or ``<name>.zip`` (zip mode).
    endpoints
        Where to download from (``endpoints.download_url``).
    tokens
        Supplies the bearer token (refreshed as needed).
    mode
        ``"files"``: the manifest and the files the pipeline reads (about 60 MB, MD5-checked per
        file). ``"zip"``: the whole product zip (about 450 MB), checked against the catalogue MD5.
    files
        Files mode only: names to fetch instead of ``PIPELINE_FILES`` plus the optional files
        the manifest lists.
    max_connections
        Most simultaneous connections (CDSE allows 4 per account).
    retries
        Retries per file after network errors, 429, 5xx, an expired token or a checksum mismatch.
    timeout
        ``(connect, read)`` seconds for every request; the read timeout is at most
        ``stall_seconds / 2``.
    backoff, max_wait
        First pause in seconds between retries (doubling), and the longest pause; a server's
        ``Retry-After`` is honoured up to ``max_wait``.
    session_factory
        Makes one ``requests.Session`` per worker thread; ``requests.Session`` when None.
    log
        ``logging.Logger`` or Dagster ``context.log``.
    min_rate, stall_seconds
        A transfer fails (without retry) when fewer than ``min_rate`` bytes/s arrive over
        ``stall_seconds`` seconds, or when no byte arrives for ``stall_seconds / 2``.
    request_deadline
        A request that is not finished after this many seconds fails (without retry).

    Returns
    -------
    Path
        The ``<name>.SEN3`` folder or the ``<name>.zip`` file.

    Raises
    ------
    CdseOfflineError
        The catalogue marks the product offline (in the long-term archive).
    CdseDownloadError
        A file stayed wrong or unreachable after its retries, or broke a size, rate or time limit
        (message names the file).
    UnsafePathError
        A name from the manifest would make a path outside ``dest_dir``.
    CdseNotFoundError
        The product or one of the requested files does not exist.
    CdseAuthError
        CDSE rejected the credentials.
    """
    log = get_log(log)
    if mode not in ("files", "zip"):
        raise CdseConfigError(f"download mode must be 'files' or 'zip', got {mode!r}")
    if max_connections < 1:
        raise CdseConfigError(f"max_connections must be at least 1, got {max_connections}")
    if max_connections > MAX_CONNECTIONS:
        log.warning(f"CDSE allows {MAX_CONNECTIONS} connections per account; using {max_connections} anyway")
    if not info.online:
        raise CdseOfflineError(
            f"{info.name} is offline in CDSE (moved to the long-term archive); order it in the CDSE "
            "browser (https://browser.dataspace.copernicus.eu) or retry later, once it is back online"
        )
    limits = TransferLimits(min_rate=min_rate, stall_seconds=stall_seconds, request_deadline=request_deadline)
    fetcher = _Fetcher(
        endpoints=endpoints,
        tokens=tokens,
        policy=RetryPolicy(retries=retries, backoff=backoff, max_wait=max_wait),
        timeout=limits.timeout(timeout),
        session_factory=session_factory or requests.Session,
        log=log,
        stop=threading.Event(),
        limits=limits,
    )
    dest = Path(dest_dir)
    try:
        if mode == "zip":
            return _download_zip(info, dest, fetcher, log=log)
        return _download_files(info, dest, fetcher, files=files, max_connections=max_connections, log=log)
    except CdseError as exc:  # a redirect target or a reply may have quoted a secret
        clean = redact(str(exc), tokens.secrets())
        if clean == str(exc):
            raise
        raise type(exc)(clean) from None
    finally:
        fetcher.close()
