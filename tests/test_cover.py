"""The cover histogram and its Markdown table (cloudgan_core.cover)."""

from __future__ import annotations

from cloudgan_core.cover import cover_histogram, histogram_markdown


def test_histogram_markdown_rows_are_percent_ranges():
    text = histogram_markdown({"edges": [0.0, 50.0, 100.0], "counts": [3, 4]})
    assert text.splitlines() == ["| cloud cover | pairs |", "|---|---|", "| [0 %, 50 %) | 3 |", "| [50 %, 100 %] | 4 |"]


def test_histogram_of_covers_in_percent():
    hist = cover_histogram([0.0, 9.99, 9.9999999, 10.0, 30.000000000000004, 100.0])
    # bins [0, 10), [10, 20), ..., [90, 100]; covers are rounded to 6 decimals first (9.9999999 is 10)
    assert hist["counts"] == [2, 2, 0, 1, 0, 0, 0, 0, 0, 1]
    assert histogram_markdown(hist).splitlines()[-1] == "| [90 %, 100 %] | 1 |"
