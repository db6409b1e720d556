"""Report writing for the serving benchmark: JSON, a markdown table and a latency-vs-throughput PNG."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from bench.stats import LevelResult


def markdown_table(levels: Sequence[LevelResult]) -> str:
    lines = ["| system | concurrency | requests | errors | throughput (req/s) | p50 ms | p95 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in levels:
        lines.append(f"| {r.system} | {r.concurrency} | {r.requests} | {r.errors} | {r.throughput:.1f} | "
                     f"{r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.p99_ms:.1f} |")
    return "\n".join(lines) + "\n"


def ratio_table(ratios: dict[str, dict[str, dict[str, dict[str, float]]]], *, ours: str = "flipmatch") -> str:
    """Per load level and other system: median ratio over interleaved rounds, with min-max across rounds."""
    lines = [f"| concurrency | {ours} vs | throughput ratio (median) | min-max over rounds | p99 ratio (median) "
             "| rounds |",
             "|---:|---|---:|---|---:|---:|"]
    for concurrency, others in ratios.items():
        for name, r in others.items():
            t, p = r["throughput_ratio"], r["p99_ratio"]
            lines.append(f"| {concurrency} | {name} | {t['median']:.2f}x | {t['min']:.2f}-{t['max']:.2f}x | "
                         f"{p['median']:.2f}x | {t['rounds']} |")
    return "\n".join(lines) + "\n"


def ratios(levels: Sequence[LevelResult], *, ours: str, concurrency: int) -> dict[str, dict[str, float]]:
    """Throughput and p99 ratios of `ours` against every other system at one concurrency."""
    at = {r.system: r for r in levels if r.concurrency == concurrency}
    if ours not in at:
        return {}
    mine = at[ours]
    return {name: {"throughput_ratio": mine.throughput / r.throughput if r.throughput else float("inf"),
                   "p99_ratio": mine.p99_ms / r.p99_ms if r.p99_ms else float("nan")}
            for name, r in at.items() if name != ours}


def write_plot(levels: Sequence[LevelResult], path: Path) -> str | None:
    """p50 and p99 latency against throughput, one line per system. Returns why it was skipped, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        return f"matplotlib unavailable ({err}); install matplotlib into .venv for the plot"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for system in dict.fromkeys(r.system for r in levels):
        rows = sorted((r for r in levels if r.system == system), key=lambda r: r.concurrency)
        line, = ax.plot([r.throughput for r in rows], [r.p99_ms for r in rows], marker="o", label=f"{system} p99")
        ax.plot([r.throughput for r in rows], [r.p50_ms for r in rows], marker=".", linestyle="--",
                color=line.get_color(), label=f"{system} p50")
        for r in rows:
            ax.annotate(str(r.concurrency), (r.throughput, r.p99_ms), fontsize=7)
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("latency (ms, log)")
    ax.set_yscale("log")
    ax.set_title("/v1/embeddings, one text per request (labels: concurrency)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def write_reports(out: Path, *, levels: Sequence[LevelResult], extra: dict[str, object]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    payload = {"levels": [r.as_dict() for r in levels], **extra}
    skipped = write_plot(levels, out / "serve.png")
    if skipped:
        payload["plot_skipped"] = skipped
    (out / "serve.json").write_text(json.dumps(payload, indent=2, default=str))
    table = markdown_table(levels)
    if extra.get("ratios"):
        table += "\n" + ratio_table(extra["ratios"])  # type: ignore[arg-type]
    (out / "serve.md").write_text(table)
