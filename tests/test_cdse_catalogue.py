"""CDSE catalogue search and the discovery helpers against the local fake CDSE."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cloudgan_core.cdse import (
    CdseConfigError,
    CdseEndpoints,
    CdseNotFoundError,
    CdseRequestError,
    DiscoveryCursor,
    ProductInfo,
    RetryPolicy,
    SearchQuery,
    find_product_by_name,
    plan_additions,
    search_products,
    search_window,
)
from cloudgan_core.cover import CoverRange
from cloudgan_core.settings import SettingError
from cloudgan_core.simulate import product_name
from cloudgan_core.slstr.names import ProductNameError
from tests.cdse_server import FakeCdse

T0 = datetime(2024, 6, 1, tzinfo=timezone.utc)
FAST = RetryPolicy(retries=2, backoff=0.01, max_wait=0.05)


def name(i: int, platform: str = "A") -> str:
    """A valid, distinct product name per ``i`` (its sensing start is set by the catalogue entry)."""
    return product_name(i, f"S3{platform}").removesuffix(".SEN3")


@pytest.fixture()
def cdse(tmp_path):
    with FakeCdse(tmp_path) as server:
        yield server


def ep(cdse: FakeCdse) -> CdseEndpoints:
    return CdseEndpoints.from_env(cdse.env())


def test_filter_expression_uses_cdse_attribute_syntax():
    q = SearchQuery(T0, T0 + timedelta(days=1), footprint_wkt="POLYGON((5 45,  15 45, 15 55, 5 55, 5 45))",
                    timeliness="NT", platform="S3B")
    f = q.filter_expression()
    expected = [
        "Collection/Name eq 'SENTINEL-3'",
        "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
        "att/OData.CSC.StringAttribute/Value eq 'SL_1_RBT___')",
        "ContentDate/Start ge 2024-06-01T00:00:00.000Z",
        "ContentDate/Start lt 2024-06-02T00:00:00.000Z",
        "OData.CSC.Intersects(area=geography'SRID=4326;POLYGON((5 45, 15 45, 15 55, 5 55, 5 45))')",
        "Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'cloudCover' and "
        "att/OData.CSC.DoubleAttribute/Value gt 10.00)",
        "Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'cloudCover' and "
        "att/OData.CSC.DoubleAttribute/Value le 95.00)",
        "att/Name eq 'timeliness' and att/OData.CSC.StringAttribute/Value eq 'NT'",
        "att/Name eq 'platformSerialIdentifier' and att/OData.CSC.StringAttribute/Value eq 'B'",
        "att/Name eq 'orbitDirection' and att/OData.CSC.StringAttribute/Value eq 'DESCENDING'",
        "Online eq true",
    ]
    for part in expected:
        assert part in f
    bare = SearchQuery(T0, T0 + timedelta(days=1), cloud_cover=None, orbit_direction=None,
                       online_only=False).filter_expression()
    assert "cloudCover" not in bare and "orbitDirection" not in bare and "Online" not in bare
    # naive datetimes are UTC; aware ones are converted
    cet = timezone(timedelta(hours=1))
    assert "ge 2024-06-01T00:00:00.000Z" in SearchQuery(datetime(2024, 6, 1, 1, tzinfo=cet), T0 + timedelta(1)).filter_expression()


@pytest.mark.parametrize("kwargs, match", [
    ({"cloud_cover": (10.0, 95.0)}, "cloud_cover must be a CoverRange"),
    ({"timeliness": "XX"}, "timeliness"),
    ({"platform": "S2A"}, "platform"),
    ({"footprint_wkt": "POINT(1 2)"}, "footprint_wkt"),
    ({"page_size": 5000}, "page_size"),
    ({"max_products": 0}, "max_products"),
    ({"orbit_direction": "UP"}, "orbit_direction"),
])
def test_search_query_rejects_bad_settings(kwargs, match):
    with pytest.raises(CdseConfigError, match=match):
        SearchQuery(T0, T0 + timedelta(days=1), **kwargs)
    with pytest.raises(CdseConfigError, match="not after"):
        SearchQuery(T0, T0)


def test_the_cloud_cover_filter_is_the_one_cover_range(cdse):
    """(min, max] percent as everywhere else (it was [min, max] here): a scene at exactly 10 % is not kept."""
    assert "Value ge 0.00" in SearchQuery(T0, T0 + timedelta(days=1), cloud_cover=CoverRange(0, 50)).filter_expression()
    with pytest.raises(SettingError, match="min_cover"):
        CoverRange(50.0, 10.0)
    cdse.add_entry(name(1), T0 + timedelta(hours=1), cloud_cover=10.0)
    top = cdse.add_entry(name(2), T0 + timedelta(hours=2), cloud_cover=95.0)
    found = search_products(SearchQuery(T0, T0 + timedelta(days=1)), ep(cdse))
    assert [p.name for p in found] == [top.name]


def test_search_applies_every_filter(cdse):
    keep = cdse.add_entry(name(1), T0 + timedelta(hours=1), cloud_cover=40.0)
    cdse.add_entry(name(2), T0 + timedelta(hours=2), cloud_cover=5.0)  # too clear
    cdse.add_entry(name(3), T0 + timedelta(hours=3), cloud_cover=99.0)  # too cloudy
    cdse.add_entry(name(4), T0 + timedelta(hours=4), orbit_direction="ASCENDING")  # night
    cdse.add_entry(name(5), T0 + timedelta(hours=5), online=False)
    cdse.add_entry(name(6), T0 + timedelta(hours=6), footprint_wkt="POLYGON((100 -10, 110 -10, 110 0, 100 0, 100 -10))")
    cdse.add_entry(name(7), T0 + timedelta(hours=7), timeliness="NR")
    cdse.add_entry(name(8, "B"), T0 + timedelta(hours=8), platform="B")
    cdse.add_entry(name(9), T0 + timedelta(hours=9), product_type="SL_2_LST___")
    cdse.add_entry(name(10), T0 - timedelta(hours=1))  # before the range
    q = SearchQuery(T0, T0 + timedelta(days=1), footprint_wkt="POLYGON((0 30, 30 30, 30 60, 0 60, 0 30))",
                    timeliness="NT", platform="S3A")
    found = search_products(q, ep(cdse))
    assert [p.name for p in found] == [keep.name]
    info = found[0]
    assert info.id == keep.id and info.key == name(1) and info.cloud_cover == 40.0
    assert info.content_start == T0 + timedelta(hours=1)
    assert info.footprint_wkt == "POLYGON((10 40, 20 40, 20 50, 10 50, 10 40))"
    assert info.attributes["timeliness"] == "NT" and info.online
    params = cdse.search_params[-1]
    assert params["$orderby"] == "ContentDate/Start asc" and params["$expand"] == "Attributes"
    # without the optional filters everything in range comes back except the wrong product type
    loose = SearchQuery(T0, T0 + timedelta(days=1), cloud_cover=None, orbit_direction=None, online_only=False)
    assert len(search_products(loose, ep(cdse))) == 8


def test_paging_follows_next_link_in_order(cdse):
    for i in range(23):
        cdse.add_entry(name(i), T0 + timedelta(hours=i))
    found = search_products(SearchQuery(T0, T0 + timedelta(days=2), page_size=5), ep(cdse))
    assert [p.name for p in found] == [name(i) + ".SEN3" for i in range(23)]
    assert [p.get("$skip", "0") for p in cdse.search_params] == ["0", "5", "10", "15", "20"]


def test_skip_cap_continues_from_last_start_without_duplicates(tmp_path):
    with FakeCdse(tmp_path, max_skip=10) as cdse:
        for i in range(37):
            cdse.add_entry(name(i), T0 + timedelta(minutes=10 * i))
        cdse.add_entry(name(300), T0 + timedelta(minutes=10 * 14))  # shares a start
        found = search_products(SearchQuery(T0, T0 + timedelta(days=1), page_size=5), ep(cdse), max_skip=10)
        assert len(found) == 38 and len({p.id for p in found}) == 38
        assert [p.content_start for p in found] == sorted(p.content_start for p in found)
        assert max(int(p.get("$skip", "0")) for p in cdse.search_params) <= 10
        lower_bounds = {p["$filter"].split("ContentDate/Start ge ")[1].split(" ")[0] for p in cdse.search_params}
        assert len(lower_bounds) >= 3  # restarted from later sensing starts


def test_descending_order_with_skip_cap(tmp_path):
    with FakeCdse(tmp_path, max_skip=4) as cdse:
        for i in range(15):
            cdse.add_entry(name(i), T0 + timedelta(minutes=7 * i))
        q = SearchQuery(T0, T0 + timedelta(days=1), page_size=2, order_by="ContentDate/Start desc")
        found = search_products(q, ep(cdse), max_skip=4)
        assert [p.name for p in found] == [name(i) + ".SEN3" for i in reversed(range(15))]


def test_long_range_is_split_into_windows(cdse):
    for day in range(10):
        cdse.add_entry(name(24 * day + 5), T0 + timedelta(days=day, hours=5))
    q = SearchQuery(T0, T0 + timedelta(days=10), window=timedelta(days=3))
    found = search_products(q, ep(cdse))
    assert [p.content_start for p in found] == [T0 + timedelta(days=d, hours=5) for d in range(10)]
    starts = [p["$filter"].split("ContentDate/Start ge ")[1].split(" ")[0] for p in cdse.search_params]
    assert starts == ["2024-06-01T00:00:00.000Z", "2024-06-04T00:00:00.000Z",
                      "2024-06-07T00:00:00.000Z", "2024-06-10T00:00:00.000Z"]


def test_max_products_stops_early(cdse):
    for i in range(30):
        cdse.add_entry(name(i), T0 + timedelta(hours=i))
    found = search_products(SearchQuery(T0, T0 + timedelta(days=3), page_size=4, max_products=6), ep(cdse))
    assert [p.name for p in found] == [name(i) + ".SEN3" for i in range(6)]
    assert len(cdse.search_params) == 2


def test_search_retries_5xx_and_429_then_fails_clearly(cdse):
    cdse.add_entry(name(0), T0)
    cdse.fail_search_once = [503, 429]
    found = search_products(SearchQuery(T0, T0 + timedelta(days=1)), ep(cdse), retry=FAST)
    assert len(found) == 1 and len(cdse.search_params) == 3
    cdse.fail_search_once = [500, 500, 500]
    with pytest.raises(CdseRequestError, match="HTTP 500 .*/catalogue/odata/v1/Products after 3 attempts"):
        search_products(SearchQuery(T0, T0 + timedelta(days=1)), ep(cdse), retry=FAST)


def test_search_reports_server_rejection(cdse):
    q = SearchQuery(T0, T0 + timedelta(days=1), order_by="PublicationDate desc")
    with pytest.raises(CdseRequestError, match="HTTP 400"):
        search_products(q, ep(cdse))


def test_find_product_by_name_with_or_without_suffix(cdse):
    entry = cdse.add_entry(name(3), T0 + timedelta(hours=3), cloud_cover=33.5)
    cdse.add_entry(name(4), T0 + timedelta(hours=4))
    for given in (name(3), name(3) + ".SEN3", name(3) + ".SEN3.zip"):
        info = find_product_by_name(given, ep(cdse))
        assert info.id == entry.id and info.name == name(3) + ".SEN3" and info.cloud_cover == 33.5
    assert cdse.search_params[-1]["$filter"] == f"Name eq '{name(3)}.SEN3'"
    with pytest.raises(CdseNotFoundError, match=f"{name(77)}.SEN3"):
        find_product_by_name(name(77), ep(cdse))
    sent = len(cdse.search_params)
    with pytest.raises(ProductNameError, match="not an SL_1_RBT product name"):
        find_product_by_name("it's", ep(cdse))  # not a product name: never sent
    assert len(cdse.search_params) == sent


def test_product_info_parses_cdse_json():
    item = {
        "Id": "521bd8f9-48a5-4e1f-9435-58f97cb64d39", "Name": name(1, "B") + ".SEN3", "ContentLength": 123,
        "Online": False, "ContentDate": {"Start": "2024-06-04T11:01:00.123456Z", "End": "2024-06-04T11:04:00Z"},
        "Checksum": [{"Value": "ABC", "Algorithm": "MD5"}, {"Value": "def", "Algorithm": "BLAKE3"}],
        "GeoFootprint": {"type": "Polygon", "coordinates": [[[1, 2], [3, 2], [3, 4], [1, 2]]]},
        "Attributes": [{"Name": "cloudCover", "Value": 12, "ValueType": "Double"}],
    }
    info = ProductInfo.from_odata(item)
    assert info.checksums == {"MD5": "abc", "BLAKE3": "def"} and info.size == 123 and not info.online
    assert info.content_start == datetime(2024, 6, 4, 11, 1, 0, 123456, tzinfo=timezone.utc)
    assert info.footprint_wkt == "POLYGON((1 2, 3 2, 3 4, 1 2))" and info.cloud_cover == 12.0
    with pytest.raises(CdseRequestError, match="S3B_BAD"):
        ProductInfo.from_odata({"Id": "x", "Name": "S3B_BAD"})


def test_discovery_adds_each_product_once_across_ticks(cdse):
    for i in range(7):
        cdse.add_entry(name(i), T0 + timedelta(hours=i))
    now = T0 + timedelta(days=1)
    start, end = search_window(now, timedelta(days=2))
    assert (start, end) == (now - timedelta(days=2), now)
    q = SearchQuery(start, end)
    cursor, added = DiscoveryCursor(), []
    for _ in range(4):  # each tick: search, plan, "add partitions", store cursor as a string
        plan = plan_additions(search_products(q, ep(cdse)), cursor, {"S3A_ALREADY"}, max_new=3, window_start=start)
        added += [p.key for p in plan.new]
        cursor = DiscoveryCursor.from_json(plan.cursor.to_json())
    assert added == [name(i) for i in range(7)]
    # a product that already is a partition is never added; old cursor entries are pruned
    cdse.add_entry(name(8), T0 + timedelta(hours=8))
    plan = plan_additions(search_products(q, ep(cdse)), cursor, {name(8)}, max_new=3,
                          window_start=T0 + timedelta(hours=3))
    assert plan.new == [] and plan.skipped_known == 8
    assert sorted(plan.cursor.added) == [name(i) + ".SEN3" for i in range(3, 7)]
    with pytest.raises(CdseConfigError, match="cursor"):
        DiscoveryCursor.from_json("{not json")
