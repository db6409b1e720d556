"""Forward-pass layouts on CPU, side by side in one process, on Banking77 test questions in arrival order:

- padded passes (one row per text, padded to the longest) against packed passes (one unpadded row, positions
  restarting per text), at the same number of texts per pass;
- one pass at a time on all cores against one 1-thread pass per core at once (forward workers);
- packed passes of growing size (the `max_packed_tokens` budget);
- eager `nn.Linear` layers against oneDNN-prepacked ones (engine/prepack.py; the served default), for a lone
  question and for full passes.

Every configuration runs in interleaved rounds (A, B, C, A, B, C ...) so a drift of the machine touches all alike;
texts/s is the median over rounds, and ratios are taken within each round. Writes layout.json.

    .venv/bin/python -m bench.layout_bench --model artifacts/flipmatch-default --out bench/results
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import machine
from bench.data import load_queries
from service.engine.encoder import Encoder, load_encoder, set_threads
from service.engine.engine import TokenizedText

logger = logging.getLogger("bench.layout")


@dataclass(frozen=True)
class Layout:
    name: str
    texts_per_pass: int
    packed: bool
    threads: int  # per pass
    workers: int  # passes at once
    prepacked: bool = True  # the served default (engine/prepack.py); False: eager nn.Linear
    baseline: str | None = None  # the row a second ratio is taken against (eager against prepacked pairs)


def texts_per_second(encoders: dict[bool, Encoder], layout: Layout, texts: Sequence[TokenizedText],
                     seconds: float) -> float:
    """`layout.workers` threads each run passes of `texts_per_pass` consecutive texts for `seconds`, through
    `encoders[layout.prepacked]`."""
    encoder = encoders[layout.prepacked]
    done = [0] * layout.workers
    stop = time.perf_counter() + seconds

    def worker(w: int) -> None:
        set_threads(layout.threads)  # torch keeps the thread count per OS thread
        start = w * layout.texts_per_pass
        while time.perf_counter() < stop:
            batch = [texts[(start + i) % len(texts)] for i in range(layout.texts_per_pass)]
            encoder.encode(batch, packed=layout.packed)
            done[w] += len(batch)
            start += layout.workers * layout.texts_per_pass

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(layout.workers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - started)


def layouts(cores: int, batch: int, budgets: Sequence[int], mean_tokens: float) -> list[Layout]:
    out = [Layout(f"padded, {batch} texts, 1 x {cores}-thread pass", batch, False, cores, 1),
           Layout(f"packed, {batch} texts, 1 x {cores}-thread pass", batch, True, cores, 1)]
    if cores > 1:
        out += [Layout(f"padded, {batch} texts, {cores} x 1-thread passes", batch, False, 1, cores),
                Layout(f"packed, {batch} texts, {cores} x 1-thread passes", batch, True, 1, cores)]
    for budget in budgets:  # packed passes filled to about `budget` tokens, on the faster worker layout
        n = max(1, round(budget / mean_tokens))
        out.append(Layout(f"packed, ~{budget} tokens ({n} texts), {cores} x 1-thread passes", n, True, 1, cores))
    pairs = [(1, 1, 1, "1 text, 1 x 1-thread pass"), (1, cores, 1, f"1 text, 1 x {cores}-thread pass"),
             (batch, 1, cores, f"packed, {batch} texts, {cores} x 1-thread passes")]
    for n, threads, workers, what in pairs if cores > 1 else pairs[:1]:
        eager = Layout(f"eager linears: {what}", n, True, threads, workers, prepacked=False)
        out += [eager, Layout(f"prepacked linears: {what}", n, True, threads, workers, baseline=eager.name)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="artifacts/flipmatch-default")
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch", type=int, default=12, help="texts per pass of the layout comparison")
    parser.add_argument("--budgets", type=int, nargs="*", default=[128, 256, 384, 512, 768])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per configuration per round")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    cores = machine.describe().get("cores") or 1
    encoders = {prepack: load_encoder(args.model, device="cpu", dtype=args.dtype, cpu_threads=1, prepack=prepack)
                for prepack in (True, False)}
    encoder = encoders[True]
    if not encoder.prepacked:
        raise SystemExit("the prepacked encoder fell back to eager linears on this machine (see the log)")
    queries = load_queries(Path(args.data_dir))
    random.Random(0).shuffle(queries)
    texts = encoder.tokenize(queries[:2000])
    mean_tokens = sum(t.n_tokens for t in texts) / len(texts)
    configs = layouts(int(cores), args.batch, args.budgets, mean_tokens)
    rates: dict[str, list[float]] = {c.name: [] for c in configs}
    for round_ in range(args.rounds):
        for config in configs:
            rates[config.name].append(texts_per_second(encoders, config, texts, args.seconds))
        logger.info("round %d: %s", round_ + 1, {k: round(v[-1], 1) for k, v in rates.items()})

    def ratios(name: str, base: str) -> list[float]:  # per round: drift touches both sides alike
        return [a / b for a, b in zip(rates[name], rates[base], strict=True)]

    rows = []
    for c in configs:
        first = ratios(c.name, configs[0].name)
        row = {"layout": c.name, "texts_per_pass": c.texts_per_pass, "packed": c.packed, "threads": c.threads,
               "workers": c.workers, "prepacked": c.prepacked, "texts_per_s_median": statistics.median(rates[c.name]),
               "texts_per_s_rounds": rates[c.name], "ratio_vs_first_median": statistics.median(first),
               "ratio_vs_first_range": [min(first), max(first)]}
        if c.baseline:
            own = ratios(c.name, c.baseline)
            row |= {"baseline": c.baseline, "ratio_vs_baseline_median": statistics.median(own),
                    "ratio_vs_baseline_range": [min(own), max(own)]}
        rows.append(row)
    result = {"machine": machine.describe(), "model": args.model, "dtype": args.dtype,
              "mean_tokens_per_text": mean_tokens, "rounds": args.rounds, "seconds_per_round": args.seconds,
              "method": "interleaved rounds in one process; Banking77 test questions in arrival order; ratios "
                        "per round against the first layout, median and range", "layouts": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "layout.json").write_text(json.dumps(result, indent=2))
    print(f"mean tokens per text {mean_tokens:.1f}; {args.rounds} interleaved rounds of {args.seconds} s")  # noqa: T201
    print("| layout | texts/s (median) | vs first (median, range) | vs eager (median, range) |")  # noqa: T201
    print("|---|---:|---|---|")  # noqa: T201
    for r in rows:
        low, high = r["ratio_vs_first_range"]
        own = (f"{r['ratio_vs_baseline_median']:.2f}x ({r['ratio_vs_baseline_range'][0]:.2f}-"
               f"{r['ratio_vs_baseline_range'][1]:.2f})" if "baseline" in r else "")
        print(f"| {r['layout']} | {r['texts_per_s_median']:.1f} | {r['ratio_vs_first_median']:.2f}x "  # noqa: T201
              f"({low:.2f}-{high:.2f}) | {own} |")


if __name__ == "__main__":
    main()
