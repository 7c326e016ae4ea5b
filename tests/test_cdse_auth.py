"""CDSE configuration and tokens against the local fake CDSE (tests/cdse_server.py)."""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from cloudgan_core.cdse import (
    CdseAuthError,
    CdseConfigError,
    CdseCredentials,
    CdseEndpoints,
    TokenManager,
    totp_code,
)
from cloudgan_core.cdse.config import DEFAULT_CATALOGUE_URL, DEFAULT_DOWNLOAD_URL, DEFAULT_TOKEN_URL
from tests.cdse_server import DEFAULT_PASSWORD, DEFAULT_USER, FakeCdse


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def cdse(tmp_path):
    with FakeCdse(tmp_path) as server:
        yield server


def endpoints_for(cdse: FakeCdse) -> CdseEndpoints:
    return CdseEndpoints.from_env(cdse.env())


# -- configuration ----------------------------------------------------------------------------
def test_endpoints_default_env_and_overrides():
    assert CdseEndpoints.from_env({}) == CdseEndpoints(DEFAULT_TOKEN_URL, DEFAULT_CATALOGUE_URL, DEFAULT_DOWNLOAD_URL)
    env = {"CDSE_TOKEN_URL": "http://127.0.0.1:9/tok", "CDSE_CATALOGUE_URL": "http://127.0.0.1:9/cat/odata/v1/",
           "CDSE_DOWNLOAD_URL": ""}
    ep = CdseEndpoints.from_env(env)
    assert ep.token_url == "http://127.0.0.1:9/tok"
    assert ep.catalogue_url == "http://127.0.0.1:9/cat/odata/v1"  # trailing slash dropped
    assert ep.download_url == DEFAULT_DOWNLOAD_URL  # empty counts as unset
    ep = CdseEndpoints.from_env(env, catalogue_url="https://mirror.example.org/odata/v1", token_url=None)
    assert ep.catalogue_url == "https://mirror.example.org/odata/v1"
    assert ep.token_url == "http://127.0.0.1:9/tok"
    with pytest.raises(CdseConfigError, match="download_url"):
        CdseEndpoints(download_url="ftp://example.org/odata/v1")


def test_credentials_from_env_names_missing_variable_and_hides_values():
    with pytest.raises(CdseConfigError, match="CDSE_PASSWORD") as err:
        CdseCredentials.from_env({"CDSE_USERNAME": "someone@example.com"})
    assert "someone@example.com" not in str(err.value)
    with pytest.raises(CdseConfigError, match="CDSE_USERNAME and CDSE_PASSWORD"):
        CdseCredentials.from_env({"CDSE_USERNAME": "", "OTHER": "x"})
    creds = CdseCredentials.from_env({"CDSE_USERNAME": "u@example.com", "CDSE_PASSWORD": "pw-xyz", "CDSE_TOTP": "654321"})
    assert creds.totp == "654321"
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "pw-xyz" not in text and "654321" not in text and "u@example.com" not in text


def test_totp_code_matches_rfc6238_vectors():
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of b"12345678901234567890"
    assert totp_code(secret, 59, digits=8) == "94287082"
    assert totp_code(secret, 1111111109, digits=8) == "07081804"
    assert totp_code(secret.lower(), 59) == "287082"
    with pytest.raises(CdseAuthError, match="TOTP"):
        totp_code("not base32 !!", 59)


# -- tokens -----------------------------------------------------------------------------------
def test_login_once_then_token_is_cached(cdse):
    tokens = TokenManager(endpoints_for(cdse), CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD))
    first = tokens.access_token()
    assert tokens.access_token() == first
    assert cdse.token_valid(f"Bearer {first}")
    assert cdse.token_grants == [("password", True)]


def test_refresh_before_expiry_instead_of_new_login(cdse):
    clock = FakeClock()
    tokens = TokenManager(endpoints_for(cdse), CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD), clock=clock)
    first = tokens.access_token()
    clock.now += 600 - 61  # still outside the 60 s margin: cached
    assert tokens.access_token() == first
    clock.now += 2  # inside the margin: refreshed, not a new login
    second = tokens.access_token()
    assert second != first and cdse.token_valid(f"Bearer {second}")
    assert cdse.token_grants == [("password", True), ("refresh_token", True)]
    assert (tokens.logins, tokens.refreshes) == (1, 1)


def test_short_lived_tokens_refresh_at_half_life(tmp_path):
    with FakeCdse(tmp_path, token_lifetime=10) as cdse:
        clock = FakeClock()
        tokens = TokenManager(endpoints_for(cdse), CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD), clock=clock)
        first = tokens.access_token()
        clock.now += 4.9
        assert tokens.access_token() == first
        clock.now += 0.2
        assert tokens.access_token() != first
        assert [g for g, _ in cdse.token_grants] == ["password", "refresh_token"]


def test_login_again_when_refresh_fails(cdse):
    clock = FakeClock()
    tokens = TokenManager(endpoints_for(cdse), CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD), clock=clock)
    tokens.access_token()
    cdse.revoke_refresh_tokens()
    clock.now += 700
    assert cdse.token_valid(f"Bearer {tokens.access_token()}")
    assert cdse.token_grants == [("password", True), ("refresh_token", False), ("password", True)]


def test_login_again_when_refresh_token_expired(cdse):
    clock = FakeClock()
    tokens = TokenManager(endpoints_for(cdse), CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD), clock=clock)
    tokens.access_token()
    clock.now += 3600 + 1  # refresh token too old: no refresh attempt at all
    tokens.access_token()
    assert cdse.token_grants == [("password", True), ("password", True)]


def test_invalidate_forces_refresh(cdse):
    tokens = TokenManager(endpoints_for(cdse), CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD))
    first = tokens.access_token()
    tokens.invalidate("some-other-token")  # not the current one: ignored
    assert tokens.access_token() == first
    tokens.invalidate(first)
    assert tokens.access_token() != first
    assert [g for g, _ in cdse.token_grants] == ["password", "refresh_token"]


def test_concurrent_callers_share_one_login(cdse):
    tokens = TokenManager(endpoints_for(cdse), CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD))
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(tokens.access_token())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and len(got) == 8
    assert cdse.token_grants == [("password", True)]


def test_wrong_password_is_a_clear_error_without_secrets(cdse, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "wrong-Password-7781"
    tokens = TokenManager(endpoints_for(cdse), CdseCredentials(DEFAULT_USER, secret),
                          log=logging.getLogger("test.cdse"))
    with pytest.raises(CdseAuthError, match="CDSE rejected the username/password") as err:
        tokens.access_token()
    assert cdse.token_grants == [("password", False)]
    assert "CDSE_PASSWORD" in str(err.value)
    for text in (str(err.value), repr(err.value), repr(tokens), caplog.text):
        assert secret not in text and DEFAULT_USER not in text


def test_totp_is_sent_and_required(tmp_path):
    with FakeCdse(tmp_path, totp="246810") as cdse:
        ok = TokenManager(endpoints_for(cdse), CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD, totp="246810"))
        assert cdse.token_valid(f"Bearer {ok.access_token()}")
        missing = TokenManager(endpoints_for(cdse), CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD))
        with pytest.raises(CdseAuthError, match="rejected"):
            missing.access_token()
        wrong = TokenManager(endpoints_for(cdse), CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD, totp="135790"))
        with pytest.raises(CdseAuthError, match="TOTP") as err:
            wrong.access_token()
        assert "135790" not in str(err.value)
        assert [ok for _, ok in cdse.token_grants] == [True, False, False]


def test_tokens_never_in_repr_or_logs(cdse, caplog):
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    tokens = TokenManager(endpoints_for(cdse), CdseCredentials(DEFAULT_USER, DEFAULT_PASSWORD),
                          log=logging.getLogger("test.cdse"), clock=clock)
    tokens.access_token()
    cdse.revoke_refresh_tokens()
    clock.now += 700
    tokens.access_token()  # failed refresh is logged, then a new login
    assert "refresh failed" in caplog.text
    assert len(cdse.issued_tokens) == 4
    for text in (repr(tokens), str(tokens), caplog.text):
        assert DEFAULT_PASSWORD not in text
        for token in cdse.issued_tokens:
            assert token not in text


def test_unreachable_token_endpoint():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ep = CdseEndpoints(token_url=f"http://127.0.0.1:{port}/token")
    tokens = TokenManager(ep, CdseCredentials("a", "pw-secret-1"), timeout=2)
    with pytest.raises(CdseAuthError, match="unreachable") as err:
        tokens.access_token()
    assert "pw-secret-1" not in str(err.value)
