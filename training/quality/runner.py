"""Runs a Plan: one shared fine-tuned teacher, then every system x seed through `training.distill.distill`
with config overrides, each evaluated on the quality dev sets (thresholds) and then once on the test sets."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from training.config import TrainConfig, load_config
from training.evaluate.evaluators import evaluate_agreement, evaluate_all, pair_scores, thresholds_from
from training.quality.plan import FULL, ZERO_SHOT, Plan, System
from training.quality.tasks import QualityTasks, build_tasks
from training.quality.warmup import warm_caches

logger = logging.getLogger(__name__)


def config_hash(cfg: TrainConfig) -> str:
    """sha256 of the resolved config YAML, as saved in the run folder (output_dir and seed included)."""
    return hashlib.sha256(yaml.safe_dump(cfg.model_dump(), sort_keys=False).encode()).hexdigest()


def hardware() -> dict[str, str]:
    info = {"machine": platform.machine(), "python": platform.python_version()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        lscpu = ""
    for line in lscpu.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core"):
            info[key.strip()] = value.strip()
    import os

    info["usable cores"] = str(len(os.sched_getaffinity(0)))
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch threads"] = str(torch.get_num_threads())
    except ImportError:
        pass
    return info


def memoized(encode: Callable[[list[str]], np.ndarray]) -> Callable[[list[str]], np.ndarray]:
    """Encode each distinct text once per run: dev, test and agreement sets share texts (the FAQ corpus,
    the test pairs), and the student forward is the benchmark's main evaluation cost."""
    cache: dict[str, np.ndarray] = {}

    def encode_cached(texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            cache.update(zip(missing, encode(missing), strict=True))
        return np.stack([cache[t] for t in texts])

    return encode_cached


def _scalars(run_dir: Path) -> list[dict]:
    path = run_dir / "scalars.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _filter_drop(records: list[dict]) -> dict[str, float]:
    """Mean fraction of gold positives / negatives the dual-threshold filter dropped (logged train steps)."""
    train = [r for r in records if r["tag"] == "train" and "drop_neg" in r]
    return {k: float(np.mean([r[k] for r in train])) for k in ("drop_pos", "drop_neg")} if train else {}


def _dev_curve(records: list[dict]) -> list[tuple[float, int, float]]:
    """(seconds since the first record, step, dev primary) from a run's scalars."""
    if not records:
        return []
    start = records[0]["time"]
    return [(r["time"] - start, r["step"], r["primary"]) for r in records if r["tag"] == "dev"]


class BenchmarkRunner:
    def __init__(
        self,
        plan: Plan,
        work_dir: Path,
        data_dir: str | None = None,
        device: str = "cpu",
        budget_minutes: float | None = None,
        command: str = "",
    ):
        self.command = command  # recorded in results.json, so `report` re-renders it faithfully
        self.plan, self.work_dir, self.device = plan, Path(work_dir), device
        self.budget_s = None if budget_minutes is None else budget_minutes * 60
        # full_report=false: distill() evaluates dev only (checkpoint choice); this runner touches test once.
        self.base_overrides = list(plan.overrides) + [
            f"run.device={device}",
            "run.full_report=false",
            "teacher.cache_scores=true",  # in memory across runs (the prepared scorer is shared)
        ]
        if data_dir:
            self.base_overrides.append(f"data.data_dir={data_dir}")
        self._warmed: set[tuple] = set()
        self.teacher_dir = self.work_dir / "teacher"
        self.base_overrides.append(f"teacher.output={self.teacher_dir}")

    def config(self, system_overrides: list[str], name: str, seed: int) -> TrainConfig:
        extra = [
            f"run.output_dir={self.work_dir / 'runs' / name}",
            f"run.seed={seed}",  # LoRA init and dropout
            f"data.order_seed={seed}",  # batch order; data.seed keeps the splits and mined negatives fixed
            "run.resume=false",
        ]
        return load_config(self.plan.config, self.base_overrides + system_overrides + extra)

    def run(self) -> dict:
        started = time.time()
        for stale in (self.teacher_dir, self.work_dir / "runs"):  # a rerun must not reuse an old teacher
            shutil.rmtree(stale, ignore_errors=True)
        base = self.config([], "base", self.plan.seeds[0])
        tasks = build_tasks(base.data, self.plan.limits, list(self.plan.tasks))
        held_out = tasks.splits.get("banking77", {}).get("held_out_intents", [])
        if held_out and "banking77" in base.data.sources:  # no-match intents stay unseen in training
            self.base_overrides.append("data.exclude_intents=[" + ", ".join(held_out) + "]")
            base = self.config([], "base", self.plan.seeds[0])
        results: dict = {
            "command": self.command,
            "plan": {
                "config": self.plan.config,
                "overrides": self.base_overrides,
                "seeds": list(self.plan.seeds),
                "tasks": list(self.plan.tasks),
                "limits": self.plan.limits.__dict__,
            },
            "splits": tasks.splits,
            "hardware": hardware(),
            "runs": [],
            "sweep": [],
            "scores": {},
        }
        teacher_encode = self._teacher(base)
        results["skipped"] = []
        # Table 3 (the alternative student, open choices) after the main rows and ablations, before the
        # sensitivity sweep: a tight budget cuts the sweep's extra points first.
        for system, seed in self.plan.runs(("main", "ablation", "variant")):
            if self._out_of_budget(started, results["runs"]):
                results["skipped"].append(f"{system.name} seed {seed}")
                continue
            results["runs"].append(self._run_one(system, seed, tasks, teacher_encode, results["scores"]))
            self._save(results)
        full0 = next((r for r in results["runs"] if r["system"] == FULL), None)
        if full0 is not None:
            results["sweep"].append({"point": "default (m_c=0.06, tau=0.5)", "dev": full0["dev"], "wall_s": 0.0})
        for label, override in self.plan.sweep():
            if self._out_of_budget(started, results["runs"]):
                results["skipped"].append(f"sweep {label}")
                continue
            system = System(f"sweep {label}", "distill", tuple(override.split(",")), "sweep")
            record = self._run_one(system, self.plan.seeds[0], tasks, teacher_encode, {}, test=False)
            results["sweep"].append(
                {"point": label, "dev": record["dev"], "wall_s": record["wall_s"], "filter_drop": record["filter_drop"]}
            )
            self._save(results)
        results["total_wall_s"] = time.time() - started
        self._save(results)
        return results

    def _out_of_budget(self, started: float, done: list[dict]) -> bool:
        """True when the next training run would likely end past the budget (estimated from the distilled
        runs so far). Main rows run first, so the budget cuts the sweep and ablations before them."""
        if self.budget_s is None:
            return False
        trained = [r["wall_s"] + r.get("eval_s", 0.0) for r in done if r["curve"]]
        estimate = max(trained) if trained else 0.0
        return time.time() - started + estimate > self.budget_s

    def _save(self, results: dict) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "results.json").write_text(json.dumps(results, indent=1, default=float))

    def _teacher(self, base: TrainConfig) -> Callable:
        """Mine the training data and fine-tune the teacher once; every distill run shares both (and the
        teacher's embedding cache), so a run costs its training steps and evaluations only."""
        from training.distill import prepare_teacher
        from training.hardware import hardware_bf16, use_bf16
        from training.runs import RunDir

        started = time.time()
        bf16 = use_bf16(base.optim.bf16, self.device, *hardware_bf16(self.device))
        self.prepared = prepare_teacher(base, RunDir(self.work_dir / "runs" / "teacher"), self.device, bf16)
        self.teacher_wall_s = time.time() - started
        return self.prepared[0].embed  # caches by text itself (teacher.cache_scores=true above)

    def _run_one(
        self, system: System, seed: int, tasks: QualityTasks, teacher_encode, scores: dict, test: bool = True
    ) -> dict:
        slug = "".join(c if c.isalnum() else "-" for c in system.name).strip("-")
        cfg = self.config(list(system.overrides), f"{slug}-s{seed}", seed)
        if system.kind == "distill":  # outside the run's wall time, as outside its budget
            warm_caches(cfg, self.prepared, self.work_dir / "runs" / f"warm-{len(self._warmed)}", self._warmed)
        started = time.time()
        curve: list = []
        drop: dict = {}
        from training.hardware import hardware_bf16, use_bf16

        bf16 = use_bf16(cfg.optim.bf16, self.device, *hardware_bf16(self.device))  # as distill() evaluates
        if system.kind == "teacher":
            encode, wall = teacher_encode, self.teacher_wall_s
        elif system.kind == "zero_shot":
            from training.student import load_student

            student = load_student(cfg.student, cfg.lora, self.device)
            student.use_readout = False

            def encode(texts):
                return student.encode(texts, autocast_bf16=bf16)
        else:
            from training.distill import distill

            student = distill(cfg, self.prepared).student

            def encode(texts):
                return student.encode(texts, autocast_bf16=bf16)

            records = _scalars(Path(cfg.run.output_dir))
            curve, drop = _dev_curve(records), _filter_drop(records)
        if system.kind != "teacher":
            wall = time.time() - started
        eval_started = time.time()
        encode = memoized(encode)
        dev = evaluate_all(encode, tasks.dev)
        record = {
            "system": system.name,
            "table": system.table,
            "seed": seed,
            "config_sha256": config_hash(cfg),
            "wall_s": wall,
            "dev": dev,
            "curve": curve,
            "filter_drop": drop,
        }
        if test:  # each test set is touched once per reported run, at the dev-chosen thresholds
            record["test"] = evaluate_all(encode, tasks.test, thresholds_from(dev))
            for pairs in tasks.agreement:
                record["test"][f"{pairs.name}/spearman_teacher"] = evaluate_agreement(encode, teacher_encode, pairs)[
                    "spearman"
                ]
            if (
                tasks.agreement
                and (system.name in (FULL, ZERO_SHOT) or system.kind == "teacher")
                and seed == (self.plan.seeds[0])
            ):
                # Fig. 5 on a distilled task (MQP) when present, as in the paper; else the last held-out set
                pairs = next((p for p in tasks.agreement if p.name == "mqp"), tasks.agreement[-1])
                sims, labels = pair_scores(encode, pairs)
                scores[system.kind if system.kind == "teacher" else system.name] = {
                    "set": pairs.name,
                    "sim": np.round(sims, 5).tolist(),
                    "label": labels.tolist(),
                }
        record["eval_s"] = time.time() - eval_started
        logger.info("%s seed %d: dev primary %.4f (%.0fs)", system.name, seed, dev["primary"], wall)
        return record
