"""The search-latency measure over rounds: the median round is reported with the ratio's spread, and the table
shows every compared server (and files from before rounds existed)."""

from __future__ import annotations

from bench.serve_bench import summarise_corpus
from bench.tables import corpus_table


def round_with(ratio: float, p99: float) -> dict:
    return {"search_unloaded": {"p50_ms": 20.0, "p99_ms": 30.0},
            "search_saturation": {"throughput": 130.0, "p99_ms": 400.0},
            "search_at_70pct": {"rate": 91.0, "p50_ms": 60.0, "p99_ms": p99},
            "p99_at_70pct_over_unloaded_p50": ratio}


def test_the_median_round_is_reported_with_the_spread():
    bulk = {"bulk_texts": 10, "bulk_seconds": 1.0, "bulk_texts_per_s": 10.0}
    summary = summarise_corpus(bulk, [round_with(9.0, 180.0), round_with(4.0, 80.0), round_with(5.0, 100.0)])
    assert summary["p99_ratio_over_rounds"] == {"median": 5.0, "min": 4.0, "max": 9.0}
    assert summary["search_at_70pct"]["p99_ms"] == 100.0  # the median round's own measures, not a mix
    assert summary["bulk_texts_per_s"] == 10.0 and len(summary["rounds"]) == 3


def test_the_table_has_a_column_per_server_and_reads_single_round_files():
    bulk = {"bulk_texts": 10, "bulk_seconds": 1.0, "bulk_texts_per_s": 10.0}
    rounds = summarise_corpus(bulk, [round_with(5.0, 100.0), round_with(4.0, 80.0)])
    single = {**bulk, **round_with(8.5, 170.0)}  # a results file from before rounds
    lines = corpus_table({"flipmatch": rounds, "flipmatch (forward threads)": single}).splitlines()
    assert lines[0] == "| measure | flipmatch | flipmatch (forward threads) |"
    ratio = next(line for line in lines if "p99 at 70%" in line)
    assert ratio.endswith("| 5.00x (4.00-5.00x, 2 rounds) | 8.50x |")
