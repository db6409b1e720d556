"""Markdown tables for docs/performance.md, rendered from the results files (serve.json, layout.json,
encoder.json, int8.json), so the document's numbers are regenerated, not retyped.

    .venv/bin/python -m bench.tables --results bench/results
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from bench.machine import label
from bench.report import markdown_table, ratio_table
from bench.stats import LevelResult


def serve_tables(serve: dict) -> str:
    levels = [LevelResult(**row) for row in serve["levels"]]
    parts = [f"Machine: {label(serve['machine'])}\n", markdown_table(levels), ratio_table(serve.get("ratios", {}))]
    batches = serve.get("mean_batch_size") or {}
    if batches:
        parts.append("| FlipMatch server @ concurrency | mean texts per forward pass |\n|---|---:|\n" + "".join(
            f"| {k} | {v:.1f} |\n" for k, v in batches.items()))
    info = serve.get("flipmatch_info") or {}
    if info:
        rows = ["| server | dtype | threads per pass | passes at once | passes run in | packed | selection | "
                "fitted overhead (tokens) | calibration s |", "|---|---|---:|---:|---|---|---|---:|---:|"]
        for name, i in info.items():
            c = i.get("compute", {})
            overhead = c.get("batch_overhead_tokens")
            rows.append(f"| {name} | {i['dtype']} | {c.get('threads')} | {c.get('forward_workers', 1)} | "
                        f"{'processes' if c.get('forward_processes') else 'threads'} | "
                        f"{'yes' if c.get('packed') else 'no'} | {c.get('selection')} | "
                        f"{'n/a' if overhead is None else format(overhead, '.1f')} | "
                        f"{c.get('calibration_seconds', 0):.1f} |")
        parts.append("\n".join(rows) + "\n")
        main = info.get("flipmatch", {}).get("compute", {})
        if main.get("candidates"):
            batch = "12 texts, every worker busy" if "workers" in main["candidates"][0] else "8 texts"
            cand = [f"| candidate | ms (1 text) | ms per pass ({batch}) | min cosine | passed |",
                    "|---|---:|---:|---:|---|"]
            for c in main["candidates"]:
                ms = [f"{x:.1f}" for x in c["ms"]] + ["not timed"] * (2 - len(c["ms"]))
                layout = f" x {c['workers']} at once" if c.get("workers", 1) > 1 else ""
                cand.append(f"| {c['dtype']} / {c['threads']} thread(s){layout} | {ms[0]} | {ms[1]} | "
                            f"{c['min_cosine']:.5f} | {c['passed']} |")
            parts.append("\n".join(cand) + "\n")
    corpus = serve.get("corpus")
    if corpus and "search_unloaded" in corpus:  # results files from before issue 14 lack it
        parts.append(corpus_table({"flipmatch": corpus, **(serve.get("corpus_variants") or {})}))
    cache = serve.get("query_cache")
    if cache:
        levels = [LevelResult(**row) for row in cache["levels"]]
        r = cache.get("ratio_cached_vs_uncached") or {}
        t = r.get("throughput_ratio", {})
        parts.append(f"Zipf replay (exponent {cache['zipf_exponent']}, {cache['distinct_queries']} distinct of "
                     f"{cache['stream']} drawn), concurrency 32, hit rate {cache['hit_rate']:.1%}; cached / uncached "
                     f"throughput {t.get('median', float('nan')):.2f}x (rounds {t.get('min', 0):.2f}-"
                     f"{t.get('max', 0):.2f}x)\n\n" + markdown_table(levels))
    return "\n".join(parts)


def corpus_table(servers: dict[str, dict]) -> str:
    """Search latency per server: the median round's measures, and the p99 ratio's median (min-max) over rounds
    where the file has rounds."""
    def ratio(c: dict) -> str:
        spread = c.get("p99_ratio_over_rounds")
        if not spread:
            return f"{c['p99_at_70pct_over_unloaded_p50']:.2f}x"
        return (f"{spread['median']:.2f}x ({spread['min']:.2f}-{spread['max']:.2f}x, "
                f"{len(c['rounds'])} rounds)")

    names = list(servers)
    rows = ["| measure | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]

    def row(label: str, cell: Callable[[dict], str]) -> None:
        rows.append(f"| {label} | " + " | ".join(cell(servers[n]) for n in names) + " |")

    row("bulk import (texts/s, embedding included)", lambda c: f"{c['bulk_texts_per_s']:.1f}")
    row("search unloaded (1 client): p50 / p99 ms",
        lambda c: f"{c['search_unloaded']['p50_ms']:.1f} / {c['search_unloaded']['p99_ms']:.1f}")
    row("search saturation (concurrency 32)", lambda c: f"{c['search_saturation']['throughput']:.1f} req/s, "
        f"p99 {c['search_saturation']['p99_ms']:.0f} ms")
    row("search at 70% of saturation: offered req/s; p50 / p99 ms",
        lambda c: f"{c['search_at_70pct']['rate']:.1f}; {c['search_at_70pct']['p50_ms']:.1f} / "
        f"{c['search_at_70pct']['p99_ms']:.1f}")
    row("**p99 at 70% / unloaded p50**", ratio)
    return "\n".join(rows) + "\n"


def encoder_table(enc: dict) -> str:
    rows = [f"Machine: {label(enc['machine'])}\n" if "machine" in enc else "",
            "| variant | threads | ms / batch | texts/s | min cosine vs fp32 |", "|---|---:|---:|---:|---:|"]
    rows += [f"| {r['variant']} | {r['threads']} | {r['ms_per_batch']:.0f} | {r['texts_per_s']:.1f} | "
             f"{r['min_cosine']:.4f} |" for r in enc["variants"]]
    peaks = enc.get("matmul_peak_flops", {})
    if peaks:
        rows.append("\nmatmul peak GFLOP/s: " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks.items()))
    return "\n".join(rows) + "\n"


def layout_table(layout: dict) -> str:
    rows = [f"Machine: {label(layout['machine'])}; {layout['dtype']}; mean {layout['mean_tokens_per_text']:.1f} "
            f"tokens per text; {layout['rounds']} interleaved rounds of {layout['seconds_per_round']:.0f} s\n",
            "| layout | texts/s (median) | vs the first row (median, min-max over rounds) | prepacked vs eager "
            "linears (median, min-max) |", "|---|---:|---|---|"]
    for r in layout["layouts"]:
        own = (f"{r['ratio_vs_baseline_median']:.2f}x ({r['ratio_vs_baseline_range'][0]:.2f}-"
               f"{r['ratio_vs_baseline_range'][1]:.2f}x)" if "baseline" in r else "")
        rows.append(f"| {r['layout']} | {r['texts_per_s_median']:.1f} | {r['ratio_vs_first_median']:.2f}x "
                    f"({r['ratio_vs_first_range'][0]:.2f}-{r['ratio_vs_first_range'][1]:.2f}x) | {own} |")
    return "\n".join(rows) + "\n"


def int8_table(int8: dict) -> str:
    rows = ["| int8 variant (in the order tried) | texts/s (batch 32, 1 thread) | min cosine | mean cosine | "
            f">= {int8['target_min_cosine']} |", "|---|---:|---:|---:|---|"]
    rows += [f"| {r['variant']} | {'not timed' if r['texts_per_s'] is None else format(r['texts_per_s'], '.1f')} | "
             f"{r['min_cosine']:.4f} | {r['mean_cosine']:.4f} | "
             f"{'yes' if r['meets_target'] else 'no'} |" for r in int8["rows"]]
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    for name, render in (("serve.json", serve_tables), ("layout.json", layout_table), ("encoder.json", encoder_table),
                         ("int8.json", int8_table)):
        path = args.results / name
        if path.exists():
            print(f"<!-- {path} -->\n{render(json.loads(path.read_text()))}")  # noqa: T201 - the command's output


if __name__ == "__main__":
    main()
