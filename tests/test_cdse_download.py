"""CDSE downloads against the local fake CDSE: redirects, retries, checksums, resume, quotas."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import pytest
import requests

from cloudgan_core.cdse import (
    CdseCredentials,
    CdseDownloadError,
    CdseEndpoints,
    CdseNotFoundError,
    CdseOfflineError,
    TokenManager,
    download_product,
    find_product_by_name,
    same_site,
)
from cloudgan_core.digests import file_digest
from cloudgan_core.simulate import simulate_product
from cloudgan_core.slstr.manifest import MANIFEST_NAME, parse_manifest
from cloudgan_core.slstr.product import OPTIONAL_FILES, PIPELINE_FILES, open_product
from tests.cdse_server import DEFAULT_PASSWORD, DEFAULT_USER, FakeCdse

EXPECTED_FILES = sorted({*PIPELINE_FILES, *OPTIONAL_FILES})
FAST = {"retries": 3, "backoff": 0.01, "max_wait": 2.0, "timeout": 10.0}


@pytest.fixture(scope="module")
def product_folder(tmp_path_factory) -> Path:
    return Path(simulate_product(tmp_path_factory.mktemp("src"), seed=3, rows=120, cols=150))


@pytest.fixture()
def cdse(tmp_path, product_folder):
    with FakeCdse(tmp_path / "server") as server:
        server.add_folder(product_folder)
        yield server


def client(cdse: FakeCdse, **kw):
    endpoints = CdseEndpoints.from_env(cdse.env())
    tokens = TokenManager(endpoints, CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD), **kw)
    return endpoints, tokens, find_product_by_name(next(iter(cdse.products.values())).name, endpoints)


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def mirror_requests(cdse: FakeCdse):
    return [s for s in cdse.seen if s.server == "mirror"]


def test_same_site_rule():
    assert same_site("https://download.dataspace.copernicus.eu/odata/v1", "https://zipper.dataspace.copernicus.eu/x")
    assert same_site("http://127.0.0.1:8000/odata/v1", "http://127.0.0.1:9000/files/1")
    assert not same_site("http://127.0.0.1:8000/odata/v1", "http://localhost:9000/files/1")
    assert not same_site("https://download.dataspace.copernicus.eu/odata/v1", "https://evil.example.com/x")
    assert not same_site("https://download.dataspace.copernicus.eu/odata/v1", "http://zipper.dataspace.copernicus.eu/x")
    assert not same_site("https://a.example.co.uk/x", "https://b.other.co.uk/y")


def test_files_mode_fetches_pipeline_files_through_redirect(cdse, tmp_path, product_folder):
    cdse.file_delay = 0.1
    endpoints, tokens, info = client(cdse)
    made: list[requests.Session] = []

    def factory() -> requests.Session:
        made.append(requests.Session())
        return made[-1]

    dest = tmp_path / "inbox"
    path = download_product(info, dest, endpoints=endpoints, tokens=tokens, session_factory=factory, **FAST)
    assert path == dest / info.name and path.is_dir()
    assert sorted(p.name for p in path.iterdir()) == EXPECTED_FILES
    manifest = parse_manifest((path / MANIFEST_NAME).read_bytes())
    for name in EXPECTED_FILES:
        if name != MANIFEST_NAME:
            assert file_digest(path / name, "md5") == manifest.files[name].md5
    assert (path / MANIFEST_NAME).read_bytes() == (product_folder / MANIFEST_NAME).read_bytes()
    assert leftovers(tmp_path) == [] and sorted(p.name for p in dest.iterdir()) == [info.name]
    with open_product(path) as product:
        assert product.name == info.name
    # the token survived the redirect to the second port; every mirror request carried it
    mirror = mirror_requests(cdse)
    assert len(mirror) == len(EXPECTED_FILES)
    assert all(s.host == f"127.0.0.1:{cdse.mirror_port}" for s in mirror)
    assert all(cdse.token_valid(s.authorization) for s in mirror)
    # the quota: at most 4 connections at once, and the downloads did run in parallel
    assert 2 <= cdse.max_active_downloads <= 4
    assert 1 <= len(made) <= 5  # one per worker thread, plus the manifest fetch
    assert cdse.token_grants == [("password", True)]


def test_max_connections_is_respected(cdse, tmp_path):
    cdse.file_delay = 0.05
    endpoints, tokens, info = client(cdse)
    download_product(info, tmp_path / "inbox", endpoints=endpoints, tokens=tokens, max_connections=2, **FAST)
    assert cdse.max_active_downloads == 2


def test_429_honours_retry_after(cdse, tmp_path):
    cdse.fail_429_once = {"flags_an.nc"}
    endpoints, tokens, info = client(cdse)
    t0 = time.monotonic()
    path = download_product(info, tmp_path / "inbox", endpoints=endpoints, tokens=tokens, **FAST)
    assert time.monotonic() - t0 >= 0.95  # Retry-After: 1, although the back-off is 0.01 s
    assert cdse.file_requests["flags_an.nc"] == 2
    assert (path / "flags_an.nc").is_file() and leftovers(tmp_path) == []


def test_corrupt_file_is_retried(cdse, tmp_path):
    cdse.corrupt_once = {"S1_radiance_an.nc"}
    endpoints, tokens, info = client(cdse)
    path = download_product(info, tmp_path / "inbox", endpoints=endpoints, tokens=tokens, **FAST)
    assert cdse.file_requests["S1_radiance_an.nc"] == 2
    manifest = parse_manifest((path / MANIFEST_NAME).read_bytes())
    assert file_digest(path / "S1_radiance_an.nc", "md5") == manifest.files["S1_radiance_an.nc"].md5


def test_persistent_mismatch_fails_naming_the_file_then_resume_fetches_only_it(cdse, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cdse.corrupt_always = {"S3_radiance_an.nc"}
    endpoints, tokens, info = client(cdse, log=logging.getLogger("test.cdse"))
    dest = tmp_path / "inbox"
    with pytest.raises(CdseDownloadError, match=r"S3_radiance_an\.nc: MD5 mismatch .* after 3 attempts") as err:
        download_product(info, dest, endpoints=endpoints, tokens=tokens, log=logging.getLogger("test.cdse"),
                         **{**FAST, "retries": 2})
    assert cdse.file_requests["S3_radiance_an.nc"] == 3
    # nothing partial: no .part, no <name>.SEN3; verified files wait in the hidden staging folder
    assert leftovers(tmp_path) == [] and not (dest / info.name).exists()
    staging = dest / f".{info.name}.partial"
    manifest = parse_manifest((staging / MANIFEST_NAME).read_bytes())
    assert "S3_radiance_an.nc" not in {p.name for p in staging.iterdir()}
    for p in staging.iterdir():
        if p.name != MANIFEST_NAME:
            assert file_digest(p, "md5") == manifest.files[p.name].md5
    for text in (str(err.value), caplog.text):
        assert DEFAULT_PASSWORD not in text
        assert not any(tok in text for tok in cdse.issued_tokens)

    # files still queued when S3 failed for good were never fetched (with 16 files, some usually are)
    missing = {f: 1 for f in EXPECTED_FILES if f != MANIFEST_NAME and not (staging / f).exists()}
    assert "S3_radiance_an.nc" in missing

    cdse.corrupt_always.clear()
    cdse.file_requests.clear()
    path = download_product(info, dest, endpoints=endpoints, tokens=tokens, **FAST)
    assert dict(cdse.file_requests) == {MANIFEST_NAME: 1, **missing}  # the verified files are not fetched again
    assert not staging.exists() and sorted(p.name for p in path.iterdir()) == EXPECTED_FILES
    with open_product(path):
        pass


def test_resume_refetches_only_missing_or_bad_files(cdse, tmp_path):
    endpoints, tokens, info = client(cdse)
    dest = tmp_path / "inbox"
    path = download_product(info, dest, endpoints=endpoints, tokens=tokens, **FAST)
    cdse.file_requests.clear()
    assert download_product(info, dest, endpoints=endpoints, tokens=tokens, **FAST) == path
    assert dict(cdse.file_requests) == {MANIFEST_NAME: 1}  # complete: nothing fetched again

    (path / "geometry_tn.nc").unlink()
    with open(path / "flags_an.nc", "r+b") as fh:
        fh.write(b"\0\0\0\0")
    (path / "extra_note.txt").write_text("kept")
    download_product(info, dest, endpoints=endpoints, tokens=tokens, **FAST)
    assert dict(cdse.file_requests) == {MANIFEST_NAME: 2, "geometry_tn.nc": 1, "flags_an.nc": 1}
    assert (path / "extra_note.txt").read_text() == "kept"
    assert leftovers(tmp_path) == [] and [p.name for p in dest.iterdir()] == [info.name]
    with open_product(path):
        pass


def test_no_token_for_a_foreign_redirect_host(cdse, tmp_path):
    cdse.redirect_host = "localhost"  # same machine, but not the configured download host
    endpoints, tokens, info = client(cdse)
    with pytest.raises(CdseDownloadError, match="never sent the CDSE token"):
        download_product(info, tmp_path / "inbox", endpoints=endpoints, tokens=tokens, **FAST)
    mirror = mirror_requests(cdse)
    assert mirror and all(s.host.startswith("localhost:") for s in mirror)
    assert all(s.authorization is None for s in mirror)
    main = [s for s in cdse.seen if s.server == "main" and s.path.startswith("/download/")]
    assert main and all(cdse.token_valid(s.authorization) for s in main)
    assert leftovers(tmp_path) == []


def test_expired_access_token_is_refreshed_not_relogged(cdse, tmp_path):
    endpoints, tokens, info = client(cdse)
    download_product(info, tmp_path / "a", endpoints=endpoints, tokens=tokens, **FAST)
    cdse.revoke_access_tokens()  # the server drops the token the client still holds
    download_product(info, tmp_path / "b", endpoints=endpoints, tokens=tokens, **FAST)
    assert cdse.token_grants == [("password", True), ("refresh_token", True)]


@pytest.mark.slow  # waits for a token to expire (about 4 s)
def test_short_token_lifetime_refreshes_during_download(tmp_path, product_folder):
    with FakeCdse(tmp_path / "server", token_lifetime=1, file_delay=0.2) as cdse:
        cdse.add_folder(product_folder)
        endpoints, tokens, info = client(cdse)
        download_product(info, tmp_path / "inbox", endpoints=endpoints, tokens=tokens, max_connections=1, **FAST)
        grants = [g for g, ok in cdse.token_grants if ok]
        assert grants[0] == "password" and grants.count("password") == 1
        assert grants.count("refresh_token") >= 2


def test_offline_product_is_a_clear_error(tmp_path, product_folder):
    with FakeCdse(tmp_path / "server") as cdse:
        cdse.add_folder(product_folder, online=False)
        endpoints, tokens, info = client(cdse)
        assert info.online is False
        with pytest.raises(CdseOfflineError, match="offline.*order it"):
            download_product(info, tmp_path / "inbox", endpoints=endpoints, tokens=tokens, **FAST)
        assert not any(s.path.startswith("/download/") for s in cdse.seen)


def test_zip_mode_checks_catalogue_md5(cdse, tmp_path):
    cdse.corrupt_once = {"$zip"}
    endpoints, tokens, info = client(cdse)
    path = download_product(info, tmp_path / "inbox", endpoints=endpoints, tokens=tokens, mode="zip", **FAST)
    assert path == tmp_path / "inbox" / f"{info.key}.zip"
    assert hashlib.md5(path.read_bytes()).hexdigest() == info.checksums["MD5"]
    assert cdse.file_requests["$zip"] == 2 and leftovers(tmp_path) == []
    with open_product(path) as product:
        assert product.name == info.name
    cdse.file_requests.clear()
    assert download_product(info, tmp_path / "inbox", endpoints=endpoints, tokens=tokens, mode="zip") == path
    assert not cdse.file_requests  # already there and intact


def test_unknown_requested_file_is_named(cdse, tmp_path):
    endpoints, tokens, info = client(cdse)
    with pytest.raises(CdseNotFoundError, match="no_such_file.nc"):
        download_product(info, tmp_path / "inbox", endpoints=endpoints, tokens=tokens,
                         files=["flags_an.nc", "no_such_file.nc"], **FAST)
