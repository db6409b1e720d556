"""Training throughput, side by side in one process: texts per second of distillation steps for several
configurations, in interleaved rounds (A, B, C, A, B, C ...) so machine drift hits all alike. Each ratio is the
median over rounds against the first variant (the round-one default), with its spread.

    .venv/bin/python -m bench.train_bench --out bench/results          # writes train.json, prints the table

A variant is `name:key=value,key=value` over the default config; `old_loop=1` runs a step as round one did (the
teacher re-encodes every batch, every text runs all kept blocks). The whole-run figure adds the prefix cache's
one-off fill, amortised over the variant's own planned steps.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.machine import describe
from training.config import TrainConfig, load_config
from training.data.batches import UnitSampler
from training.data.sources import load_task_data
from training.distill import _attach_prefix, _probe_step, forward_backward
from training.hardware import resolve_bf16
from training.losses.combined import FlipLoss
from training.prefix_cache import PrefixCache
from training.student import load_student
from training.teacher import TeacherScorer, load_teacher

logger = logging.getLogger("bench.train")

ROUND_ONE = (
    "round-one default:old_loop=1,student.pooling=lasttoken,optim.lr=2e-4,optim.steps=260,"
    "lora.top_layers=8,lora.dropout=0.05,student.prefix_cache=false"
)


class _Unmemoised(TeacherScorer):
    """Round one's teacher: every batch re-encoded."""

    def embed(self, texts: list[str]):
        return self._encode(texts)


@dataclass
class Variant:
    name: str
    cfg: TrainConfig
    old_loop: bool
    texts_per_s: list[float] = field(default_factory=list)
    fill_s: float = 0.0
    prefix_texts: int = 0


def parse_variant(spec: str, base: Path) -> Variant:
    name, _, settings = spec.partition(":")
    overrides = [s for s in settings.split(",") if s]
    old = "old_loop=1" in overrides
    cfg = load_config(base, [o for o in overrides if not o.startswith("old_loop=")])
    return Variant(name, cfg, old)


def run(variants: list[Variant], steps: int, rounds: int, device: str = "cpu") -> dict:
    base = variants[0].cfg
    teacher = load_teacher(base.teacher.model, device, base.teacher.max_seq_length)
    memo = TeacherScorer(teacher)
    data = load_task_data(base.data, memo.embed)
    states = []
    for v in variants:
        student = load_student(v.cfg.student, v.cfg.lora, device)
        bf16, _ = resolve_bf16(v.cfg.optim.bf16, device, _probe_step(student, device))  # measured, as distill()
        prefix = None if v.old_loop else _attach_prefix(student, v.cfg, bf16)
        if prefix is not None:  # a cache of its own: each variant pays (and reports) its one-off fill
            prefix = student.prefix = PrefixCache(student, prefix.depth, autocast_bf16=bf16)
        sampler = UnitSampler(data.train, v.cfg.optim.batch_pairs, v.cfg.data.seed)
        scorer = memo
        if not v.old_loop:  # as distill() does: teacher vectors and frozen blocks once per distinct text
            started = time.perf_counter()
            upcoming = [t for s in range(v.cfg.optim.steps) for p in sampler.batch(s) for t in (p.text_a, p.text_b)]
            scorer = TeacherScorer(teacher)  # its own memo: each variant pays its teacher pass
            scorer.embed(upcoming)
            if prefix is not None:
                prefix.fill(upcoming)
                v.prefix_texts = len(prefix)
            v.fill_s = time.perf_counter() - started
        params = [p for p in student.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=v.cfg.optim.lr)
        scorer = _Unmemoised(teacher) if v.old_loop else scorer
        states.append((v, student, sampler, opt, scorer, FlipLoss(v.cfg.loss), bf16))
    for r in range(rounds):
        for v, student, sampler, opt, scorer, loss_fn, bf16 in states:
            student.train()
            texts, started = 0, time.perf_counter()
            for s in range(r * steps, (r + 1) * steps):
                pairs = sampler.batch(s)
                forward_backward(student, scorer, loss_fn, pairs, device, bf16)
                torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                texts += 2 * len(pairs)
            v.texts_per_s.append(texts / (time.perf_counter() - started))
            logger.info("round %d %-40s %.1f texts/s", r, v.name, v.texts_per_s[-1])
    return report(variants, steps, rounds)


def report(variants: list[Variant], steps: int, rounds: int) -> dict:
    ref = variants[0]
    rows = []
    for v in variants:
        ratios = [a / b for a, b in zip(v.texts_per_s, ref.texts_per_s, strict=True)]
        median = statistics.median(v.texts_per_s)
        step_texts = 2 * v.cfg.optim.batch_pairs
        run_s = v.cfg.optim.steps * step_texts / median + v.fill_s
        rows.append(
            {
                "variant": v.name,
                "steady_texts_per_s": median,
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "prefix_fill_s": v.fill_s,
                "prefix_texts": v.prefix_texts,
                "planned_steps": v.cfg.optim.steps,
                "whole_run_texts_per_s": v.cfg.optim.steps * step_texts / run_s,
            }
        )
    whole_ref = rows[0]["whole_run_texts_per_s"]
    for row in rows:
        row["whole_run_ratio"] = row["whole_run_texts_per_s"] / whole_ref
    machine = describe()
    return {
        "command": "python -m bench.train_bench",
        "cpu": machine["cpu"],
        "machine": machine,
        "threads": torch.get_num_threads(),
        "steps_per_round": steps,
        "rounds": rounds,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("training/configs/default.yaml"))
    parser.add_argument("--variant", action="append", default=[], help="name:key=value,... (first: round one)")
    parser.add_argument("--steps", type=int, default=8, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    specs = [ROUND_ONE, "default:"] + args.variant
    result = run([parse_variant(s, args.config) for s in specs], args.steps, args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.json").write_text(json.dumps(result, indent=2))
    print(f"{'variant':<44}{'texts/s':>9}{'ratio (min-max)':>22}{'whole run':>11}")
    for row in result["rows"]:
        spread = f"{row['ratio_median']:.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
        print(f"{row['variant']:<44}{row['steady_texts_per_s']:>9.1f}{spread:>22}{row['whole_run_ratio']:>10.2f}x")


if __name__ == "__main__":
    main()
