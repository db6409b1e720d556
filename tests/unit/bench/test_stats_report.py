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


def test_pooled_rounds_and_round_ratios():
    from bench.stats import LevelSamples, pooled, round_ratios, spread

    ours = [LevelSamples([0.1] * 20, 0, 2.0), LevelSamples([0.1] * 30, 1, 2.0), LevelSamples([0.2] * 10, 0, 2.0)]
    other = [LevelSamples([0.2] * 10, 0, 2.0), LevelSamples([0.2] * 10, 0, 2.0), LevelSamples([0.2] * 10, 0, 2.0)]
    level = pooled("x", 32, ours)
    assert level.requests == 61 and level.errors == 1 and level.throughput == pytest.approx(60 / 6.0)
    r = round_ratios(ours, other)
    assert r["throughput_ratio"] == {"median": 2.0, "min": 1.0, "max": 3.0, "rounds": 3}
    assert r["p99_ratio"]["median"] == pytest.approx(0.5)
    assert spread([])["rounds"] == 0 and math.isnan(spread([])["median"])


def test_zipf_stream_favours_the_head_and_is_seeded():
    from bench.data import zipf_stream

    queries = [f"q{i}" for i in range(100)]
    stream = zipf_stream(queries, 5000, exponent=1.0, seed=3)
    assert stream == zipf_stream(queries, 5000, exponent=1.0, seed=3)
    counts = {q: stream.count(q) for q in ("q0", "q1", "q9", "q99")}
    assert counts["q0"] > counts["q1"] > counts["q9"] > counts["q99"]
    assert counts["q0"] / counts["q9"] == pytest.approx(10, rel=0.35)  # 1/k: rank 1 is 10x rank 10


def test_ratio_table_reports_median_and_spread():
    from bench.report import ratio_table

    spread_ = {"median": 2.1, "min": 1.8, "max": 2.4, "rounds": 5}
    table = ratio_table({"32": {"infinity": {"throughput_ratio": spread_, "p99_ratio": spread_}}})
    assert "| 32 | infinity | 2.10x | 1.80-2.40x | 2.10x | 5 |" in table


def test_machine_description_lists_key_flags(tmp_path):
    from bench.machine import describe, label

    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Test CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    found = describe(info)
    assert found["cpu"] == "Test CPU" and found["key_flags"] == ["avx2", "avx512f", "avx512_bf16"]
    assert "Test CPU" in label(found) and "avx512_bf16" in label(found)
