"""Serving benchmark, one command (`make bench-serve`): FlipMatch vs a naive per-request `SentenceTransformer.encode`
endpoint vs Infinity, same exported model, same machine, same run. All servers are up at once and every load
level runs interleaved rounds (A, B, C, A, B, C ...); ratios are medians over rounds with their spread. Then
FlipMatch's bulk import rate and search latency (unloaded, and at 70% of search saturation), and the query
cache on a Zipf replay of Banking77 test questions (reported apart: the headline runs unique queries with the
cache off). Writes serve.json, serve.md and serve.png under --out.

    .venv/bin/python -m bench.serve_bench --model artifacts/flipmatch-default --out bench/results
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import re
import tempfile
import time
from pathlib import Path

import httpx

from bench import machine, systems
from bench.data import load_queries, zipf_stream
from bench.interleave import Samples, ratios_against, run_rounds, summarise
from bench.loadgen import run_level, run_open_loop
from bench.report import markdown_table, write_reports
from bench.stats import LevelResult

logger = logging.getLogger("bench.serve")
ADMIN = "bench-admin-key"
PARITY_TEXTS = 16
NO_CACHE = {"FLIPMATCH_CACHE__MAX_ENTRIES": "0"}  # the headline: unique queries, no cache on any system
CACHED = "flipmatch (query cache)"  # measured apart, on a Zipf replay


def metric_values(system: systems.System, *names: str) -> dict[str, float]:
    """Current values of FlipMatch /metrics samples (0 for absent ones)."""
    text = httpx.get(system.url + "/metrics", timeout=30).text
    found = dict(re.findall(r"^(flipmatch_\w+) (\S+)$", text, re.MULTILINE))
    return {name: float(found.get(name, 0)) for name in names}


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


def import_corpus(url: str, train: list[str], args: argparse.Namespace) -> dict[str, float]:
    """Create the `bench` corpus from training questions: the bulk import rate (texts/s, embedding included)."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    httpx.post(f"{url}/v1/corpora", json={"name": "bench"}, headers=admin, timeout=30).raise_for_status()
    texts = train[: args.bulk_texts]
    lines = "\n".join(json.dumps({"id": f"e{i}", "question": t, "answer": "a"}) for i, t in enumerate(texts))
    started = time.perf_counter()
    httpx.post(f"{url}/v1/corpora/bench/import", content=lines.encode(), timeout=600,
               headers={**admin, "Content-Type": "application/x-ndjson"}).raise_for_status()
    bulk_seconds = time.perf_counter() - started
    return {"bulk_texts": len(texts), "bulk_seconds": bulk_seconds, "bulk_texts_per_s": len(texts) / bulk_seconds}


def corpus_round(url: str, args: argparse.Namespace, queries: list[str], offset: int) -> dict[str, object]:
    """One round: unloaded search latency (one client), search saturation (closed loop, concurrency 32), then
    search latency at 70% of that saturation (open loop, evenly spaced arrivals)."""
    search = f"{url}/v1/corpora/bench/search"

    def body(i: int) -> dict[str, object]:
        return {"query": queries[(offset + i) % len(queries)], "top_k": 5}

    unloaded = asyncio.run(run_level("search unloaded", search, body, concurrency=1, requests=200,
                                     max_seconds=args.level_seconds))
    saturated = asyncio.run(run_level("search saturation", search, lambda i: body(i + 1000), concurrency=32,
                                      requests=args.requests, max_seconds=args.level_seconds))
    rate = 0.7 * saturated.throughput
    at70 = asyncio.run(run_open_loop("search at 70%", search, lambda i: body(i + 2000), rate=rate,
                                     requests=max(50, int(rate * args.level_seconds))))
    logger.info("search unloaded %s; saturation %s; at 70%% %s", unloaded, saturated, at70)
    return {"search_unloaded": unloaded.as_dict(), "search_saturation": saturated.as_dict(),
            "search_at_70pct": {**at70.as_dict(), "rate": rate},
            "p99_at_70pct_over_unloaded_p50": at70.p99_ms / unloaded.p50_ms if unloaded.p50_ms else None}


def summarise_corpus(bulk: dict[str, float], rounds: list[dict[str, object]]) -> dict[str, object]:
    """The median round's measures (by the p99 ratio) at the top level, the ratio's median/min/max over rounds,
    and every round."""
    def ratio(r: dict[str, object]) -> float:
        return float(r["p99_at_70pct_over_unloaded_p50"] or 0)

    ordered = sorted(rounds, key=ratio)
    median_round = ordered[len(ordered) // 2]
    return {**bulk, **median_round, "p99_ratio_over_rounds": {"median": ratio(median_round),
                                                               "min": ratio(ordered[0]), "max": ratio(ordered[-1])},
            "rounds": rounds}


def measure_corpora(systems_: list[systems.System], train: list[str], args: argparse.Namespace,
                    queries: list[str]) -> dict[str, dict[str, object]]:
    """Search latency under load, `args.corpus_rounds` rounds per server, interleaved (A, B, A, B ...): the p99
    ratio of one 15-second open loop moves 2x between identical runs, so it is judged on the median round."""
    bulk = {s.name: import_corpus(s.url, train, args) for s in systems_}
    rounds: dict[str, list[dict[str, object]]] = {s.name: [] for s in systems_}
    for r in range(args.corpus_rounds):
        for s in systems_:
            rounds[s.name].append(corpus_round(s.url, args, queries, offset=r * 5000))
    return {name: summarise_corpus(bulk[name], rounds[name]) for name in rounds}


def start_all(candidates: list[systems.System], stack: contextlib.ExitStack, args: argparse.Namespace,
              tmp_path: Path, model: Path, notes: dict[str, str]) -> list[systems.System]:
    """Start the systems one after another (all stay up for the interleaved rounds), so each FlipMatch server's
    start-up calibration times its candidates on a machine no other start-up is loading; an overlapping Infinity
    start once made the 2-thread candidates look 40x slower than they are. Infinity retries once on an ST3 copy."""
    def log(system: systems.System) -> Path:
        return args.out / f"server-{''.join(c if c.isalnum() else '-' for c in system.name).strip('-')}.log"

    up, failed = [], {}
    for system in candidates:
        ready, not_ready = stack.enter_context(systems.running_all([(system, log(system))],
                                                                   timeout=args.start_timeout))
        up += ready
        failed.update(not_ready)
    for name, why in failed.items():
        notes[name] = why
        logger.error("%s could not be started: %s", name, why)
    infinity = next((s for s in candidates if s.name == "infinity" and s.name in failed), None)
    if infinity is not None:  # sentence-transformers 3.x spelling of the same model
        compat = systems.st_compat_copy(model, tmp_path / "st3-compat" / model.name)
        retry = systems.infinity(Path(infinity.command[0]), compat, "flipmatch-default")
        retry.name = "infinity (ST3 module names)"
        more, failed_again = stack.enter_context(systems.running_all([(retry, log(retry))],
                                                                     timeout=args.start_timeout))
        up += more
        notes.update(failed_again)
    return up


def flipmatch_info(system: systems.System) -> dict[str, object]:
    return httpx.get(system.url + "/v1/info", timeout=30).json()


def measure_headline(up: list[systems.System], queries: list[str], args: argparse.Namespace
                     ) -> tuple[list[LevelResult], dict[str, object], dict[str, float]]:
    """Interleaved rounds per load level; variants join at --variant-concurrency. Unique queries per round."""
    levels: list[LevelResult] = []
    ratios: dict[str, object] = {}
    batches: dict[str, float] = {}
    for concurrency in args.concurrency:
        here = [s for s in up if s.name != CACHED and (not s.name.startswith("flipmatch (")
                                                          or concurrency in args.variant_concurrency)]
        before = {s.name: metric_values(s, "flipmatch_batch_size_count", "flipmatch_batch_size_sum")
                  for s in here if s.name.startswith("flipmatch")}
        samples: Samples = run_rounds(here, lambda i: queries[i % len(queries)], concurrency=concurrency,
                                      rounds=args.rounds, round_seconds=args.round_seconds,
                                      requests=args.requests)
        for name, start in before.items():
            after = metric_values(next(s for s in here if s.name == name), *start)
            passes = after["flipmatch_batch_size_count"] - start["flipmatch_batch_size_count"]
            if passes:
                batches[f"{name} @ {concurrency}"] = (after["flipmatch_batch_size_sum"] -
                                                      start["flipmatch_batch_size_sum"]) / passes
        levels += summarise(samples, concurrency)
        ratios[str(concurrency)] = ratios_against(samples, "flipmatch")
    return levels, ratios, batches


def measure_cache(cached: systems.System, uncached: systems.System, queries: list[str],
                  args: argparse.Namespace) -> dict[str, object]:
    """A Zipf replay of the test questions at concurrency 32, FlipMatch with and without the query cache,
    interleaved rounds; the hit rate comes from the cached server's /metrics."""
    stream = zipf_stream(queries, args.rounds * args.requests * 2, exponent=args.zipf_exponent, seed=1)
    names = ("flipmatch_query_cache_hits_total", "flipmatch_query_cache_misses_total")
    before = metric_values(cached, *names)
    samples = run_rounds([uncached, cached], lambda i: stream[i % len(stream)], concurrency=32, rounds=args.rounds,
                         round_seconds=args.round_seconds, requests=args.requests)
    after = metric_values(cached, *names)
    hits, misses = (after[n] - before[n] for n in names)
    levels = summarise(samples, 32)
    return {"zipf_exponent": args.zipf_exponent, "distinct_queries": len(set(stream)), "stream": len(stream),
            "hit_rate": hits / (hits + misses) if hits + misses else None,
            "levels": [r.as_dict() for r in levels],
            "ratio_cached_vs_uncached": ratios_against(samples, cached.name).get(uncached.name)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("artifacts/flipmatch-default"))
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("FLIPMATCH_BENCH_DATA",
                                                                              "/work/shared/data")))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per load level")
    parser.add_argument("--round-seconds", type=float, default=4.0, help="duration cap of one system's round")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round (upper bound)")
    parser.add_argument("--level-seconds", type=float, default=15.0, help="duration cap of the corpus levels")
    parser.add_argument("--bulk-texts", type=int, default=1000)
    parser.add_argument("--zipf-exponent", type=float, default=1.0)
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds for a server to get ready")
    parser.add_argument("--infinity-venv", type=Path, default=Path.home() / ".cache" / "flipmatch" / "infinity-venv",
                        help="its own venv (its pins clash with ours); created on first use")
    parser.add_argument("--skip", nargs="*", default=[], choices=["naive", "infinity", "flipmatch", "cache"])
    parser.add_argument("--flipmatch-env", nargs="*", default=[], help="extra KEY=VALUE for the FlipMatch server")
    parser.add_argument("--flipmatch-variant", action="append", default=[], metavar="LABEL:KEY=VALUE[,KEY=VALUE]",
                        help="also measure FlipMatch with these settings, interleaved (repeatable), e.g. "
                             "'flag-based choice:FLIPMATCH_DTYPE=bfloat16,FLIPMATCH_CPU_THREADS=1'")
    parser.add_argument("--variant-concurrency", type=int, nargs="+", default=[1, 32],
                        help="load levels for the --flipmatch-variant servers")
    parser.add_argument("--corpus-rounds", type=int, default=3,
                        help="rounds of the search-latency measure (unloaded, saturation, 70%%) per server")
    parser.add_argument("--corpus-variant", action="append", default=[], metavar="LABEL",
                        help="also measure search latency on this --flipmatch-variant, interleaved")
    args = parser.parse_args()
    labels = {spec.partition(":")[0] for spec in args.flipmatch_variant}
    if unknown := [label for label in args.corpus_variant if label not in labels]:
        parser.error(f"--corpus-variant {unknown[0]!r} names no --flipmatch-variant (labels: {sorted(labels)})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # httpx logs every request at INFO: on a 2-core box that is load-generator CPU taken from the server.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model.resolve()

    queries = load_queries(args.data_dir)
    random.Random(0).shuffle(queries)
    train = load_queries(args.data_dir, split="train.csv")
    notes: dict[str, str] = {}
    extra: dict[str, object] = {"machine": machine.describe(), "model": str(args.model), "notes": notes,
                                "args": {k: str(v) for k, v in vars(args).items()},
                                "method": "all servers up; per load level, interleaved rounds (A, B, C, A, B, C"
                                          " ...); ratios are per-round medians with min/max"}
    with tempfile.TemporaryDirectory(prefix="flipmatch-bench-") as tmp, contextlib.ExitStack() as stack:
        tmp_path = Path(tmp)
        env = {**NO_CACHE, **dict(item.split("=", 1) for item in args.flipmatch_env)}
        candidates: list[systems.System] = []
        if "naive" not in args.skip:
            candidates.append(systems.naive(model))
        if "flipmatch" not in args.skip:
            candidates.append(systems.flipmatch(model, tmp_path / "fm", ADMIN, **env))
            for n, spec in enumerate(args.flipmatch_variant):
                label, _, settings = spec.partition(":")
                variant_env = {**env, **dict(item.split("=", 1) for item in settings.split(",") if item)}
                variant = systems.flipmatch(model, tmp_path / f"fm-variant-{n}", ADMIN, **variant_env)
                variant.name = f"flipmatch ({label})"
                candidates.append(variant)
        if "flipmatch" not in args.skip and "cache" not in args.skip:
            cached = systems.flipmatch(model, tmp_path / "fm-cache", ADMIN,
                                       **{k: v for k, v in env.items() if k not in NO_CACHE})
            cached.name = CACHED
            candidates.append(cached)
        if "infinity" not in args.skip:
            exe, how = systems.ensure_infinity(args.infinity_venv.resolve(), args.out / "infinity-install.log")
            notes["infinity_install"] = how
            if exe is None:
                logger.error("Infinity skipped: %s", how)
            else:
                candidates.append(systems.infinity(exe, model, "flipmatch-default"))
        up = start_all(candidates, stack, args, tmp_path, model, notes)
        probe_vectors = {s.name: vectors(s, queries[:PARITY_TEXTS]) for s in up}
        extra["flipmatch_info"] = {s.name: flipmatch_info(s) for s in up if s.name.startswith("flipmatch")}
        levels, ratios, batches = measure_headline(up, queries, args)
        extra["ratios"], extra["mean_batch_size"] = ratios, batches
        main_fm = next((s for s in up if s.name == "flipmatch"), None)
        if main_fm is not None:
            named = {f"flipmatch ({label})" for label in args.corpus_variant}
            compared = [main_fm, *(s for s in up if s.name in named)]
            corpora = measure_corpora(compared, train, args, queries)
            extra["corpus"] = corpora.pop(main_fm.name)
            if corpora:
                extra["corpus_variants"] = corpora
            cached = next((s for s in up if s.name == CACHED), None)
            if cached is not None:
                extra["query_cache"] = measure_cache(cached, main_fm, queries, args)
    reference = probe_vectors.get("naive ST.encode")
    if reference is not None:  # same model, same texts: every system should give the same vectors
        extra["min_cosine_vs_sentence_transformers"] = {name: min_cosine(v, reference)
                                                        for name, v in probe_vectors.items()}
    write_reports(args.out, levels=levels, extra=extra)
    print(markdown_table(levels))  # noqa: T201 - the command's report
    print(json.dumps({"ratios_c32": ratios.get("32"), "mean_batch_size": batches,  # noqa: T201
                      "parity": extra.get("min_cosine_vs_sentence_transformers"), "corpus": extra.get("corpus"),
                      "query_cache": extra.get("query_cache"), "notes": notes}, indent=2, default=str))


if __name__ == "__main__":
    main()
