"""Remove secrets from text before it enters an error, a log line or metadata.

Every CDSE error path that could quote something a server sent (a response body, a header, a
redirect target) passes the text through :func:`redact`: the secrets the client knows (tokens,
password, TOTP secret and codes) go, in every spelling a server could echo them in (raw,
form-encoded, URL-quoted, JSON-escaped), and so does whatever follows ``Bearer`` or an
``access_token`` / ``refresh_token`` / ``password`` / ``totp`` key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

#: What a removed secret is replaced with.
REDACTED = "<redacted>"

_KEYED = re.compile(
    r"(?i)(\bbearer\s+|\b(?:access_token|refresh_token|id_token|password|totp|client_secret)\b['\"]?\s*[:=]\s*['\"]?)"
    r"[^\s'\"&,;}]+"
)


def _spellings(secret: str) -> set[str]:
    return {secret, quote_plus(secret), quote(secret, safe=""), json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1]}


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without any of ``secrets`` and without bearer tokens or credential values.

    Parameters
    ----------
    text
        Text that may quote a server (response body, header, URL path).
    secrets
        Values that must never appear (None and empty strings are ignored).

    Returns
    -------
    str
        ``text`` with each secret, and each value after ``Bearer `` or a credential key, replaced
        by :data:`REDACTED`.
    """
    spellings = {s for secret in secrets if secret for s in _spellings(secret)}
    for spelling in sorted(spellings, key=len, reverse=True):
        text = text.replace(spelling, REDACTED)
    return _KEYED.sub(lambda m: m.group(1) + REDACTED, text)
