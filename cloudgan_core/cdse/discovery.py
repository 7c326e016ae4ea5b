"""Pure helpers for a discovery sensor: the search window, and "what is new" with a cursor.

The cursor remembers which products were already added (name -> sensing start) so that nothing
is added twice, also after a restart (Dagster stores the cursor string). Entries older than the
search window are dropped, since a search can no longer return them; the cursor stays small.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cloudgan_core.cdse.catalogue import ProductInfo
from cloudgan_core.cdse.errors import CdseConfigError


def search_window(now: datetime, lookback: timedelta, delay: timedelta = timedelta(0)) -> tuple[datetime, datetime]:
    """``(now - delay - lookback, now - delay)`` in UTC: the sensing-time range a sensor searches.

    Parameters
    ----------
    now
        Current time (naive means UTC).
    lookback
        How far back to search, e.g. 3 days (non-time-critical products appear 1-2 days late).
    delay
        Skip the most recent span (e.g. to wait for NT products rather than NR ones).
    """
    if lookback <= timedelta(0):
        raise CdseConfigError(f"lookback must be positive, got {lookback}")
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)
    end = now - delay
    return end - lookback, end


@dataclass
class DiscoveryCursor:
    """Products already added, by name (with ``.SEN3``) -> sensing start (ISO 8601, UTC)."""

    added: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """Compact, sorted JSON (stable across runs)."""
        return json.dumps({"added": dict(sorted(self.added.items()))}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> DiscoveryCursor:
        """Parse :meth:`to_json` output; None or ``""`` (a new sensor) gives an empty cursor.

        Raises
        ------
        CdseConfigError
            When the text is not a cursor this module wrote.
        """
        if not text:
            return cls()
        try:
            data = json.loads(text)
            added = data["added"]
            if not isinstance(added, dict):
                raise TypeError("added is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise CdseConfigError(f"discovery sensor cursor is not valid ({exc}); reset the sensor cursor") from None
        return cls({str(k): str(v) for k, v in added.items()})

    def prune(self, oldest: datetime) -> None:
        """Forget products sensed before ``oldest`` (no search of the window can return them)."""
        oldest = oldest.replace(tzinfo=timezone.utc) if oldest.tzinfo is None else oldest
        keep = {}
        for name, start in self.added.items():
            try:
                when = datetime.fromisoformat(start)
            except ValueError:
                continue
            if when >= oldest:
                keep[name] = start
        self.added = keep


@dataclass(frozen=True)
class DiscoveryPlan:
    """Result of :func:`plan_additions`."""

    new: list[ProductInfo]
    cursor: DiscoveryCursor
    skipped_known: int
    deferred: int


def plan_additions(
    found: Sequence[ProductInfo],
    cursor: DiscoveryCursor,
    existing_keys: Iterable[str],
    *,
    max_new: int,
    window_start: datetime | None = None,
) -> DiscoveryPlan:
    """Pick the products to add this tick and the cursor to store afterwards.

    Parameters
    ----------
    found
        Search results, in the order to add them (e.g. oldest first).
    cursor
        The stored cursor (not modified).
    existing_keys
        Partition keys already present (names without ``.SEN3``); never added again.
    max_new
        Most products to add in this tick; the rest are left for later ticks.
    window_start
        Start of the searched window; cursor entries older than this are dropped.

    Returns
    -------
    DiscoveryPlan
        ``new`` products (at most ``max_new``), the updated cursor that includes them,
        how many were skipped as already known, and how many were left for later.

    Raises
    ------
    ProductNameError
        When an entry's name is not an SL_1_RBT product name (every key is validated again here,
        since it becomes a partition key and a folder name).
    """
    if max_new < 0:
        raise CdseConfigError(f"max_new must be >= 0, got {max_new}")
    existing = set(existing_keys)
    out = DiscoveryCursor(dict(cursor.added))
    if window_start is not None:
        out.prune(window_start)
    new: list[ProductInfo] = []
    skipped = deferred = 0
    for info in found:
        key = info.key  # validate_product_id: never a partition key that is not a product name
        if info.name in out.added or key in existing or info.name in cursor.added:
            skipped += 1
            continue
        if any(p.id == info.id for p in new):
            continue
        if len(new) >= max_new:
            deferred += 1
            continue
        new.append(info)
        out.added[info.name] = info.content_start.isoformat()
    return DiscoveryPlan(new=new, cursor=out, skipped_known=skipped, deferred=deferred)
