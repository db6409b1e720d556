"""Pure logic of the benchmarks: percentiles, level summaries, ratios and the markdown/JSON report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.report import markdown_table, ratios, write_reports
from bench.stats import LevelResult, percentile, summarize


def test_percentile_matches_numpy():
    values = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    for q in (0, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edges():
    assert math.isnan(percentile([], 50))
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_counts_errors_out_of_throughput():
    r = summarize("x", 8, [0.01, 0.02, 0.03], errors=1, seconds=2.0)
    assert r.requests == 4 and r.errors == 1
    assert r.throughput == pytest.approx(1.5)
    assert r.p50_ms == pytest.approx(20.0)


def level(system: str, c: int, tput: float, p99: float) -> LevelResult:
    return LevelResult(system, c, 100, 0, 1.0, tput, p99 / 2, p99, p99)


def test_ratios_and_table(tmp_path):
    levels = [level("flipmatch", 32, 300, 50), level("naive", 32, 30, 900), level("naive", 8, 30, 300)]
    got = ratios(levels, ours="flipmatch", concurrency=32)
    assert got["naive"]["throughput_ratio"] == pytest.approx(10)
    assert got["naive"]["p99_ratio"] == pytest.approx(50 / 900)
    assert ratios(levels, ours="flipmatch", concurrency=1) == {}
    table = markdown_table(levels)
    assert table.count("\n") == 5 and "| flipmatch | 32 |" in table
    write_reports(tmp_path, levels=levels, extra={"notes": {}})
    assert json.loads((tmp_path / "serve.json").read_text())["levels"][0]["system"] == "flipmatch"
    assert (tmp_path / "serve.md").read_text() == table
