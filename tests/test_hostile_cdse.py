"""A hostile Copernicus mirror on 127.0.0.1 (tests/cdse_server.py in its hostile modes).

Each test is one attack: a catalogue that answers with another product's name (``../../x``), a
discovery search full of non-product names, a token endpoint that redirects the login elsewhere,
servers that echo the credentials back in their errors, and downloads that never end or trickle.
"""

from __future__ import annotations

import inspect
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from cloudgan_assets import cli
from cloudgan_assets.assets import ingest
from cloudgan_assets.jobs import discover_products
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CopernicusResource, DiscoverySettings
from cloudgan_assets.sensors import cdse_discovery_sensor, inbox_sensor
from cloudgan_core.cdse import (
    CdseAuthError,
    CdseCredentials,
    CdseDownloadError,
    CdseEndpoints,
    CdseRequestError,
    DiscoveryCursor,
    ProductInfo,
    RetryPolicy,
    SearchQuery,
    TokenManager,
    download_product,
    find_product_by_name,
    plan_additions,
    search_products,
)
from cloudgan_core.cdse.download import DOWNLOAD_SLACK
from cloudgan_core.cdse.http import TransferLimits, url_path
from cloudgan_core.cdse.redact import REDACTED, redact
from cloudgan_core.simulate import product_name, simulate_product
from cloudgan_core.slstr.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES
from cloudgan_core.slstr.names import PRODUCT_ID_EXAMPLE, ProductNameError
from tests.cdse_server import DEFAULT_PASSWORD, DEFAULT_USER, FakeCdse
from tests.dagster_helpers import failure_text, storage_for

FAST = {"retries": 2, "backoff": 0.01, "max_wait": 0.5, "timeout": 10.0}
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DP"  # base32
BAD_NAMES = ["../../x/VICTIM", "S3A_SL_1_RBT____x", "S3A_SL_1_RBT____a,b", "S3A_SL_1_RBT____..."]


def key(seed: int, platform: str = "S3A") -> str:
    return product_name(seed, platform).removesuffix(".SEN3")


@pytest.fixture(scope="module")
def product_folder(tmp_path_factory) -> Path:
    return Path(simulate_product(tmp_path_factory.mktemp("src"), seed=3, rows=120, cols=150))


@pytest.fixture()
def cdse(tmp_path, product_folder, monkeypatch):
    """A server holding one product, with the CDSE_* environment pointing at it."""
    with FakeCdse(tmp_path / "cdse") as server:
        server.add_folder(product_folder)
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        yield server


def client(cdse: FakeCdse, totp: str | None = None):
    endpoints = CdseEndpoints.from_env(cdse.env())
    tokens = TokenManager(endpoints, CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD, totp))
    return endpoints, tokens, find_product_by_name(next(iter(cdse.products.values())).name, endpoints)


def files_outside(root: Path, *skip: Path) -> dict[str, int]:
    """Every path under ``root`` except the ``skip`` folders, with its size (folders: -1)."""
    out = {}
    for p in root.rglob("*"):
        if not any(p == s or s in p.parents for s in skip):
            out[str(p.relative_to(root))] = p.stat().st_size if p.is_file() else -1
    return out


def downloads_seen(cdse: FakeCdse) -> list:
    return [s for s in cdse.seen if s.path.startswith("/download/") or s.server == "mirror"]


# -- 1. product names from the catalogue, discovery, the inbox, the CLI and the UI ---------------
def test_product_info_only_holds_product_names():
    now = datetime(2024, 6, 1, tzinfo=timezone.utc)
    good = ProductInfo("1", key(1), 1, now, now)
    assert good.name == f"{key(1)}.SEN3" and good.key == key(1)
    for bad in ["../../x/VICTIM.SEN3", *BAD_NAMES, ""]:
        with pytest.raises(ProductNameError, match="not an SL_1_RBT product name"):
            ProductInfo("1", bad, 1, now, now)


@pytest.mark.parametrize("answered", ["../../x/VICTIM.SEN3", product_name(99)])
def test_find_returns_exactly_the_product_asked_for(cdse, answered):
    product = next(iter(cdse.products.values()))
    product.reported_name = answered
    with pytest.raises(CdseRequestError, match="instead of") as err:
        find_product_by_name(product.name, CdseEndpoints.from_env(cdse.env()))
    assert product.key in str(err.value) and repr(answered) in str(err.value)
    with pytest.raises(ProductNameError, match=PRODUCT_ID_EXAMPLE):
        find_product_by_name("../../x/VICTIM", CdseEndpoints.from_env(cdse.env()))


@pytest.mark.slow
def test_hostile_catalogue_name_cannot_write_or_delete_outside_the_storage_root(tmp_path, cdse):
    """Before: the run succeeded, wrote <tmp>/x/VICTIM.SEN3 and then deleted that folder."""
    product = next(iter(cdse.products.values()))
    product.reported_name = "../../x/VICTIM.SEN3"
    victim = tmp_path / "x" / "VICTIM.SEN3"
    victim.mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me")
    before = files_outside(tmp_path, tmp_path / "storage", tmp_path / "cdse")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, [product.key])
        result = dg.materialize([ingest.products], partition_key=product.key, instance=instance,
                                resources={"storage": storage_for(tmp_path), "copernicus": CopernicusResource()},
                                raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert product.key in text and "'../../x/VICTIM.SEN3'" in text and "instead of" in text
    assert files_outside(tmp_path, tmp_path / "storage", tmp_path / "cdse") == before
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not downloads_seen(cdse)  # refused before any download


def test_search_skips_and_logs_entries_that_are_not_product_names(cdse, caplog):
    t0 = datetime(2024, 6, 1, tzinfo=timezone.utc)
    good = [cdse.add_entry(key(i), t0 + timedelta(hours=i)).name for i in (1, 3)]
    for i, bad in enumerate(BAD_NAMES):
        cdse.add_entry(bad, t0 + timedelta(hours=2, minutes=i))
    caplog.set_level(logging.WARNING)
    found = search_products(SearchQuery(t0, t0 + timedelta(days=1)), CdseEndpoints.from_env(cdse.env()),
                            log=logging.getLogger("test.hostile"))
    assert [p.name for p in found] == good
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == len(BAD_NAMES) and all("not an SL_1_RBT product name" in m for m in skipped)


def test_plan_additions_validates_every_name_it_adds():
    t0 = datetime(2024, 6, 1, tzinfo=timezone.utc)
    found = [ProductInfo(str(i), key(i), 1, t0, t0) for i in range(3)]
    object.__setattr__(found[1], "name", "../../evil.SEN3")  # a bypassed constructor still cannot add it
    with pytest.raises(ProductNameError):
        plan_additions(found, DiscoveryCursor(), [], max_new=10)


@pytest.mark.slow
def test_discovery_sensor_and_job_add_only_product_names(cdse, tmp_path):
    """Before: '../../x/VICTIM', 'S3A_SL_1_RBT____x', ... became products partitions."""
    now = datetime.now(timezone.utc)
    good = [cdse.add_entry(key(i), now - timedelta(hours=i)).key for i in (5, 6)]
    for i, bad in enumerate(BAD_NAMES):
        cdse.add_entry(bad, now - timedelta(hours=7 + i))
    res = {"copernicus": CopernicusResource(), "discovery": DiscoverySettings(max_products=20),
           "storage": storage_for(tmp_path)}
    with dg.instance_for_test() as instance:
        tick = cdse_discovery_sensor(dg.build_sensor_context(instance=instance, resources=res))
        assert sorted(r.partition_key for r in tick.run_requests) == sorted(good)
        assert sorted(tick.dynamic_partitions_requests[0].partition_keys) == sorted(good)
        assert discover_products.execute_in_process(instance=instance, resources=res).success
        assert sorted(instance.get_dynamic_partitions(products_partitions.name)) == sorted(good)


def test_inbox_sensor_adds_only_product_names(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / f"{key(1)}.zip").write_bytes(b"zip")
    (inbox / f"{key(2)}.SEN3").mkdir()
    for bad in BAD_NAMES[1:]:
        (inbox / f"{bad}.zip").write_bytes(b"zip")
    (inbox / "S3A_SL_1_RBT____y.SEN3").mkdir()
    with dg.instance_for_test() as instance:
        tick = inbox_sensor(dg.build_sensor_context(instance=instance, resources={"storage": storage_for(tmp_path)}))
    assert sorted(r.partition_key for r in tick.run_requests) == [key(1), key(2)]


def test_cli_add_uses_the_validator_and_adds_nothing_on_a_bad_name(tmp_path, monkeypatch, capsys):
    """Before: 'S3A_SL_1_RBT____x' was added (it contains _SL_1_RBT___)."""
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert cli.main(["add", key(1), "S3A_SL_1_RBT____x"]) == 2
    err = capsys.readouterr().err
    assert "'S3A_SL_1_RBT____x'" in err and PRODUCT_ID_EXAMPLE in err
    with dg.DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions(products_partitions.name) == []
    assert cli.main(["add", f"inbox/{key(1)}.zip", f"{key(2)}.SEN3/"]) == 0
    with dg.DagsterInstance.get() as instance:
        assert sorted(instance.get_dynamic_partitions(products_partitions.name)) == [key(1), key(2)]


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["../x/VICTIM", "S3A_SL_1_RBT____x"])
def test_products_asset_rejects_a_bad_partition_key_before_touching_anything(tmp_path, cdse, bad):
    victim = tmp_path / "x" / "VICTIM.SEN3"
    victim.mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me")
    before = files_outside(tmp_path, tmp_path / "cdse")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, [bad])  # e.g. typed into the UI
        result = dg.materialize([ingest.products], partition_key=bad, instance=instance,
                                resources={"storage": storage_for(tmp_path), "copernicus": CopernicusResource()},
                                raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert repr(bad) in text and "not an SL_1_RBT product name" in text and PRODUCT_ID_EXAMPLE in text
    assert files_outside(tmp_path, tmp_path / "cdse") == before  # no storage/, no downloads/
    assert cdse.seen == []


# -- 2. credentials never follow a redirect -------------------------------------------------------
@pytest.mark.parametrize("status", [307, 308])
def test_token_redirect_is_refused_and_the_other_host_receives_nothing(tmp_path, cdse, status):
    """Before: the login (username, password, TOTP) was re-posted to the second server, whose
    token was then trusted."""
    with FakeCdse(tmp_path / "evil") as evil:
        cdse.token_redirect, cdse.token_redirect_status = evil.token_url, status
        endpoints = CdseEndpoints.from_env(cdse.env())
        tokens = TokenManager(endpoints, CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD, TOTP_SECRET))
        with pytest.raises(CdseAuthError) as err:
            tokens.access_token()
        assert evil.seen == [] and evil.token_grants == []
        msg = str(err.value)
        assert f"HTTP {status}" in msg and url_path(cdse.token_url) in msg and "redirect" in msg
        assert str(evil.main_port) not in msg and DEFAULT_PASSWORD not in msg


# -- 3. secrets never enter an error, a log line or a file -----------------------------------------
def test_redact_removes_every_form_of_a_secret():
    text = ("password=p%40ss+w%C3%B6rd totp=123456 {'refresh_token': 'ref-abc'} Authorization: Bearer eyJ.x.y "
            '"access_token": "tok-1" raw p@ss wörd and JBSWY3DP and "p@ss w\\u00f6rd"')
    out = redact(text, ["p@ss wörd", "123456", "JBSWY3DP", None, ""])
    for secret in ("p@ss", "p%40ss", "w\\u00f6rd", "123456", "ref-abc", "eyJ.x.y", "tok-1", "JBSWY3DP"):
        assert secret not in out
    assert out.count(REDACTED) >= 8 and out.startswith("password=" + REDACTED)
    assert redact("HTTP 400 from host/path", ["zzz"]) == "HTTP 400 from host/path"


def _secrets_in(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


@pytest.mark.slow
def test_no_secret_leaves_a_dagster_run_against_an_echoing_server(tmp_path, monkeypatch, capfd, product_folder):
    """Before: the 400 body (bearer token, refresh token, password, TOTP) went into the error,
    the event log and the console."""
    home, storage = tmp_path / "dagster_home", tmp_path / "storage"
    home.mkdir()
    with FakeCdse(tmp_path / "cdse", totp_secret=TOTP_SECRET) as cdse:
        product = cdse.add_folder(product_folder)
        for k, v in {**cdse.env(), "CDSE_TOTP": TOTP_SECRET}.items():
            monkeypatch.setenv(k, v)
        cdse.echo_download = True
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            instance.add_dynamic_partitions(products_partitions.name, [product.key])
            result = dg.materialize([ingest.products], partition_key=product.key, instance=instance,
                                    resources={"storage": storage_for(tmp_path), "copernicus": CopernicusResource()},
                                    raise_on_error=False)
            logs = [f"{e.message} {e.dagster_event and e.dagster_event.event_specific_data}"
                    for e in instance.all_logs(result.run_id)]
        code = cdse.last_login_form["totp"]
        assert cdse.token_grants == [("password", True)] and len(cdse.issued_tokens) == 2
    assert not result.success
    failure = failure_text(result)
    assert "HTTP 400" in failure and product.key in failure and REDACTED in failure
    secrets = [DEFAULT_PASSWORD, TOTP_SECRET, *cdse.issued_tokens]
    console = capfd.readouterr()
    places = {"failure": failure, "event log": "\n".join(logs), "console": console.out + console.err}
    for folder in (home, storage):
        for path in (p for p in folder.rglob("*") if p.is_file()):
            places[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert places["event log"] and len(places) > 3
    for where, text in places.items():
        assert _secrets_in(text, secrets) == [], where
        # A bare 6-digit code could occur by chance in a database; search it where it is quoted.
        assert f"totp={code}" not in text and f"'totp': '{code}'" not in text, where
    assert code not in failure and code not in places["event log"]


def test_login_and_catalogue_errors_are_redacted(cdse):
    cdse.echo_login = True
    endpoints = CdseEndpoints.from_env(cdse.env())
    with pytest.raises(CdseAuthError, match="HTTP 401") as err:
        TokenManager(endpoints, CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD, TOTP_SECRET)).access_token()
    code = cdse.last_login_form["totp"]
    assert REDACTED in str(err.value)
    assert _secrets_in(str(err.value), [DEFAULT_PASSWORD, TOTP_SECRET, code]) == []

    cdse.fail_search_once = [400]
    cdse.search_error_detail = "Authorization: Bearer acc-LEAKED123 password=hunter2 refresh_token=ref-LEAKED"
    with pytest.raises(CdseRequestError, match="HTTP 400") as err:
        search_products(SearchQuery(datetime(2024, 6, 1), datetime(2024, 6, 2)), endpoints,
                        retry=RetryPolicy(retries=0))
    assert _secrets_in(str(err.value), ["acc-LEAKED123", "hunter2", "ref-LEAKED"]) == []


# -- 4. bounded downloads ----------------------------------------------------------------------------
def test_manifest_download_is_capped(cdse, tmp_path):
    """Before: the whole body was read into memory (1 GB body -> 2 GiB RSS)."""
    cdse.padding = {MANIFEST_NAME: 256 << 20}
    endpoints, tokens, info = client(cdse)
    with pytest.raises(CdseDownloadError, match=rf"{MANIFEST_NAME}: .*more than {MAX_MANIFEST_BYTES} bytes"):
        download_product(info, tmp_path / "dl", endpoints=endpoints, tokens=tokens, **FAST)
    assert cdse.file_requests[MANIFEST_NAME] == 1  # not retried
    assert cdse.bytes_sent[MANIFEST_NAME] < MAX_MANIFEST_BYTES + (32 << 20)  # + socket buffers


@pytest.mark.parametrize("mode, rel", [("files", "flags_an.nc"), ("zip", "$zip")])
def test_download_stops_at_the_expected_size(cdse, tmp_path, product_folder, mode, rel):
    """Before: the file kept being written for as long as the server sent (1.5 GB for 44 kB)."""
    cdse.padding = {rel: 512 << 20}
    endpoints, tokens, info = client(cdse)
    size = info.size if mode == "zip" else (product_folder / rel).stat().st_size
    with pytest.raises(CdseDownloadError, match=rf"more than {size + DOWNLOAD_SLACK} bytes.*expected {size}"):
        download_product(info, tmp_path / "dl", endpoints=endpoints, tokens=tokens, mode=mode, **FAST)
    assert cdse.file_requests[rel] == 1
    assert cdse.bytes_sent[rel] < size + (32 << 20)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]


def test_a_dripping_file_fails_by_the_rate_rule(cdse, tmp_path):
    """Before: the client waited for the whole drip (27 kB at 100 bytes/s: 4.5 minutes)."""
    cdse.drip = {"flags_an.nc": 0.01}
    endpoints, tokens, info = client(cdse)
    t0 = time.monotonic()
    with pytest.raises(CdseDownloadError, match=r"flags_an\.nc: .*fewer than 10000 bytes/s over 1 s"):
        download_product(info, tmp_path / "dl", endpoints=endpoints, tokens=tokens, stall_seconds=1.0, **FAST)
    assert time.monotonic() - t0 < 4.0
    assert cdse.file_requests["flags_an.nc"] == 1


def test_a_silent_server_fails_within_one_and_a_half_stall_periods(cdse, tmp_path):
    cdse.silent_after = {"geometry_tn.nc": 100}
    endpoints, tokens, info = client(cdse)
    t0 = time.monotonic()
    with pytest.raises(CdseDownloadError, match=r"geometry_tn\.nc: no data for 1 s"):
        download_product(info, tmp_path / "dl", endpoints=endpoints, tokens=tokens, stall_seconds=2.0, **FAST)
    assert time.monotonic() - t0 < 4.0


def test_request_deadline_stops_a_slow_but_steady_file(cdse, tmp_path):
    cdse.drip = {"S1_radiance_an.nc": 0.001}  # about 1 kB/s: above min_rate, far below finishing
    endpoints, tokens, info = client(cdse)
    t0 = time.monotonic()
    with pytest.raises(CdseDownloadError, match=r"S1_radiance_an\.nc: .*deadline of 1 s"):
        download_product(info, tmp_path / "dl", endpoints=endpoints, tokens=tokens, min_rate=10,
                         stall_seconds=0.5, request_deadline=1.0, **FAST)
    assert time.monotonic() - t0 < 4.0


def test_default_limits_fail_a_one_byte_per_second_drip_within_90_s():
    limits = TransferLimits()
    assert (limits.min_rate, limits.stall_seconds, limits.request_deadline) == (10_000, 60.0, 3600.0)
    assert limits.read_timeout(120.0) == 30.0  # nothing at all for 30 s ends the transfer
    # A drip: 1 byte per second, on a fake clock.
    now = [0.0]
    watch = limits.watch(clock=lambda: now[0], what="x")
    failed_at = None
    for second in range(1, 200):
        now[0] = float(second)
        try:
            watch.update(1)
        except CdseRequestError:
            failed_at = second
            break
    assert failed_at == 60
    # Worst case: bytes just often enough to keep each read alive, the window ends, then silence.
    assert limits.stall_seconds + limits.read_timeout(120.0) <= 90
    # The resource and download_product carry the same defaults.
    params = inspect.signature(download_product).parameters
    res = CopernicusResource()
    for name in ("min_rate", "stall_seconds", "request_deadline"):
        assert params[name].default == getattr(limits, name) == getattr(res, name)


def test_resource_passes_its_limits_to_the_download(tmp_path, cdse):
    cdse.drip = {"flags_an.nc": 0.01}
    res = CopernicusResource(stall_seconds=0.5, min_rate=5000)
    t0 = time.monotonic()
    with pytest.raises(CdseDownloadError, match=r"fewer than 5000 bytes/s over 0\.5 s"):
        res.download(next(iter(cdse.products.values())).name, tmp_path / "dl")
    assert time.monotonic() - t0 < 4.0
