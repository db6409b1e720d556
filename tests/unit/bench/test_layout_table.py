"""bench.tables renders layout.json: every row's ratio to the first row, and a prepacked row's ratio to its eager
twin (the rows without a baseline leave that cell empty)."""

from __future__ import annotations

from bench.tables import layout_table


def row(name: str, rate: float, first: float, baseline: str | None = None, own: float | None = None) -> dict:
    r = {"layout": name, "texts_per_s_median": rate, "ratio_vs_first_median": first,
         "ratio_vs_first_range": [first - 0.1, first + 0.1]}
    if baseline:
        r |= {"baseline": baseline, "ratio_vs_baseline_median": own, "ratio_vs_baseline_range": [own - 0.05, own]}
    return r


def test_prepacked_rows_show_their_ratio_to_the_eager_row():
    layout = {"machine": {"cpu": "Test CPU", "cores": 2, "flags": []}, "dtype": "bfloat16",
              "mean_tokens_per_text": 14.9, "rounds": 5, "seconds_per_round": 3.0,
              "layouts": [row("eager linears: 1 text", 36.0, 1.0),
                          row("prepacked linears: 1 text", 49.7, 1.38, "eager linears: 1 text", 1.38)]}
    lines = layout_table(layout).splitlines()
    eager = next(line for line in lines if line.startswith("| eager"))
    packed = next(line for line in lines if line.startswith("| prepacked"))
    assert eager.endswith("|  |")
    assert "| 49.7 | 1.38x (1.28-1.48x) | 1.38x (1.33-1.38x) |" in packed
