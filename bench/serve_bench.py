"""Serving benchmark, one command (`make bench-serve`): FlipMatch vs a naive per-request `SentenceTransformer.encode`
endpoint vs Infinity, same exported model, same machine, same run, one system at a time on the cores. Concurrency
1/8/32/128 with one Banking77 test question per request; then FlipMatch's bulk import rate and its search latency
at 70% of search saturation. Writes serve.json, serve.md and serve.png under --out.

    .venv/bin/python -m bench.serve_bench --model artifacts/flipmatch-default --out bench/results
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import re
import tempfile
import time
from pathlib import Path

import httpx

from bench import systems
from bench.data import load_queries
from bench.loadgen import run_level, run_open_loop
from bench.report import markdown_table, ratios, write_reports
from bench.stats import LevelResult

logger = logging.getLogger("bench.serve")
ADMIN = "bench-admin-key"
PARITY_TEXTS = 16


def machine() -> dict[str, object]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def batch_counts(system: systems.System) -> tuple[float, float] | None:
    """(forward passes, texts) so far, from FlipMatch's /metrics batch-size histogram; None for other systems."""
    if not system.name.startswith("flipmatch"):
        return None
    text = httpx.get(system.url + "/metrics", timeout=30).text
    found = dict(re.findall(r"^flipmatch_batch_size_(count|sum) (\S+)$", text, re.MULTILINE))
    return float(found.get("count", 0)), float(found.get("sum", 0))


def measure_system(system: systems.System, queries: list[str], args: argparse.Namespace,
                   batches: dict[str, float]) -> list[LevelResult]:
    """Every load level; for FlipMatch also the mean texts per forward pass at each level (into `batches`)."""
    levels = []
    variant = system.name.startswith("flipmatch (")
    for concurrency in args.variant_concurrency if variant else args.concurrency:
        before = batch_counts(system)
        result = asyncio.run(run_level(system.name, system.url + system.embed_path,
                                       lambda i: system.body(queries[i % len(queries)]), concurrency=concurrency,
                                       requests=args.requests, max_seconds=args.level_seconds))
        after = batch_counts(system)
        if before and after and after[0] > before[0]:
            batches[f"{system.name} @ {concurrency}"] = (after[1] - before[1]) / (after[0] - before[0])
        logger.info("%s", result)
        levels.append(result)
    return levels


def vectors(system: systems.System, texts: list[str]) -> list[list[float]]:
    """One text per request, as in the load test; the OpenAI-style `data[0].embedding` of each answer."""
    out = []
    for text in texts:
        response = httpx.post(system.url + system.embed_path, json=system.body(text), timeout=60)
        response.raise_for_status()
        out.append(response.json()["data"][0]["embedding"])
    return out


def min_cosine(a: list[list[float]], b: list[list[float]]) -> float:
    def cos(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True)) / (sum(p * p for p in x) * sum(q * q for q in y)) ** 0.5

    return min(cos(x, y) for x, y in zip(a, b, strict=True))


def measure_corpus(url: str, train: list[str], args: argparse.Namespace, queries: list[str]) -> dict[str, object]:
    """Bulk import rate (texts/s, embedding included) and search latency at 70% of search saturation."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    httpx.post(f"{url}/v1/corpora", json={"name": "bench"}, headers=admin, timeout=30).raise_for_status()
    texts = train[: args.bulk_texts]
    lines = "\n".join(json.dumps({"id": f"e{i}", "question": t, "answer": "a"}) for i, t in enumerate(texts))
    started = time.perf_counter()
    httpx.post(f"{url}/v1/corpora/bench/import", content=lines.encode(), timeout=600,
               headers={**admin, "Content-Type": "application/x-ndjson"}).raise_for_status()
    bulk_seconds = time.perf_counter() - started
    search = f"{url}/v1/corpora/bench/search"

    def body(i: int) -> dict[str, object]:
        return {"query": queries[i % len(queries)], "top_k": 5}

    saturated = asyncio.run(run_level("search saturation", search, body, concurrency=32, requests=args.requests,
                                      max_seconds=args.level_seconds))
    rate = 0.7 * saturated.throughput
    at70 = asyncio.run(run_open_loop("search at 70%", search, body, rate=rate,
                                     requests=max(50, int(rate * args.level_seconds))))
    logger.info("bulk %.1f texts/s; search saturation %s; at 70%% %s", len(texts) / bulk_seconds, saturated, at70)
    return {"bulk_texts": len(texts), "bulk_seconds": bulk_seconds, "bulk_texts_per_s": len(texts) / bulk_seconds,
            "search_saturation": saturated.as_dict(), "search_at_70pct": {**at70.as_dict(), "rate": rate}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("artifacts/flipmatch-default"))
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("FLIPMATCH_BENCH_DATA",
                                                                              "/work/shared/data")))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--requests", type=int, default=2000, help="requests per load level (upper bound)")
    parser.add_argument("--level-seconds", type=float, default=15.0, help="duration cap per load level")
    parser.add_argument("--bulk-texts", type=int, default=1000)
    parser.add_argument("--infinity-venv", type=Path, default=Path.home() / ".cache" / "flipmatch" / "infinity-venv",
                        help="its own venv (its pins clash with ours); created on first use")
    parser.add_argument("--skip", nargs="*", default=[], choices=["naive", "infinity", "flipmatch"])
    parser.add_argument("--flipmatch-env", nargs="*", default=[], help="extra KEY=VALUE for the FlipMatch server")
    parser.add_argument("--flipmatch-variant", action="append", default=[], metavar="LABEL:KEY=VALUE[,KEY=VALUE]",
                        help="also measure FlipMatch with these settings, side by side (repeatable), e.g. "
                             "'2 threads:FLIPMATCH_CPU_THREADS=2'")
    parser.add_argument("--variant-concurrency", type=int, nargs="+", default=[1, 32],
                        help="load levels for the --flipmatch-variant servers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # httpx logs every request at INFO: on a 2-core box that is load-generator CPU taken from the server.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model.resolve()

    queries = load_queries(args.data_dir)
    random.Random(0).shuffle(queries)
    train = load_queries(args.data_dir, split="train.csv")
    extra: dict[str, object] = {"machine": machine(), "model": str(args.model), "args": {
        k: str(v) for k, v in vars(args).items()}, "notes": {}}
    levels: list[LevelResult] = []
    probe_vectors: dict[str, list[list[float]]] = {}
    notes: dict[str, str] = extra["notes"]  # type: ignore[assignment]
    batches: dict[str, float] = {}  # "system @ concurrency" -> mean texts per forward pass (FlipMatch only)
    extra["mean_batch_size"] = batches

    with tempfile.TemporaryDirectory(prefix="flipmatch-bench-") as tmp:
        tmp_path = Path(tmp)
        candidates: list[systems.System] = []
        if "naive" not in args.skip:
            candidates.append(systems.naive(model))
        if "flipmatch" not in args.skip:
            env = dict(item.split("=", 1) for item in args.flipmatch_env)
            candidates.append(systems.flipmatch(model, tmp_path / "fm", ADMIN, **env))
            for n, spec in enumerate(args.flipmatch_variant):
                label, _, settings = spec.partition(":")
                variant_env = {**env, **dict(item.split("=", 1) for item in settings.split(",") if item)}
                variant = systems.flipmatch(model, tmp_path / f"fm-variant-{n}", ADMIN, **variant_env)
                variant.name = f"flipmatch ({label})"
                candidates.append(variant)
        if "infinity" not in args.skip:
            exe, how = systems.ensure_infinity(args.infinity_venv.resolve(), args.out / "infinity-install.log")
            notes["infinity_install"] = how
            if exe is None:
                logger.error("Infinity skipped: %s", how)
            else:
                candidates.append(systems.infinity(exe, model, "flipmatch-default"))
        for system in candidates:
            slug = "".join(c if c.isalnum() else "-" for c in system.name).strip("-")
            log = args.out / f"server-{slug}.log"
            try:
                with systems.running(system, log):
                    probe_vectors[system.name] = vectors(system, queries[:PARITY_TEXTS])
                    levels += measure_system(system, queries, args, batches)
                    if system.name == "flipmatch":
                        extra["corpus"] = measure_corpus(system.url, train, args, queries)
            except RuntimeError as err:
                notes[system.name] = str(err)[-1500:]
                logger.error("%s could not be measured: %s", system.name, str(err)[-1500:])
                if system.name == "infinity":  # retry once on a copy spelled for sentence-transformers 3.x
                    compat = systems.st_compat_copy(model, tmp_path / "st3-compat" / model.name)
                    retry = systems.infinity(Path(system.command[0]), compat, "flipmatch-default")
                    retry.name = "infinity (ST3 module names)"
                    try:
                        with systems.running(retry, args.out / "server-infinity-compat.log"):
                            probe_vectors[retry.name] = vectors(retry, queries[:PARITY_TEXTS])
                            levels += measure_system(retry, queries, args, batches)
                    except RuntimeError as err2:
                        notes[retry.name] = str(err2)[-1500:]
                        logger.error("%s could not be measured either: %s", retry.name, str(err2)[-1500:])
    reference = probe_vectors.get("naive ST.encode")
    if reference is not None:  # same model, same texts: every system should give the same vectors
        extra["min_cosine_vs_sentence_transformers"] = {name: min_cosine(v, reference)
                                                        for name, v in probe_vectors.items()}
    extra["ratios_c32"] = ratios(levels, ours="flipmatch", concurrency=32)
    write_reports(args.out, levels=levels, extra=extra)
    print(markdown_table(levels))  # noqa: T201 - the command's report
    print(json.dumps({"ratios_c32": extra["ratios_c32"], "mean_batch_size": batches,
                      "parity": extra.get("min_cosine_vs_sentence_transformers"),
                      "corpus": extra.get("corpus"), "notes": notes},  # noqa: T201
                     indent=2, default=str))


if __name__ == "__main__":
    main()
