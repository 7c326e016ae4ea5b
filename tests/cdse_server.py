"""A local stand-in for the Copernicus Data Space Ecosystem, for tests and demos (no network).

Two real HTTP servers on 127.0.0.1, each in a thread:

* the **main** server speaks the token endpoint (password and refresh grants), the OData
  catalogue (``$filter`` subset the client sends, ``$orderby``, ``$top``, ``$skip`` capped like
  CDSE, ``@odata.nextLink``) and the download endpoint, which checks the bearer token and
  answers every ``$value`` with a 307 redirect to
* the **mirror** server on another port (the "zipper"), which checks the token again and
  serves the bytes.

Both record what they saw (paths, Host and Authorization headers, concurrent download
connections), and faults can be injected (429 once, a corrupt file once or always, a redirect
to ``localhost`` instead of ``127.0.0.1`` -- a foreign host for the client).

Hostile modes (a mirror that attacks its client) are attributes of :class:`FakeCdse`:
``FakeProduct.reported_name`` (the catalogue answers with another name, e.g. ``../../x``),
``token_redirect`` (the token endpoint answers 307 elsewhere), ``echo_download`` /
``echo_login`` / ``search_error_detail`` (4xx bodies that echo secrets), ``padding`` (a file
goes on past its size), ``drip`` (a file trickles), ``silent_after`` (a file stops mid-way).

From a test::

    with FakeCdse(tmp_path) as cdse:
        product = cdse.add_simulated(seed=1)
        env = cdse.env()   # CDSE_* variables (URLs + the fake account)

From a shell (serves until Ctrl-C; prints the environment to export)::

    .venv/bin/python -m tests.cdse_server --products 3 --dir /tmp/fake-cdse
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import secrets
import threading
import time
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

TOKEN_PATH = "/auth/realms/CDSE/protocol/openid-connect/token"
CATALOGUE_PREFIX = "/catalogue/odata/v1"
DOWNLOAD_PREFIX = "/download/odata/v1"
DEFAULT_USER = "fake.user@example.com"
DEFAULT_PASSWORD = "fake-password-Zq81"

_NODE_VALUE = re.compile(r"^/Products\(([^)]+)\)((?:/Nodes\([^)]+\))+)/\$value$")
_ZIP_VALUE = re.compile(r"^/Products\(([^)]+)\)/\$value$")
_NODES = re.compile(r"/Nodes\(([^)]+)\)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _bbox(wkt: str) -> tuple[float, float, float, float]:
    nums = [float(v) for v in _NUMBER.findall(wkt)]
    lons, lats = nums[0::2], nums[1::2]
    return min(lons), min(lats), max(lons), max(lats)


@dataclass
class FakeProduct:
    """One catalogue entry; ``folder`` is None for entries without files (search-only)."""

    id: str
    name: str
    start: datetime
    end: datetime
    footprint_wkt: str
    attributes: dict[str, Any]
    online: bool = True
    folder: Path | None = None
    zip_bytes: bytes | None = None
    reported_name: str | None = None  # hostile: the Name the catalogue answers with

    @property
    def key(self) -> str:
        return self.name.removesuffix(".SEN3")

    def odata(self, expand: bool) -> dict[str, Any]:
        item: dict[str, Any] = {
            "@odata.mediaContentType": "application/octet-stream",
            "Id": self.id,
            "Name": self.reported_name or self.name,
            "ContentType": "application/octet-stream",
            "ContentLength": len(self.zip_bytes) if self.zip_bytes else 0,
            "OriginDate": _iso(self.end + timedelta(hours=2)),
            "PublicationDate": _iso(self.end + timedelta(hours=3)),
            "Online": self.online,
            "EvictionDate": "",
            "S3Path": f"/eodata/Sentinel-3/SLSTR/SL_1_RBT/{self.start:%Y/%m/%d}/{self.name}",
            "Checksum": (
                [{"Value": hashlib.md5(self.zip_bytes).hexdigest(), "Algorithm": "MD5",
                  "ChecksumDate": _iso(self.end + timedelta(hours=3))}]
                if self.zip_bytes else []
            ),
            "ContentDate": {"Start": _iso(self.start), "End": _iso(self.end)},
            "Footprint": f"geography'SRID=4326;{self.footprint_wkt}'",
        }
        if expand:
            item["Attributes"] = [
                {
                    "@odata.type": f"#OData.CSC.{'Double' if isinstance(v, float) else 'String'}Attribute",
                    "Name": k,
                    "Value": v,
                    "ValueType": "Double" if isinstance(v, float) else "String",
                }
                for k, v in self.attributes.items()
            ]
        return item


@dataclass
class Seen:
    """One request as a server saw it."""

    server: str  # "main" or "mirror"
    method: str
    path: str
    host: str
    authorization: str | None


@dataclass
class FakeCdse:
    """The fake CDSE. Use as a context manager (starts and stops both servers).

    Parameters
    ----------
    root
        Scratch folder for simulated products.
    users
        Accepted accounts, username -> password.
    totp
        When set, the password grant also needs ``totp`` equal to this code.
    totp_secret
        When set, the password grant also needs ``totp`` to be the current code of this base32
        secret (or the one of the previous or next 30 s step).
    token_lifetime, refresh_lifetime
        ``expires_in`` and ``refresh_expires_in`` of issued tokens, in seconds.
    max_skip
        Largest ``$skip`` accepted (CDSE: 10,000); larger gives 422, and no nextLink points past it.
    file_delay
        Seconds the mirror waits before sending a file (makes parallel downloads overlap).
    retry_after
        ``Retry-After`` value sent with injected 429 replies.
    port
        Port of the main server (0: any free port); the mirror always takes a free port.
    """

    root: Path
    users: dict[str, str] = field(default_factory=lambda: {DEFAULT_USER: DEFAULT_PASSWORD})
    totp: str | None = None
    totp_secret: str | None = None
    token_lifetime: int = 600
    refresh_lifetime: int = 3600
    max_skip: int = 10_000
    file_delay: float = 0.0
    retry_after: int = 1
    port: int = 0

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.products: dict[str, FakeProduct] = {}
        self.lock = threading.Lock()
        # injected faults (file names relative to the .SEN3 folder, or "$zip")
        self.fail_429_once: set[str] = set()
        self.corrupt_once: set[str] = set()
        self.corrupt_always: set[str] = set()
        self.redirect_host = "127.0.0.1"
        # hostile modes
        self.token_redirect: str | None = None  # token endpoint answers a redirect to this URL
        self.token_redirect_status = 307
        self.echo_download = False  # download endpoint answers 400 echoing what it knows
        self.echo_login = False  # token endpoint answers 401 echoing the login form
        self.search_error_detail = "injected failure"  # body of fail_search_once answers
        self.padding: dict[str, int] = {}  # rel -> bytes sent after the file (no Content-Length)
        self.drip: dict[str, float] = {}  # rel -> seconds between single bytes
        self.silent_after: dict[str, int] = {}  # rel -> send this many bytes, then nothing
        self.bytes_sent: Counter[str] = Counter()  # rel -> body bytes the mirror wrote
        self.last_login_form: dict[str, str] = {}
        self._stopping = threading.Event()
        # what the servers saw
        self.seen: list[Seen] = []
        self.token_grants: list[tuple[str, bool]] = []
        self.search_params: list[dict[str, str]] = []
        self.issued_tokens: list[str] = []
        self.fail_search_once: list[int] = []  # statuses to answer searches with, once each
        self.file_requests: Counter[str] = Counter()
        self.active_downloads = 0
        self.max_active_downloads = 0
        self._access: dict[str, float] = {}
        self._refresh: dict[str, float] = {}
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> FakeCdse:
        for role, port in (("main", self.port), ("mirror", 0)):
            server = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self, role))
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      name=f"fake-cdse-{role}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes hostile handlers that wait
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FakeCdse:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------------
    @property
    def main_port(self) -> int:
        return self._servers[0].server_address[1]

    @property
    def mirror_port(self) -> int:
        return self._servers[1].server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.main_port}"

    @property
    def token_url(self) -> str:
        return self.base + TOKEN_PATH

    @property
    def catalogue_url(self) -> str:
        return self.base + CATALOGUE_PREFIX

    @property
    def download_url(self) -> str:
        return self.base + DOWNLOAD_PREFIX

    def env(self, username: str = DEFAULT_USER, password: str | None = None) -> dict[str, str]:
        """The ``CDSE_*`` environment variables that point a client at this server."""
        return {
            "CDSE_TOKEN_URL": self.token_url,
            "CDSE_CATALOGUE_URL": self.catalogue_url,
            "CDSE_DOWNLOAD_URL": self.download_url,
            "CDSE_USERNAME": username,
            "CDSE_PASSWORD": self.users[username] if password is None else password,
        }

    # -- catalogue content ----------------------------------------------------------------
    def add_entry(self, name: str, start: datetime, *, minutes: float = 3.0, cloud_cover: float = 50.0,
                  footprint_wkt: str = "POLYGON((10 40, 20 40, 20 50, 10 50, 10 40))", online: bool = True,
                  timeliness: str = "NT", platform: str = "A", orbit_direction: str = "DESCENDING",
                  product_type: str = "SL_1_RBT___", folder: Path | None = None,
                  zip_bytes: bytes | None = None) -> FakeProduct:
        """Add a catalogue entry (files only when ``folder`` is given)."""
        name = name if name.endswith(".SEN3") else name + ".SEN3"
        start = start.replace(tzinfo=timezone.utc) if start.tzinfo is None else start
        product = FakeProduct(
            id=str(uuid.UUID(bytes=hashlib.md5(name.encode()).digest())),
            name=name,
            start=start,
            end=start + timedelta(minutes=minutes),
            footprint_wkt=footprint_wkt,
            attributes={
                "productType": product_type,
                "platformShortName": "SENTINEL-3",
                "platformSerialIdentifier": platform,
                "timeliness": timeliness,
                "orbitDirection": orbit_direction,
                "cloudCover": float(cloud_cover),
            },
            online=online,
            folder=folder,
            zip_bytes=zip_bytes,
        )
        with self.lock:
            self.products[product.id] = product
        return product

    def add_simulated(self, seed: int = 0, *, online: bool = True, rows: int = 120, cols: int = 150,
                      name: str | None = None) -> FakeProduct:
        """Simulate an SL_1_RBT product with the foundation's simulator and serve its files."""
        from cloudgan_core.simulate import simulate_product

        folder = simulate_product(self.root / "served", seed=seed, rows=rows, cols=cols, name=name)
        return self.add_folder(Path(folder), online=online)

    def add_folder(self, folder: Path, *, online: bool = True) -> FakeProduct:
        """Serve an existing ``<name>.SEN3`` folder (catalogue entry from its manifest, zip built here)."""
        from cloudgan_core.slstr.manifest import MANIFEST_NAME, parse_manifest

        folder = Path(folder)
        manifest = parse_manifest((folder / MANIFEST_NAME).read_bytes(), str(folder / MANIFEST_NAME))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
        start, stop = _parse_dt(manifest.start_time), _parse_dt(manifest.stop_time)
        return self.add_entry(
            folder.name,
            start,
            minutes=(stop - start).total_seconds() / 60,
            cloud_cover=manifest.cloudy_pixels_percentage or 0.0,
            footprint_wkt=manifest.footprint_wkt or "POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))",
            online=online,
            timeliness=manifest.timeliness or "NT",
            platform=manifest.platform[-1:],
            folder=folder,
            zip_bytes=buf.getvalue(),
        )

    def revoke_refresh_tokens(self) -> None:
        """Make every refresh token invalid (the client must log in again)."""
        with self.lock:
            self._refresh.clear()

    def revoke_access_tokens(self) -> None:
        """Make every access token invalid (as if it expired early); refresh tokens still work."""
        with self.lock:
            self._access.clear()

    # -- tokens ---------------------------------------------------------------------------
    def _issue(self) -> dict[str, Any]:
        access, refresh = "acc-" + secrets.token_urlsafe(24), "ref-" + secrets.token_urlsafe(24)
        now = time.monotonic()
        self.issued_tokens += [access, refresh]
        self._access[access] = now + self.token_lifetime
        self._refresh[refresh] = now + self.refresh_lifetime
        return {"access_token": access, "expires_in": self.token_lifetime, "refresh_token": refresh,
                "refresh_expires_in": self.refresh_lifetime, "token_type": "Bearer", "scope": "profile email"}

    def token_valid(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        with self.lock:
            expiry = self._access.get(authorization[len("Bearer "):])
        return expiry is not None and time.monotonic() < expiry

    def token_reply(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type", "")
        with self.lock:
            if form.get("client_id") != "cdse-public":
                self.token_grants.append((grant, False))
                return 401, {"error": "invalid_client", "error_description": "Invalid client credentials"}
            if grant == "password":
                self.last_login_form = dict(form)
                if self.echo_login:
                    self.token_grants.append((grant, False))
                    echoed = "&".join(f"{k}={v}" for k, v in reversed(list(form.items())))
                    return 401, {"error": echoed, "error_description": f"you sent {form!r}"}
                ok = self.users.get(form.get("username", "")) == form.get("password") and (
                    self.totp is None or form.get("totp") == self.totp) and (
                    self.totp_secret is None or form.get("totp") in self._totp_codes())
                self.token_grants.append((grant, ok))
                if not ok:
                    return 401, {"error": "invalid_grant", "error_description": "Invalid user credentials"}
                return 200, self._issue()
            if grant == "refresh_token":
                expiry = self._refresh.pop(form.get("refresh_token", ""), None)
                ok = expiry is not None and time.monotonic() < expiry
                self.token_grants.append((grant, ok))
                if not ok:
                    return 400, {"error": "invalid_grant", "error_description": "Token is not active"}
                return 200, self._issue()
            self.token_grants.append((grant, False))
            return 400, {"error": "unsupported_grant_type"}

    def _totp_codes(self) -> set[str]:
        from cloudgan_core.cdse import totp_code

        now = time.time()
        return {totp_code(self.totp_secret or "", now + d) for d in (-30, 0, 30)}

    def echo_body(self, headers: dict[str, str]) -> bytes:
        """A hostile 4xx body: the secrets first (so a 200-character excerpt holds them), then all."""
        with self.lock:
            form = dict(self.last_login_form)
            issued = list(self.issued_tokens)
        head = (f"password={form.get('password', '')} totp={form.get('totp', '')} "
                f"secret={self.totp_secret or ''} refresh={issued[-1] if issued else ''} "
                f"Authorization: {headers.get('Authorization', '')}")
        return (head + f" | headers {headers!r} | login form {urlencode(form)} | tokens {issued}").encode()

    def wait_stop(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the server is stopping."""
        return self._stopping.wait(seconds)

    # -- catalogue ------------------------------------------------------------------------
    def search_reply(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.search_params.append(dict(params))
            products = list(self.products.values())
            fail = self.fail_search_once.pop(0) if self.fail_search_once else None
        if fail is not None:
            return fail, {"detail": self.search_error_detail}
        order = params.get("$orderby", "")
        if order not in ("ContentDate/Start asc", "ContentDate/Start desc", "ContentDate/Start"):
            return 400, {"detail": f"fake CDSE needs $orderby=ContentDate/Start asc|desc, got {order!r}"}
        try:
            top = int(params.get("$top", "20"))
            skip = int(params.get("$skip", "0"))
        except ValueError:
            return 400, {"detail": "bad $top/$skip"}
        if skip > self.max_skip:
            return 422, {"detail": [{"loc": ["query", "$skip"], "msg": f"Input should be less than or equal to {self.max_skip}"}]}
        if not 0 <= top <= 1000:
            return 422, {"detail": [{"loc": ["query", "$top"], "msg": "Input should be less than or equal to 1000"}]}
        try:
            clauses = _split_and(params.get("$filter", ""))
            matched = [p for p in products if all(_match(p, c) for c in clauses)]
        except ValueError as exc:
            return 400, {"detail": str(exc)}
        matched.sort(key=lambda p: (p.start, p.id), reverse=order.endswith("desc"))
        page = matched[skip:skip + top]
        body: dict[str, Any] = {"@odata.context": "$metadata#Products",
                                "value": [p.odata(params.get("$expand") == "Attributes") for p in page]}
        nxt = skip + top
        if nxt < len(matched) and nxt <= self.max_skip:
            body["@odata.nextLink"] = self.catalogue_url + "/Products?" + urlencode({**params, "$skip": str(nxt)})
        return 200, body


def _split_and(expr: str) -> list[str]:
    """Split an OData filter on top-level `` and `` (outside parentheses and quotes)."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(expr):
        ch = expr[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and expr.startswith(" and ", i):
            parts.append(expr[start:i])
            i += 5
            start = i
            continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts if p.strip()]


_CMP = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}
_ATTR = re.compile(r"^Attributes/OData\.CSC\.(String|Double|Integer)Attribute/any\(att:att/Name eq '([^']*)' "
                   r"and att/OData\.CSC\.\1Attribute/Value (eq|ne|lt|le|gt|ge) (.+)\)$")


def _unquote_literal(text: str) -> str:
    if not (text.startswith("'") and text.endswith("'")):
        raise ValueError(f"expected a quoted string, got {text}")
    return text[1:-1].replace("''", "'")


def _match(p: FakeProduct, clause: str) -> bool:
    if m := re.fullmatch(r"Collection/Name eq ('.*')", clause):
        return _unquote_literal(m.group(1)) == "SENTINEL-3"
    if m := re.fullmatch(r"Name eq ('.*')", clause):
        return p.name == _unquote_literal(m.group(1))
    if m := re.fullmatch(r"ContentDate/Start (eq|ne|lt|le|gt|ge) (\S+)", clause):
        return _CMP[m.group(1)](p.start, _parse_dt(m.group(2)))
    if m := _ATTR.fullmatch(clause):
        kind, name, op, literal = m.groups()
        if name not in p.attributes:
            return False
        value = p.attributes[name]
        other: Any = _unquote_literal(literal) if kind == "String" else float(literal)
        return isinstance(value, str) == (kind == "String") and _CMP[op](value, other)
    if m := re.fullmatch(r"OData\.CSC\.Intersects\(area=geography'SRID=4326;(.*)'\)", clause):
        a, b = _bbox(m.group(1)), _bbox(p.footprint_wkt)
        return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]
    if m := re.fullmatch(r"Online eq (true|false)", clause):
        return p.online == (m.group(1) == "true")
    raise ValueError(f"fake CDSE does not understand filter clause: {clause}")


def _make_handler(cdse: FakeCdse, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: connections == requests

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _record(self) -> None:
            with cdse.lock:
                cdse.seen.append(Seen(role, self.command, urlsplit(self.path).path, self.headers.get("Host", ""),
                                      self.headers.get("Authorization")))

        def _send(self, status: int, body: bytes = b"", ctype: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
            self._stop_counting()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(obj).encode(), headers=headers)

        def do_POST(self) -> None:
            self._record()
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if role == "main" and urlsplit(self.path).path == TOKEN_PATH and cdse.token_redirect:
                self._send(cdse.token_redirect_status, b"", headers={"Location": cdse.token_redirect})
            elif role == "main" and urlsplit(self.path).path == TOKEN_PATH:
                self._json(*cdse.token_reply(form))
            else:
                self._json(404, {"detail": "not found"})

        def do_GET(self) -> None:
            self._record()
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            if role == "main" and path == CATALOGUE_PREFIX + "/Products":
                params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                self._json(*cdse.search_reply(params))
                return
            if (role == "main" and path.startswith(DOWNLOAD_PREFIX + "/")) or (role == "mirror" and path.startswith("/files/")):
                with cdse.lock:
                    cdse.active_downloads += 1
                    cdse.max_active_downloads = max(cdse.max_active_downloads, cdse.active_downloads)
                self._counted = True
                try:
                    if role == "main":
                        self._download(path[len(DOWNLOAD_PREFIX):])
                    else:
                        self._mirror(path)
                finally:
                    self._stop_counting()
                return
            self._json(404, {"detail": f"no route {path}"})

        def _download(self, path: str) -> None:
            if cdse.echo_download:
                self._send(400, cdse.echo_body(dict(self.headers.items())), ctype="text/plain")
                return
            if not cdse.token_valid(self.headers.get("Authorization")):
                self._json(401, {"detail": "Expired signature or missing token"})
                return
            if m := _NODE_VALUE.match(path):
                pid, nodes = m.group(1), _NODES.findall(m.group(2))
                product = cdse.products.get(pid)
                if product is None or product.folder is None or nodes[0] not in (product.name, product.reported_name):
                    self._json(404, {"detail": "product or node not found"})
                    return
                rel = "/".join(nodes[1:])
            elif m := _ZIP_VALUE.match(path):
                pid, rel = m.group(1), "$zip"
                product = cdse.products.get(pid)
                if product is None or product.zip_bytes is None:
                    self._json(404, {"detail": "product not found"})
                    return
            else:
                self._json(404, {"detail": f"no route {path}"})
                return
            if not product.online:
                self._json(422, {"detail": f"Product {product.name} is offline; order it first"})
                return
            with cdse.lock:
                cdse.file_requests[rel] += 1
                throttle = rel in cdse.fail_429_once
                cdse.fail_429_once.discard(rel)
            if throttle:
                self._json(429, {"detail": "Too many requests"}, headers={"Retry-After": str(cdse.retry_after)})
                return
            location = f"http://{cdse.redirect_host}:{cdse.mirror_port}/files/{pid}/{quote(rel)}"
            self._send(307, b"", headers={"Location": location})

        def _stop_counting(self) -> None:
            """The request stops counting as an active download: called before its last byte is sent,
            since a client may start its next request as soon as it holds the whole body (counting
            until the handler returns would see that next request overlap this one)."""
            if getattr(self, "_counted", False):
                self._counted = False
                with cdse.lock:
                    cdse.active_downloads -= 1

        def _mirror(self, path: str) -> None:
            if not cdse.token_valid(self.headers.get("Authorization")):
                self._json(401, {"detail": "missing or invalid token"})
                return
            _, _, pid, rel = path.split("/", 3)
            product = cdse.products.get(pid)
            if product is None:
                self._json(404, {"detail": "not found"})
                return
            if rel == "$zip":
                data = product.zip_bytes or b""
            else:
                target = (product.folder / rel) if product.folder else None
                if target is None or not target.is_file():
                    self._json(404, {"detail": "not found"})
                    return
                data = target.read_bytes()
            with cdse.lock:
                corrupt = rel in cdse.corrupt_always or rel in cdse.corrupt_once
                cdse.corrupt_once.discard(rel)
            if corrupt and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            if cdse.file_delay:
                time.sleep(cdse.file_delay)
            if rel in cdse.padding or rel in cdse.drip or rel in cdse.silent_after:
                self._hostile_body(rel, data)
                return
            self._send(200, data, ctype="application/octet-stream")
            with cdse.lock:
                cdse.bytes_sent[rel] += len(data)

        def _hostile_body(self, rel: str, data: bytes) -> None:
            """Send ``data`` the hostile way configured for ``rel``; stop when the client hangs up."""
            self._stop_counting()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if rel not in cdse.padding:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if rel in cdse.drip:
                pieces: Any = (data[i:i + 1] for i in range(len(data)))
            elif rel in cdse.silent_after:
                pieces = iter([data[:cdse.silent_after[rel]]])
            else:
                block = b"\0" * (1 << 20)
                extra = cdse.padding[rel]
                pieces = iter([data, *(block[:min(len(block), extra - i)] for i in range(0, extra, len(block)))])
            try:
                for piece in pieces:
                    self.wfile.write(piece)
                    self.wfile.flush()
                    with cdse.lock:
                        cdse.bytes_sent[rel] += len(piece)
                    if rel in cdse.drip and cdse.wait_stop(cdse.drip[rel]):
                        return
                if rel in cdse.silent_after:
                    cdse.wait_stop(3600)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve simulated products until interrupted; print the environment to use."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/fake-cdse"), help="scratch folder")
    parser.add_argument("--products", type=int, default=1, help="simulated products to serve")
    parser.add_argument("--offline", action="store_true", help="mark the products offline")
    parser.add_argument("--port", type=int, default=0, help="port of the main server (default: any free one)")
    args = parser.parse_args(argv)
    with FakeCdse(args.dir, port=args.port) as cdse:
        for seed in range(args.products):
            p = cdse.add_simulated(seed=seed, online=not args.offline)
            print(f"# product {p.key}", flush=True)
        for key, value in cdse.env().items():
            print(f"export {key}={value}", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
