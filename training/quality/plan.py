"""What the benchmark runs: systems (name + config overrides), seeds, sweeps and subset sizes. Data only."""

from __future__ import annotations

from dataclasses import dataclass, field

from training.quality.tasks import TaskLimits


@dataclass(frozen=True)
class System:
    name: str
    kind: str  # "zero_shot" (no training), "teacher" (the shared fine-tuned teacher) or "distill"
    overrides: tuple[str, ...] = ()
    table: str = "main"  # main (Table 1), ablation (Table 2), variant (Table 3: choices the paper leaves open)
    every_seed: bool = False  # a main distilled row trained on every seed (the others: the first seed only)


SYSTEMS: tuple[System, ...] = (
    System("zero-shot student (mean)", "zero_shot", ("student.pooling=mean",)),
    System("zero-shot student (last token)", "zero_shot", ("student.pooling=lasttoken",)),
    System("fine-tuned teacher (MiniLM)", "teacher"),
    System("student LoRA-SFT", "distill", ("loss.distill_weight=0", "loss.contrastive=none", "loss.filter=false"),
           every_seed=True),
    System("flipped full (FlipMatch)", "distill", (), every_seed=True),
    System("w/o MCL", "distill", ("loss.contrastive=none",), "ablation"),
    System("w/o L_dist", "distill", ("loss.distill_weight=0",), "ablation"),
    System("w/o filter", "distill", ("loss.filter=false",), "ablation"),
    # Table 1's other contrastive styles run after the ablations: a tight budget cuts them first
    System("flipped, ArcCSE-style", "distill", ("loss.contrastive=arccse",)),
    System("flipped, KDMCSE-style", "distill", ("loss.contrastive=kdmcse",)),
    # Table 3, run after the ablations and before the sweep: the alternative student and open choices.
    System(
        "flipped full, SmolLM2-135M student @ 15 blocks",
        "distill",
        ("student.model=packaged:smollm2-135m-instruct", "student.num_layers=15"),
        "variant",
    ),
    # Source mixes (issue 12): every run shares one teacher and one loaded data set, so a mix is a set of sampling
    # weights over the default's sources; a source left out is never drawn.
    System(
        "flipped full, mix: Banking77 + MQP only",
        "distill",
        ("data.mix={banking77: 0.57, medical_question_pairs: 0.43}",),
        "variant",
    ),
    System(
        "flipped full, mix: MQP not weighted up (0.13)",
        "distill",
        ("data.mix={banking77: 0.57, medical_question_pairs: 0.13, medquad_qa: 0.15, medical_rqe: 0.15}",),
        "variant",
    ),
    System("flipped full, lr 4e-4", "distill", ("optim.lr=4e-4",), "variant"),
    System("flipped full, filter on in-batch pairs too", "distill", ("loss.filter_scope=all",), "variant"),
)
FULL = "flipped full (FlipMatch)"
SFT = "student LoRA-SFT"
TEACHER = "fine-tuned teacher (MiniLM)"
ZERO_SHOT = "zero-shot student (last token)"


@dataclass(frozen=True)
class Plan:
    config: str  # base YAML config
    overrides: tuple[str, ...]  # applied to every run (the subset that fits the budget)
    seeds: tuple[int, ...]  # main distilled rows; ablations and the sweep use seeds[0]
    tasks: tuple[str, ...] = ("banking77", "mqp", "rqe", "medquad", "stsb")
    limits: TaskLimits = field(default_factory=TaskLimits)
    margins: tuple[float, ...] = (0.02, 0.04, 0.06, 0.08, 0.12)  # m_c sweep
    filter_thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)  # tau_pos = tau_neg sweep
    sweep_task: str = "mqp"
    systems: tuple[System, ...] = SYSTEMS

    def runs(self, tables: tuple[str, ...] = ("main", "ablation")) -> list[tuple[System, int]]:
        out = []
        for system in (s for s in self.systems if s.table in tables):
            seeds = self.seeds if system.kind == "distill" and system.every_seed else self.seeds[:1]
            out += [(system, seed) for seed in seeds]
        return out

    def sweep(self) -> list[tuple[str, str]]:
        """(label, override) points; the default values (0.06, 0.5) reuse the flipped-full seed-0 run."""
        points = [(f"m_c={m}", f"loss.margin={m}") for m in self.margins if m != 0.06]
        points += [
            (f"tau={t}", f"loss.filter_pos_threshold={t},loss.filter_neg_threshold={t}")
            for t in self.filter_thresholds
            if t != 0.5
        ]
        return points


def full_plan(config: str, run_minutes: float = 2.5) -> Plan:
    """The reported benchmark on 2 CPU cores: the default recipe, each training with a `run_minutes` student
    budget (its step plan sized to fit, as the default's 10 minutes is; the shared caches are filled before the
    first run, outside every budget). Flipped full and LoRA-SFT run on 3 seeds, every other training on seed 42:
    6 + 2 + 3 ablations + 5 variant + 6 sweep trainings share one fine-tuned teacher and its mined data. A
    training takes ~run_minutes + 1.2 min of evaluation; the runner skips what would end past `budget_minutes`
    (the sweep first, then the variants), and the report lists what it skipped."""
    return Plan(
        config=config,
        overrides=(
            f"optim.max_minutes={run_minutes:.2f}",
            "run.eval_every=150",
            "run.checkpoint_every=1000",
            "run.log_every=10",
            # distill()'s own dev/test evaluation (its checkpoint selection) on smaller subsets: CPU time
            "data.max_eval_pairs=60",
            "data.max_test_queries=77",
        ),
        seeds=(42, 43, 44),
        # Whole test sets where they are small (MQP, RQE: every pair) and 40 Banking77 questions per intent: at
        # 3 per intent and 120 pairs, a model's own sampling error (~0.025 R@1) was most of the "seed spread"
        # the flipped-vs-SFT comparison is judged against.
        limits=TaskLimits(test_queries_per_intent=40, pairs_per_set=500, medquad_foci=60),
    )


def tiny_plan(config: str) -> Plan:
    """The whole pipeline on tiny models and data (tests): 2 steps, 2 seeds, a short sweep."""
    return Plan(
        config=config,
        overrides=("optim.steps=2", "run.eval_every=1", "run.checkpoint_every=1000", "run.log_every=1"),
        seeds=(3, 4),
        tasks=("banking77", "mqp"),
        limits=TaskLimits(test_queries_per_intent=2, pairs_per_set=10, holdout_every=2),
        margins=(0.02, 0.06),
        filter_thresholds=(0.3, 0.5),
    )
