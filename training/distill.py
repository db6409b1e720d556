"""Flipped distillation, in the paper's order: batch -> teacher scores -> filter -> student embeddings ->
similarities -> losses -> backward -> clip -> step -> schedule -> log -> evaluate / checkpoint."""

from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from training.cache_plan import PROBE_STEPS, affordable_steps, batch_texts, new_text_counts
from training.config import TrainConfig
from training.data.batches import label_matrix
from training.data.mix import make_sampler
from training.data.pairs import TaskData, eval_texts
from training.data.sources import load_task_data
from training.evaluate.evaluators import evaluate_all, thresholds_from
from training.generative import generative_loss
from training.hardware import choose_device, resolve_bf16
from training.losses.combined import FlipLoss
from training.losses.filter import calibrated_thresholds
from training.prefix_cache import PrefixCache
from training.runs import RunDir, set_seed
from training.schedule import StepPlan, make_scheduler, typical_step_s
from training.student import StudentEncoder, load_student
from training.teacher import TeacherScorer, finetune_teacher, load_teacher

logger = logging.getLogger(__name__)

REPLAN_EVERY = 10  # steps between checks that the plan still fits the budget


@dataclass
class DistillResult:
    run_dir: Path
    student: StudentEncoder
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> metrics
    thresholds: dict[str, float] = field(default_factory=dict)
    training: dict = field(default_factory=dict)  # schedule, precision, throughput (metrics.json "training")


def _world() -> tuple[int, int]:
    """(rank, world size): torchrun / accelerate launch set these; a plain run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _sync_gradients(params: list[nn.Parameter], world: int) -> None:
    """Data parallelism: average LoRA gradients over ranks (what DDP's reducer does, made explicit)."""
    if world == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def _embed_batch(student: StudentEncoder, texts: list[str], device: str, chunk: int = 32) -> torch.Tensor:
    """Forward each distinct text once (an anchor appears in its positive and its negative pair), in
    length-sorted chunks (less padding), then scatter back to batch order. (N, r)"""
    unique = list(dict.fromkeys(texts))
    order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
    parts = [
        student.forward_texts([unique[i] for i in order[s : s + chunk]], device) for s in range(0, len(unique), chunk)
    ]
    by_length = torch.cat(parts)  # rows in `order`
    position = {index: row for row, index in enumerate(order)}
    lookup = {text: position[i] for i, text in enumerate(unique)}
    return by_length[torch.tensor([lookup[t] for t in texts], device=by_length.device)]


def prepare_teacher(
    cfg: TrainConfig, run: RunDir, device: str, bf16: bool = False
) -> tuple[TeacherScorer, TaskData, dict]:
    """Load data (hard negatives mined with the base teacher), then fine-tune the teacher and report it."""
    teacher = load_teacher(cfg.teacher.model, device, cfg.teacher.max_seq_length)
    base_scorer = TeacherScorer(teacher)
    data = load_task_data(cfg.data, base_scorer.embed)
    report: dict[str, dict[str, float]] = {"teacher_base": evaluate_all(base_scorer.embed, data.dev)}
    saved = Path(cfg.teacher.output or run.path / "teacher")
    if cfg.teacher.finetune and (saved / "modules.json").exists():
        logger.info("reusing fine-tuned teacher at %s", saved)
        teacher = load_teacher(str(saved), device, cfg.teacher.max_seq_length)
    elif cfg.teacher.finetune:
        started = time.time()
        finetune_teacher(teacher, data.train, cfg.teacher, cfg.run.seed, bf16)
        teacher.save(str(saved))
        logger.info("teacher fine-tuned in %.0fs, saved to %s", time.time() - started, saved)
    cache = run.path / "teacher_cache.npz" if cfg.teacher.cache_scores else None
    scorer = TeacherScorer(teacher, cache)
    report["teacher"] = evaluate_all(scorer.embed, data.dev)
    return scorer, data, report


def forward_backward(
    student: StudentEncoder,
    scorer: TeacherScorer,
    loss_fn: FlipLoss,
    pairs: list,
    device: str,
    bf16: bool,
    sources: list[int] | None = None,
) -> dict[str, torch.Tensor]:
    """One step's signal: teacher (B, B) similarities, student (B, B) similarities, losses, backward.
    sources: each pair's source index (L_rank orders pairs within a source only); None: one source."""
    texts_a, texts_b = [p.text_a for p in pairs], [p.text_b for p in pairs]
    labels = label_matrix(pairs).to(device)  # (B, B)
    groups = None if sources is None else torch.tensor(sources, device=device)
    sim_teacher = scorer.similarity(texts_a, texts_b).to(device)  # (B, B), no grad
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        emb = _embed_batch(student, texts_a + texts_b, device)  # (2B, r)
    emb = nn.functional.normalize(emb.float(), dim=-1)
    sim_student = emb[: len(pairs)] @ emb[len(pairs) :].T  # (B, B)
    parts = loss_fn(sim_student, sim_teacher, labels, groups)
    if loss_fn.cfg.generative_weight > 0:  # the decoder reading: yes/no through the LM head (its LoRA B)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            gen = generative_loss(student, pairs, device, loss_fn.cfg.generative_pairs)
        if gen is not None:
            parts["gen"] = gen.float()
            parts["total"] = parts["total"] + loss_fn.cfg.generative_weight * parts["gen"]
    parts["total"].backward()
    return parts


PROBE_TEXTS = [
    "How do I activate my new card?",
    "My card still has not arrived after two weeks, what should I do?",
    "Is it safe to take ibuprofen with alcohol?",
    "What is the exchange rate for euros today?",
] * 8


def _probe_step(student: StudentEncoder, device: str):
    """One forward+backward on fixed texts, for the bf16-vs-fp32 measurement (no optimizer step)."""

    def step(bf16: bool) -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            out = student(**student.tokenize(PROBE_TEXTS, device))
        out.float().pow(2).mean().backward()
        student.zero_grad(set_to_none=True)

    return step


def _attach_prefix(student: StudentEncoder, cfg: TrainConfig, bf16: bool) -> PrefixCache | None:
    """Cache the frozen blocks' output when LoRA sits on the top blocks only (student.prefix_cache)."""
    top = cfg.lora.top_layers
    if not cfg.student.prefix_cache or top is None or top >= student.num_blocks:
        return None
    student.prefix = PrefixCache.shared(student, student.num_blocks - top, autocast_bf16=bf16)
    return student.prefix


def _filter_thresholds(cfg: TrainConfig, report: dict) -> tuple[TrainConfig, dict]:
    """The dual-threshold filter's (tau_pos, tau_neg): as configured, or read off the teacher's dev scale."""
    loss = cfg.loss
    record = {
        "calibration": loss.filter_calibration,
        "tau_pos": loss.filter_pos_threshold,
        "tau_neg": loss.filter_neg_threshold,
    }
    if loss.filter_calibration != "teacher_dev":
        return cfg, record
    teacher = thresholds_from(report.get("teacher", {}))
    taus = calibrated_thresholds(teacher, loss.filter_band)
    if taus is None:
        logger.warning("loss.filter_calibration=teacher_dev: no teacher dev pair set; keeping tau=%s", record)
        return cfg, record
    cfg = cfg.model_copy(deep=True)
    cfg.loss.filter_pos_threshold, cfg.loss.filter_neg_threshold = taus
    logger.info("filter calibrated on the teacher's dev thresholds %s: tau_pos=%.3f tau_neg=%.3f", teacher, *taus)
    return cfg, {**record, "tau_pos": taus[0], "tau_neg": taus[1], "teacher_dev_thresholds": teacher}


def _fill_caches(scorer: TeacherScorer, prefix, texts: list[str]) -> tuple[float, float]:
    """Teacher vectors and frozen-prefix states for `texts`; returns (teacher seconds, total seconds)."""
    started = time.perf_counter()
    scorer.embed(texts)
    teacher_s = time.perf_counter() - started
    if prefix is not None:
        prefix.fill(texts)
    return teacher_s, time.perf_counter() - started


def _agreed(value: float, world: int) -> float:
    """The slowest rank's figure, so every rank plans the same schedule."""
    if world == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def distill(cfg: TrainConfig, prepared: tuple[TeacherScorer, TaskData, dict] | None = None) -> DistillResult:
    """prepared: prepare_teacher's result, shared by runs that differ only in loss, optim or run settings
    (the quality benchmark): skips re-mining the data and re-scoring the teacher."""
    rank, world = _world()
    set_seed(cfg.run.seed)  # same seed on every rank: identical LoRA init
    run = RunDir(cfg.run.output_dir)
    run.save_config(cfg)
    device = choose_device(cfg.run.device, torch.cuda.is_available())
    student = load_student(cfg.student, cfg.lora, device)
    with torch.random.fork_rng(devices=[]):  # the probe's dropout must not shift the run's random stream
        bf16, precision = resolve_bf16(cfg.optim.bf16, device, _probe_step(student, device))
    logger.info("precision: %s (%s)", "bf16 autocast" if bf16 else "fp32", precision)
    scorer, data, report = prepared or prepare_teacher(cfg, run, device, bf16)
    report = dict(report)
    cfg, filter_record = _filter_thresholds(cfg, report)
    phase_started = time.perf_counter()
    prefix = _attach_prefix(student, cfg, bf16)

    def encode(texts: list[str]):
        return student.encode(texts, autocast_bf16=bf16)

    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    plan = StepPlan.create(cfg.optim.steps, cfg.optim.max_minutes)
    scheduler = make_scheduler(optimizer, plan, cfg.optim.warmup)
    loss_fn = FlipLoss(cfg.loss)
    order_seed = cfg.data.seed if cfg.data.order_seed is None else cfg.data.order_seed
    sampler = make_sampler(data, cfg.data, cfg.optim.batch_pairs, order_seed, rank, world, scorer.embed)
    # L_rank compares pairs within a source: map each training pair to its source, only when L_rank is on. origin
    # is empty for a TaskData built without load_task_data: then every pair counts as one source.
    source_of: dict = {}
    if cfg.loss.pair_rank_weight > 0:
        index = {name: i for i, name in enumerate(dict.fromkeys(data.origin))}
        source_of = {p: index[name] for unit, name in zip(data.train, data.origin, strict=False) for p in unit}
    step, best = 0, float("-inf")
    if cfg.run.resume and run.checkpoint.exists():
        step, best, extra = run.load_checkpoint(model=student, optimizer=optimizer, scheduler=scheduler)
        plan.planned = min(plan.planned, int(extra.get("planned_steps", plan.planned)))
        logger.info("resumed from step %d of %d (best dev %.4f)", step, plan.planned, best)
    if rank == 0 and not run.best.exists():
        run.save_best(student)  # so a run stopped before its first evaluation still exports
    # What the frozen parts compute depends on the text alone: the teacher's vectors and the frozen blocks'
    # states are computed once per distinct text this run will see, in large length-sorted batches. With a
    # budget, first for PROBE_STEPS steps only: the horizon is chosen after them (training/cache_plan.py).
    horizon_at = step + PROBE_STEPS if plan.budget_s is not None and plan.planned - step > PROBE_STEPS else None
    first_texts = batch_texts(sampler.batch(s) for s in range(step, horizon_at or plan.planned))
    teacher_s, fill_s = _fill_caches(scorer, prefix, first_texts)
    filled, fill_per_text = set(first_texts), fill_s / max(1, len(first_texts))
    horizon: dict = {"probe_steps": PROBE_STEPS if horizon_at else None, "fill_s_per_text": fill_per_text}
    if prefix is not None:  # dev texts too: in-loop evaluations then cost only the adapted blocks
        prefix.fill(eval_texts(data.dev))
    logger.info(
        "caches for %d training texts in %.1fs (teacher %.1fs)%s",
        len(first_texts),
        fill_s,
        teacher_s,
        f"; prefix cache {len(prefix)} texts, {prefix.nbytes / 2**20:.0f} MB" if prefix is not None else "",
    )
    eval_s = 0.0
    if cfg.run.full_report:
        started = time.perf_counter()
        report["zero_shot"] = _zero_shot(student, encode, data.dev)  # adapters off: also right after a resume
        eval_s = time.perf_counter() - started  # after the dev prefill: what an in-loop evaluation costs
    for stage in ("teacher_base", "teacher", "zero_shot"):
        if stage in report:
            logger.info("dev %-12s %s", stage, _fmt(report[stage]))

    texts_seen, step_times, first_step = 0, [], step
    bar = tqdm(total=plan.planned, initial=step, disable=rank != 0, desc="distill")
    student.train()
    while step < plan.planned:
        step_started = time.perf_counter()
        pairs = sampler.batch(step)
        sources = [source_of.get(p, -1) for p in pairs] if source_of else None
        parts = forward_backward(student, scorer, loss_fn, pairs, device, bf16, sources)
        _sync_gradients(params, world)
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        texts_seen += 2 * len(pairs)
        step_times.append(time.perf_counter() - step_started)

        logged = {k: float(v.detach()) for k, v in parts.items()}
        logged.update(lr=scheduler.get_last_lr()[0], texts_per_s=2 * len(pairs) / step_times[-1])
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in logged.items() if k in ("total", "sup", "dist", "mcl", "gen", "lr")})
        if rank == 0 and step % cfg.run.log_every == 0:
            run.log_scalars(step, logged)
            logger.info("step %d/%d %s", step, plan.planned, _fmt(logged))
        if rank == 0 and (step % cfg.run.eval_every == 0 or step == plan.planned):
            started = time.perf_counter()
            dev = evaluate_all(encode, data.dev)
            eval_s = time.perf_counter() - started
            run.log_scalars(step, dev, tag="dev")
            logger.info("dev step %d %s", step, _fmt(dev))
            if dev["primary"] > best:
                best = dev["primary"]
                run.save_best(student)
            student.train()
        if step == horizon_at:  # the speeds are measured: fill the caches only for the steps that fit
            step_s = _agreed(typical_step_s(step_times), world)
            elapsed = _agreed(time.perf_counter() - phase_started, world)
            counts = new_text_counts((sampler.batch(s) for s in range(step, plan.planned)), filled)
            left_s, every = plan.budget_s - elapsed, cfg.run.eval_every
            fits = affordable_steps(counts, fill_per_text, step_s, left_s, _agreed(eval_s, world), every)
            why = f"caches and training fit the budget at {fill_per_text * 1e3:.1f} ms a text, {step_s:.2f} s a step"
            if plan.shrink_to(int(-_agreed(-(step + fits), world)), step, why):  # the fewest steps of any rank
                bar.total = plan.planned
            rest = [t for t in batch_texts(sampler.batch(s) for s in range(step, plan.planned)) if t not in filled]
            more_teacher_s, more_fill_s = _fill_caches(scorer, prefix, rest)
            teacher_s, fill_s = teacher_s + more_teacher_s, fill_s + more_fill_s
            filled.update(rest)
            horizon.update(steps=plan.planned, texts_filled=len(filled))
            logger.info("caches for %d more texts in %.1fs: the plan is %d steps", len(rest), more_fill_s, plan.planned)
        if (step - first_step) % REPLAN_EVERY == 0:  # on every rank alike: the same plan everywhere
            step_s = _agreed(typical_step_s(step_times), world)
            elapsed = _agreed(time.perf_counter() - phase_started, world)
            evals_left = (plan.planned - step) // cfg.run.eval_every + 1
            if plan.fit(step, elapsed, step_s, evals_left, _agreed(eval_s, world)):
                bar.total = plan.planned
        if rank == 0 and step % cfg.run.checkpoint_every == 0:
            run.save_checkpoint(
                model=student,
                optimizer=optimizer,
                scheduler=scheduler,
                step=step,
                best=best,
                extra={"planned_steps": plan.planned},
            )
        if cfg.run.stop_at_step is not None and step >= cfg.run.stop_at_step:
            logger.info("stopping at step %d (run.stop_at_step); resume with the same output_dir", step)
            break
    bar.close()
    if world > 1:
        dist.barrier()
    student.prefix = None  # final reports run the full model, as exported
    training = {
        "schedule": plan.record(step),
        "precision": {"bf16": bf16, **precision},
        "filter": filter_record,
        "throughput": {
            "train_texts_per_s": texts_seen / max(1e-9, sum(step_times)),
            "median_step_s": statistics.median(step_times) if step_times else None,
            "prefix_cache_texts": len(prefix) if prefix else 0,
            "prefix_cache_fill_s": prefix.seconds_filling if prefix else 0.0,
            "teacher_precompute_s": teacher_s,
            "cache_fill_s": fill_s,
            "cache_horizon": horizon,
            "student_phase_s": time.perf_counter() - phase_started,
        },
    }
    if not training["schedule"]["schedule_completed"]:
        logger.warning("schedule not completed: step %d of %d", step, plan.planned)
    result = DistillResult(run.path, student, training=training)
    if rank != 0:
        return result
    run.load_best(student)
    report["distilled"] = evaluate_all(encode, data.dev)
    thresholds = thresholds_from(report["distilled"])
    if cfg.run.full_report:
        report.update(_test_report(student, encode, scorer, data, report, thresholds, cfg.run.test_zero_shot))
    scorer.save_cache()
    run.write_json("metrics.json", {**report, "training": training})
    result.metrics, result.thresholds = report, thresholds
    return result


def _test_report(
    student, encode, scorer: TeacherScorer, data: TaskData, report: dict, thresholds: dict, zero_shot: bool = True
) -> dict:
    """Each model on the test sets, at the thresholds chosen on its own dev results."""
    out = {}
    if zero_shot:
        out["test_zero_shot"] = _zero_shot(student, encode, data.test, thresholds_from(report["zero_shot"]))
    out["test_teacher"] = evaluate_all(scorer.embed, data.test, thresholds_from(report["teacher"]))
    out["test_distilled"] = evaluate_all(encode, data.test, thresholds)
    return out


def _zero_shot(student: StudentEncoder, encode, sets: list, thresholds: dict[str, float] | None = None) -> dict:
    """The untouched LM: block adapters disabled and no readout (pooled hidden states)."""
    student.use_readout = False
    try:
        with student.model.disable_adapter():
            return evaluate_all(encode, sets, thresholds)
    finally:
        student.use_readout = True


def _fmt(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in values.items() if not k.endswith(("/precision", "/recall")))
