"""Training-set selection: product splits and cover selection (cloudgan_core.export)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cloudgan_core.cover import CoverRange
from cloudgan_core.errors import CloudGANError
from cloudgan_core.export import select_pairs, split_by_product
from cloudgan_core.settings import MAX_COVER_BINS, SettingError

# --------------------------------------------------------------------------- split_by_product


@pytest.mark.parametrize(
    "n, expected",
    [
        (1, (1, 0, 0)),
        (2, (1, 0, 1)),
        (3, (1, 1, 1)),
        (4, (2, 1, 1)),
        (10, (8, 1, 1)),
        (20, (16, 2, 2)),
    ],
)
def test_split_counts(n: int, expected: tuple[int, int, int]) -> None:
    products = [f"P{k:02d}" for k in range(n)]
    got = split_by_product(products, seed=0)
    assert set(got) == set(products)
    counts = Counter(got.values())
    assert (counts["train"], counts["val"], counts["test"]) == expected


def test_split_is_deterministic_and_order_free() -> None:
    products = [f"P{k}" for k in range(12)]
    a = split_by_product(products, seed=4)
    b = split_by_product(list(reversed(products)) + products[:3], seed=4)  # order, repeats
    assert a == b
    assert any(split_by_product(products, seed=s) != a for s in range(1, 6))


def test_split_fractions_validated() -> None:
    for bad in [(0.5, 0.2, 0.2), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1), (0.5, 0.5)]:
        with pytest.raises(SettingError):
            split_by_product(["A", "B"], fractions=bad, seed=0)  # type: ignore[arg-type]
    with pytest.raises(SettingError, match="sum to 1"):
        split_by_product(["A"], fractions=(0.5, 0.2, 0.2), seed=0)
    assert issubclass(SettingError, CloudGANError)
    assert split_by_product(["A", "B", "C"], fractions=(1.0, 0.0, 0.0), seed=0) == {
        "A": "train",
        "B": "train",
        "C": "train",
    }


# --------------------------------------------------------------------------- select_pairs


def test_select_cover_range_and_max_pairs() -> None:
    f = np.array([0.0, 0.05, 0.2, 0.5, 0.5, 0.9, 1.0, np.nan]) * 100.0  # percent (5.000000000000001 is 5)
    assert select_pairs(f, cover_range=CoverRange(4.9, 90)).tolist() == [1, 2, 3, 4, 5]
    assert select_pairs(f, cover_range=CoverRange(5, 90)).tolist() == [2, 3, 4, 5]  # (min, max]
    assert select_pairs(f, cover_range=CoverRange(0, 90)).tolist() == [0, 1, 2, 3, 4, 5]  # from 0: [0, max]
    assert select_pairs(f).tolist() == [0, 1, 2, 3, 4, 5, 6]  # default [0, 100]; NaN never
    some = select_pairs(f, cover_range=CoverRange(0.0, 100.0), max_pairs=3, seed=2)
    assert some.size == 3 and np.all(np.diff(some) > 0) and 7 not in some
    assert np.array_equal(some, select_pairs(f, cover_range=CoverRange(0.0, 100.0), max_pairs=3, seed=2))
    assert select_pairs(f, max_pairs=0).size == 0
    with pytest.raises(SettingError, match="max_pairs must be an integer >= 0"):
        select_pairs(f, max_pairs=-1)
    with pytest.raises(CloudGANError):
        select_pairs(f, cover_range=CoverRange(60, 20))


def test_select_bounds_the_number_of_bins() -> None:
    f = np.linspace(0, 100, 11)
    assert select_pairs(f, MAX_COVER_BINS, balanced=True).size == 11
    for bad in (0, MAX_COVER_BINS + 1, 10**9):
        with pytest.raises(SettingError, match=rf"cover_bins must be an integer within \[1, {MAX_COVER_BINS}\]"):
            select_pairs(f, bad, balanced=True)
    with pytest.raises(SettingError, match="cover bin edges must be"):
        select_pairs(f, [0.0, 50.0, 50.0], balanced=True)
    with pytest.raises(SettingError, match="cover bin edges must be"):
        select_pairs(f, np.linspace(0, 100, MAX_COVER_BINS + 2), balanced=True)


def test_select_balanced_across_bins() -> None:
    rng = np.random.default_rng(0)
    # skewed: many low-cover candidates, few high-cover ones
    f = np.concatenate(
        [rng.uniform(0.0, 0.2, 60), rng.uniform(0.4, 0.6, 10), rng.uniform(0.8, 1.0, 3)]
    )
    p = 100.0 * f
    got = select_pairs(p, 5, balanced=True, max_pairs=21, seed=1)
    bins = np.minimum((f[got] * 5).astype(int), 4)
    counts = Counter(bins.tolist())
    assert got.size == 21
    assert counts[4] == 3  # the small bin gives all it has
    assert counts[0] == 9 and counts[2] == 9 and counts[1] == 0  # the rest shared evenly
    no_max = select_pairs(p, 5, balanced=True, seed=1)
    assert Counter(np.minimum((f[no_max] * 5).astype(int), 4).tolist()) == {0: 3, 2: 3, 4: 3}
    assert np.array_equal(got, select_pairs(p, 5, balanced=True, max_pairs=21, seed=1))
    assert not np.array_equal(got, select_pairs(p, 5, balanced=True, max_pairs=21, seed=2))


def test_select_balanced_explicit_edges_include_top() -> None:
    f = np.array([0.0, 0.25, 0.5, 1.0, 1.0])
    got = select_pairs(100.0 * f, [0.0, 50.0, 100.0], balanced=True, seed=0)
    assert sorted(Counter(np.where(f[got] < 0.5, 0, 1).tolist()).values()) == [2, 2]
