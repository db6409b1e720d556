"""results.json -> docs/results.md (tables with mean ± std over seeds) and the figures. No models here."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# Where the training sources of the broad pool draw their training units (issue 12).
BROAD_SPLITS = (
    "- Training sources of the broad pool (`data.sources`; each has a leakage test in "
    "tests/unit/training/test_broad_sources.py, and every training unit sharing a case/space-folded text with "
    "any dev or test set of any source is dropped, training/data/sources.py `eval_free`): **MedQuAD question → "
    "answer** trains on foci outside the `data.medquad_eval_foci` (400) reserved ones, from which the dev and "
    "test foci above are drawn, minus rows whose question or answer start also occurs in a reserved focus; "
    "**RQE** trains on its train file, dev and test are halves of its validation file; **HDFC bank FAQ**: "
    "questions split 70/15/15 (seeded), dev and test are question → answer retrieval over their split; "
    "**STS-B**: its own train/dev/test files, scores ≥ 4 positive, ≤ 1.5 negative, between dropped; the "
    "**unlabelled** pool takes only the training texts of the sources it names."
)

# (column title, metric key) shown in the tables; a key absent from a run (task not in the plan) is skipped.
COLUMNS = [
    ("B77 R@1", "b77_faq/r@1"),
    ("B77 MRR@10", "b77_faq/mrr@10"),
    ("B77 nDCG@10", "b77_faq/ndcg@10"),
    ("B77 no-match AUROC", "b77_nomatch/auroc"),
    ("B77 no-match P@90R", "b77_nomatch/precision@90recall"),
    ("B77 pairs F1", "b77_pairs/f1"),
    ("MQP F1", "mqp/f1"),
    ("MQP acc", "mqp/accuracy"),
    ("MQP AP", "mqp/ap"),
    ("MQP AUC", "mqp/roc_auc"),
    ("RQE F1", "rqe/f1"),
    ("RQE AUC", "rqe/roc_auc"),
    ("MedQuAD R@1", "medquad/r@1"),
    ("MedQuAD MRR@10", "medquad/mrr@10"),
    ("MQP ρ(T,S)", "mqp/spearman_teacher"),
    ("B77 ρ(T,S)", "b77_pairs/spearman_teacher"),
    ("STS-B ρ(T,S)", "stsb/spearman_teacher"),
]


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def _table(runs: list[dict], split: str) -> list[str]:
    by_system: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_system[r["system"]].append(r)
    cols = [(t, k) for t, k in COLUMNS if any(k in r.get(split, {}) for r in runs)]
    lines = ["| system | seeds | " + " | ".join(t for t, _ in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for system, rs in by_system.items():
        cells = [mean_std([r[split].get(k, float("nan")) for r in rs]) for _, k in cols]
        lines.append(f"| {system} | {len(rs)} | " + " | ".join(cells) + " |")
    return lines


def _sweep_table(points: list[dict]) -> list[str]:
    cols = [
        (t, k)
        for t, k in COLUMNS
        if k.endswith(("/f1", "/ap", "/roc_auc", "/r@1", "/auroc")) and any(k in p["dev"] for p in points)
    ]
    lines = ["| point | " + " | ".join(t for t, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {p['point']} | " + " | ".join(mean_std([p["dev"][k]]) for _, k in cols) + " |" for p in points]
    return lines


def _verdict(a: list[float], b: list[float]) -> str:
    """'higher' / 'lower' when the mean gap exceeds the seeds' spread (sum of sample stds), else 'within noise'."""
    gap = float(np.mean(a) - np.mean(b))
    spread = sum(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in (a, b))
    if abs(gap) <= spread:
        return f"Δ {gap:+.3f}, within seed noise (spread {spread:.3f})"
    return f"Δ {gap:+.3f}, {'higher' if gap > 0 else 'lower'}"


def _paired(runs: list[dict], a: str, b: str, key: str) -> str:
    """Per-seed differences a - b. A seed fixes both runs' LoRA init and batch order, so the same seed is a
    matched pair: the verdict above compares the two spreads, this says whether a wins seed by seed."""
    by_seed = {r["seed"]: r["test"][key] for r in runs if r["system"] == b and key in r.get("test", {})}
    diffs = [r["test"][key] - by_seed[r["seed"]] for r in runs if r["system"] == a and r["seed"] in by_seed]
    if len(diffs) < 2:
        return ""
    wins = sum(d > 0 for d in diffs)
    return f"; per seed {', '.join(f'{d:+.3f}' for d in diffs)}: ahead on {wins} of {len(diffs)}"


def _comparisons(runs: list[dict]) -> list[str]:
    """Plain statements: does the flipped student beat its SFT twin and its teacher, per headline metric."""
    from training.quality.plan import FULL, SFT, TEACHER

    def values(system: str, key: str) -> list[float]:
        return [r["test"][key] for r in runs if r["system"] == system and key in r.get("test", {})]

    lines = []
    for title, key in COLUMNS:
        full, sft, teacher = values(FULL, key), values(SFT, key), values(TEACHER, key)
        if not full or "ρ" in title:
            continue
        parts = [f"flipped full {mean_std(full)}"]
        if sft:
            parts.append(f"vs LoRA-SFT {mean_std(sft)} ({_verdict(full, sft)}{_paired(runs, FULL, SFT, key)})")
        if teacher:
            parts.append(f"vs teacher {mean_std(teacher)} ({_verdict(full, teacher)})")
        lines.append(f"- {title}: " + " ".join(parts))
    return lines


def _drop_table(runs: list[dict]) -> list[str]:
    lines = ["| run | seed | positives dropped | negatives dropped |", "|---|---|---|---|"]
    for r in runs:
        if r.get("filter_drop"):
            name = r.get("system") or f"sweep {r['point']}"
            d = r["filter_drop"]
            lines.append(f"| {name} | {r.get('seed', '')} | {d['drop_pos']:.3f} | {d['drop_neg']:.3f} |")
    return lines


def _run_index(runs: list[dict]) -> list[str]:
    lines = ["| system | seed | config sha256 | train wall (s) | eval wall (s) |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['system']} | {r['seed']} | `{r['config_sha256']}` | {r['wall_s']:.0f} | {r.get('eval_s', 0):.0f} |"
        for r in runs
    ]
    return lines


def write_figures(results: dict, out_dir: Path) -> list[Path]:
    """Fig. 5-style distributions and scatter, the m_c / tau sensitivity and the dev learning curves."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no figures (pip install matplotlib)")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    scores = results.get("scores", {})
    from training.quality.plan import FULL, ZERO_SHOT

    if FULL in scores and ZERO_SHOT in scores:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        panels = (("before (zero-shot)", ZERO_SHOT), ("after (flipped full)", FULL))
        for ax, (title, key) in zip(axes[:2], panels, strict=True):
            sim, label = np.array(scores[key]["sim"]), np.array(scores[key]["label"], dtype=bool)
            bins = np.linspace(min(sim.min(), -0.1), 1.0, 30)
            ax.hist(sim[label], bins=bins, alpha=0.6, label="positive pairs")
            ax.hist(sim[~label], bins=bins, alpha=0.6, label="negative pairs")
            ax.set_title(f"student similarity {title}")
            ax.set_xlabel("cosine")
            ax.legend()
        if "teacher" in scores:
            teacher = np.array(scores["teacher"]["sim"])
            label = np.array(scores[FULL]["label"], dtype=bool)
            for name, marker in ((ZERO_SHOT, "x"), (FULL, "o")):
                sim = np.array(scores[name]["sim"])
                axes[2].scatter(teacher, sim, s=8, marker=marker, alpha=0.6, label=name.split(" (")[0])
            axes[2].set_xlabel("teacher cosine")
            axes[2].set_ylabel("student cosine")
            axes[2].set_title(f"teacher vs student ({scores[FULL]['set']}, {int(label.sum())} pos)")
            axes[2].legend()
        fig.tight_layout()
        written.append(out_dir / "similarity_distributions.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    curves = [(r["system"], r["seed"], r["curve"]) for r in results["runs"] if r.get("curve") and r["table"] == "main"]
    if curves:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for system, seed, curve in curves:
            t, _, primary = zip(*curve, strict=True)
            ax.plot(t, primary, marker=".", label=f"{system} s{seed}")
        ax.set_xlabel("wall time since run start (s)")
        ax.set_ylabel("dev primary (training's dev sets)")
        ax.legend(fontsize=6)
        fig.tight_layout()
        written.append(out_dir / "learning_curves.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def _rerank_rows(path: Path) -> list[str]:
    """bench/results/rerank.json (python -m bench.rerank_bench) as a table: R@1 with and without the match head
    reordering the top-k, and the head's latency, from one run."""
    if not path.exists():
        return ["Not measured yet: `make bench-rerank` writes bench/results/rerank.json."]
    import json

    bench = json.loads(path.read_text())
    lines = [
        f"`{bench['model']}`, top-{bench['top_k']} reranked, {bench.get('max_queries') or 'all'} sampled test "
        f"queries per set (seed {bench.get('seed', 0)}), {bench.get('dtype', 'float32')} on "
        f"{bench.get('threads', 1)} thread(s):",
        "",
        "| set | queries | R@1 embedding | R@1 + rerank | top-k ceiling |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, q in bench["quality"].items():
        lines.append(f"| {name} | {q['queries']} | {q['r@1_embedding']:.3f} | {q['r@1_rerank']:.3f} "
                     f"| {q['recall@k_ceiling']:.3f} |")
    lines += ["", "| rerank latency | p50 ms per query | queries/s |", "|---|---:|---:|"]
    lines += [f"| concurrency {t['concurrency']} | {t['p50_ms']:.0f} | {t['queries_per_s']:.1f} |"
              for t in bench["rerank_latency"]]
    return lines


def render(results: dict, command: str, figures: list[Path], doc_dir: Path) -> str:
    plan, hw = results["plan"], results["hardware"]
    main = [r for r in results["runs"] if r["table"] == "main"]
    from training.quality.plan import FULL

    full = [r for r in results["runs"] if r["system"] == FULL and r["seed"] == plan["seeds"][0]]
    ablation = full + [r for r in results["runs"] if r["table"] == "ablation"]
    variants = full + [r for r in results["runs"] if r["table"] == "variant"]
    lines = [
        "# Results (issue 7)",
        "",
        "Generated by `python -m training.quality run`; do not edit by hand.",
        "",
        f"Command: `{command}`",
        "",
        f"Base config `{plan['config']}`, overrides on every run: `{' '.join(plan['overrides'])}`. "
        f"Seeds: {plan['seeds']} (main distilled rows: mean ± sample std over seeds; other rows and ablations: "
        f"seed {plan['seeds'][0]}). Total wall time {results.get('total_wall_s', 0) / 60:.1f} min "
        f"(teacher fine-tune shared by every run).",
        "",
        "Hardware: " + ", ".join(f"{k}: {v}" for k, v in hw.items()),
        "",
        "Skipped to stay within the budget: " + (", ".join(results["skipped"]) if results.get("skipped") else "none"),
        "",
        "## Table 1: systems × datasets (test)",
        "",
        "Thresholds (F1, accuracy) are chosen on each task's dev set and applied unchanged to test; each test set "
        "is evaluated once per run. ρ(T,S): Spearman of teacher and student cosine similarities on the test pairs; "
        "STS-B's are general-domain pairs from a source the default does not train on (`splits` below says "
        "whether this run did).",
        "",
        *_table(main, "test"),
        "",
        "### Does the flipped student beat its SFT twin and its teacher? (test, computed from the table)",
        "",
        *_comparisons(results["runs"]),
        "",
        "Why, and what was tried to close the gap: [results-analysis.md](results-analysis.md) (hand-written notes on "
        "a given run; dated there).",
        "",
        "## Table 2: ablations (test, seed " + str(plan["seeds"][0]) + ")",
        "",
        *_table(ablation, "test"),
        "",
        "## Table 3: open choices tried to close the gap (test, seed " + str(plan["seeds"][0]) + ")",
        "",
        "Variants of the full method the paper leaves open; chosen before the run, not tuned on test.",
        "",
        *_table(variants, "test"),
        "",
        f"## Sensitivity (dev, seed {plan['seeds'][0]}): m_c and the dual threshold τ_pos = τ_neg",
        "",
        *_sweep_table(results.get("sweep", [])),
        "",
        "## Dual-threshold filter: what it dropped",
        "",
        "Mean over logged training steps of the fraction of gold-labelled positives / negatives the teacher "
        "contradicted (teacher cosine below τ_pos / above τ_neg), per run.",
        "",
        *_drop_table(results["runs"] + [s for s in results.get("sweep", []) if s.get("filter_drop")]),
    ]
    from training.records import preset_table

    lines += [
        "",
        "## Presets, students and rerank (test; each command's own record)",
        "",
        "Written by the commands that trained them (`make distill RECORD=...`, into docs/results.json) and "
        "rendered here and in the README; not re-run by this benchmark. Dev thresholds applied to test.",
        "",
        preset_table(results),
        "",
        "### Rerank: the match head reordering the embedding's top-k",
        "",
        *_rerank_rows(doc_dir.parent / "bench" / "results" / "rerank.json"),
    ]
    lines += ["", "## Figures", ""]
    lines += [f"![{p.stem}]({p.relative_to(doc_dir) if p.is_relative_to(doc_dir) else p})" for p in figures]
    lines += [
        "",
        "similarity_distributions: student cosine for positive vs negative test pairs before (zero-shot, last "
        "token) and after flipped distillation, and teacher vs student cosine (the paper's Fig. 5). "
        "learning_curves: the training dev metric (`primary` in each run's scalars.jsonl, tag dev) against wall "
        "time.",
        "",
        "## Evaluation sets and splits",
        "",
        "- Banking77 FAQ retrieval: the corpus holds the FAQ alternates of training/data/sources.py's split (same "
        "seed), minus the held-out intents; dev queries are the sources' dev queries, test queries a seeded "
        "sample of test.csv. No-match: queries of the held-out intents are out of scope (positives = in-scope "
        "queries scored by their best corpus cosine; AUROC and precision with the answer threshold set at 90% "
        "in-scope recall). The held-out intents are also kept out of training (`data.exclude_intents`, teacher "
        "fine-tune and distillation alike), so out-of-scope queries are unseen. "
        "Banking77 pairs: per intent one positive (same intent) and one random other-intent negative.",
        "- MQP and RQE: the training sources' own dev/test splits (MQP split by question_1; RQE: label-stratified "
        "seeded halves of the validation file).",
        "- MedQuAD: question → answer retrieval over (focus, qtype) groups. Question → question retrieval is not "
        "possible without leakage: questions are template-made and only 7 of 14,332 groups have two distinct "
        "question strings. The corpus text of an entry is the first characters of its answer, the query its "
        "question; foci are split (seeded) between dev and test and every qtype of a chosen focus is in the "
        "corpus, so a query must match both the disease and the question type.",
        BROAD_SPLITS,
        "",
        "```",
        *[f"{k}: {v}" for k, v in results["splits"].items()],
        "```",
        "",
        "## Runs",
        "",
        *_run_index(results["runs"]),
        "",
    ]
    return "\n".join(lines)


def write_report(results: dict, command: str, out_path: Path) -> Path:
    out_path = Path(out_path)
    figures = write_figures(results, out_path.parent / "figures")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(render(results, command, figures, out_path.parent))
    return out_path
