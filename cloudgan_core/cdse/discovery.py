"""Discovery of new products on CDSE: the one search that the discovery sensor, the
``discover_daily`` schedule and the ``discover_products`` job all run (:func:`discover`).

What is searched is a :class:`DiscoveryConfig` (the ``discovery`` resource). The cursor remembers
which products were already added (name -> sensing start) so that nothing is added twice, also
after a restart (the sensor's cursor is stored by Dagster; the job's in the storage root, see
:func:`cursor_file`). Entries older than the search window are dropped, since a search can no
longer return them; the cursor stays small.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

from pydantic import Field, field_validator

from cloudgan_core.atomic import write_text
from cloudgan_core.cdse.catalogue import ProductInfo, SearchQuery
from cloudgan_core.cdse.errors import CdseConfigError
from cloudgan_core.cover import CoverFields
from cloudgan_core.settings import check_choice, check_count, check_positive
from cloudgan_core.storage import inside


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


class DiscoveryConfig(CoverFields):
    """What discovery searches for (the ``discovery`` resource; the README's search table)."""

    lookback_days: float = Field(3.0, description="sensing-time window before now that is searched (days)")
    footprint_wkt: Optional[str] = Field(None, description="WKT polygon in lon/lat, e.g. POLYGON((5 45, 15 45, "
                                                           "15 55, 5 55, 5 45)); none: the whole Earth")
    min_cover: float = Field(10.0, description="the catalogue's cloudCover: above this (percent) ...")
    max_cover: float = Field(95.0, description="... and at most this (percent): scenes with both cloud and clear "
                                               "sky")
    timeliness: Optional[str] = Field(None, description="NT (non time critical), ST or NR (near real time); none: any")
    platform: Optional[str] = Field(None, description="S3A or S3B; none: both")
    orbit_direction: Optional[str] = Field("DESCENDING", description="DESCENDING (daytime passes) or ASCENDING; none: "
                                                                     "both")
    max_products: int = Field(10, description="most products added per search (the rest wait for the next one)")

    @field_validator("lookback_days")
    @classmethod
    def _lookback(cls, value: float) -> float:
        return check_positive("lookback_days", value)

    @field_validator("max_products")
    @classmethod
    def _max_products(cls, value: int) -> int:
        return check_count("max_products", value, 0)

    @field_validator("timeliness")
    @classmethod
    def _timeliness(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else check_choice("timeliness", value, ("NT", "ST", "NR"))

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else check_choice("platform", value, ("S3A", "S3B"))

    @field_validator("orbit_direction")
    @classmethod
    def _orbit_direction(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else check_choice("orbit_direction", value, ("DESCENDING", "ASCENDING"))

    def query(self, now: datetime) -> SearchQuery:
        """The catalogue search at ``now``: the last ``lookback_days`` of sensing time."""
        start, end = search_window(now, timedelta(days=self.lookback_days))
        return SearchQuery(start=start, end=end, footprint_wkt=self.footprint_wkt, cloud_cover=self.cover,
                           timeliness=self.timeliness, platform=self.platform,  # type: ignore[arg-type]
                           orbit_direction=self.orbit_direction)


@dataclass(frozen=True)
class Discovery:
    """What one discovery found (``found`` products in the window) and what to add (``plan``)."""

    found: int
    plan: DiscoveryPlan

    @property
    def keys(self) -> list[str]:
        """Partition keys to add now."""
        return [p.key for p in self.plan.new]


def discover(config: DiscoveryConfig, search: Callable[[SearchQuery], Sequence[ProductInfo]], *, now: datetime,
             cursor: DiscoveryCursor, existing_keys: Iterable[str]) -> Discovery:
    """Search the catalogue and plan which products to add (:func:`plan_additions`).

    Parameters
    ----------
    search
        Runs a catalogue search (e.g. ``CopernicusResource.search``).
    now
        The time of the search.
    cursor
        What this discoverer added before (not modified; the plan holds the next cursor).
    existing_keys
        Partition keys that exist already.
    """
    query = config.query(now)
    found = search(query)
    plan = plan_additions(found, cursor, existing_keys, max_new=config.max_products, window_start=query.start)
    return Discovery(found=len(found), plan=plan)


def cursor_file(root: Path) -> Path:
    """Where the ``discover_products`` job keeps its cursor: ``<root>/_discovery/cursor.json``."""
    return inside(root, "_discovery", "cursor.json")


def load_cursor(path: Path) -> DiscoveryCursor:
    """The cursor stored at ``path`` (an empty one when there is none)."""
    return DiscoveryCursor.from_json(path.read_text(encoding="utf-8") if path.is_file() else None)


def save_cursor(path: Path, cursor: DiscoveryCursor) -> None:
    """Store ``cursor`` at ``path`` (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, cursor.to_json())
