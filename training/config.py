"""TrainConfig: every knob of a run, typed, strict, with defaults in one place.

Load order: defaults -> YAML file -> `--set section.key=value` overrides. Unknown keys are errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.assets import DEFAULT_STUDENT, DEFAULT_TEACHER


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    data_dir: str = Field(
        "../shared/data", description="Folder with the bundled datasets (env FLIPMATCH_DATASETS_DIR)."
    )
    sources: list[str] = Field(
        default_factory=lambda: ["banking77", "medical_question_pairs"],
        description="Named pair sources: banking77, medical_question_pairs, medical_rqe, medquad_qa, bank_faq_hdfc, "
        "stsbenchmark, unlabelled (a teacher-only text pool, see unlabelled_from), or file:<path>.",
    )
    file_columns: dict[str, str] = Field(
        default_factory=lambda: {"text_a": "text_a", "text_b": "text_b", "label": "label"},
        description="Column names for user CSV/JSONL files (file:<path> sources).",
    )
    max_train_anchors: int = Field(2000, description="Training anchors per source (each gives a pos and a neg pair).")
    anchors_per_source: dict[str, int] = Field(
        default_factory=dict,
        description="Per-source cap on training anchors {source: n}, in place of max_train_anchors for the named "
        "sources: a large source mixed in at a small weight need not fill the caches with texts it rarely draws.",
    )
    dev_queries_per_intent: int = Field(3, description="Banking77 dev queries held out per intent.")
    reserved_per_intent: int = Field(
        0, ge=0, description="First N distinct Banking77 train questions per intent (file order) never used: the "
        "service's demo corpus is built from them (question + 20 alternates: 21), so its self-calibration is "
        "measured on questions the student has not trained on.")
    faq_alternates_per_intent: int = Field(5, description="Train questions per intent in the eval FAQ corpus.")
    max_eval_pairs: int = Field(150, description="Pairs per pair-matching dev/test set (subset for CPU speed).")
    max_test_queries: int = Field(770, description="Banking77 test queries used for the final report.")
    exclude_intents: list[str] = Field(
        default_factory=list,
        description="Banking77 intents kept out of training (teacher and student), e.g. for no-match evaluation.",
    )
    seed: int = Field(13, description="Seed of the splits and the hard-negative mining (keep fixed across seeds).")
    topic_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Topic-aware batches (needs data.mix): the probability that a source's draw after its first in "
        "a batch is one of the teacher's data.topic_neighbours nearest units of that first one, so the in-batch "
        "matrix holds near misses. 0: every draw at random.",
    )
    topic_neighbours: int = Field(32, ge=1, description="Neighbours per unit that topic-aware draws choose from.")
    order_seed: int | None = Field(None, description="Seed of the training batch order; None uses data.seed.")
    mix: dict[str, float] = Field(
        default_factory=dict,
        description="Source mixing weights {source: weight}: each batch draws its units from the sources with "
        "these probabilities. Empty: one pool, units drawn in proportion to each source's size.",
    )
    unlabelled_from: list[str] = Field(
        default_factory=lambda: ["banking77", "medical_question_pairs", "medical_rqe", "medquad_qa"],
        description="The `unlabelled` source's text pool: the questions (text_a) of these sources' training "
        "units. Each is paired with its teacher-nearest pool text; the teacher's similarities are the only signal.",
    )
    medquad_eval_foci: int = Field(
        400,
        description="MedQuAD foci reserved for evaluation (seeded); the medquad_qa source never trains on them.",
    )


class TeacherConfig(_Section):
    model: str = Field(DEFAULT_TEACHER, description="Teacher: packaged default, HF id or local path.")
    finetune: bool = Field(True, description="Fine-tune the teacher on the training pairs before distilling.")
    epochs: int = 1
    max_rows: int = Field(1500, description="Training rows (anchor, positive, hard negative) for the fine-tune.")
    batch_size: int = 32
    lr: float = 2e-5
    max_seq_length: int = 64
    output: str | None = Field(None, description="Where train-teacher saves; default <run>/teacher.")
    cache_scores: bool = Field(False, description="Cache teacher embeddings of training texts on disk.")


class StudentConfig(_Section):
    model: str = Field(DEFAULT_STUDENT, description="Decoder-only LM: packaged default, HF id or local path.")
    pooling: Literal["lasttoken", "mean"] = Field("lasttoken", description="Pool over tokens; lasttoken reads the EOS.")
    max_seq_length: int = 64
    num_layers: int | None = Field(
        None, description="Keep only the first N blocks (readout position); None keeps all. Cuts compute too."
    )
    gradient_checkpointing: bool = False
    prefix_cache: bool = Field(
        True,
        description="With lora.top_layers, compute the frozen blocks once per distinct text (bf16 cache) and run "
        "only the adapted blocks each step. Same gradients; the frozen forward is paid once per text.",
    )


class LoraSection(_Section):
    rank: int = Field(16, description="LoRA rank of the block projections.")
    alpha: float = Field(32.0, description="LoRA alpha of the block projections.")
    dropout: float = Field(
        0.0, description="LoRA dropout. 0: it cost ~16% of a CPU step (a copy of each adapted input) in a profile."
    )
    targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Linear projections in every block that get LoRA.",
    )
    top_layers: int | None = Field(
        None, description="Only the top N blocks get LoRA (None = all). Backward then stops early: CPU speed."
    )
    readout_rank: int = Field(256, description="Rank r of the LM-head LoRA; its A output is the embedding.")


class LossConfig(_Section):
    contrastive: Literal["mcl", "arccse", "kdmcse", "none"] = Field("mcl", description="Contrastive term.")
    supervised_weight: float = 1.0
    sup_temperature: float = Field(0.05, description="InfoNCE temperature of L_sup.")
    distill_weight: float = Field(1.0, description="lambda_dist; 0 disables L_dist.")
    teacher_temperature: float = Field(0.05, description="tau_t of the teacher row softmax in L_dist.")
    student_temperature: float = Field(0.05, description="tau_s of the student row softmax in L_dist.")
    distill_axes: Literal["rows", "both"] = Field(
        "rows",
        description="rows: L_dist's KL over each anchor's candidates (the paper's reading); both: also over each "
        "candidate's anchors, which ties every row to one scale (one threshold per pair task).",
    )
    contrastive_weight: float = Field(1.0, description="lambda_mcl (or the ArcCSE/KDMCSE weight).")
    score_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of L_score (1 - Pearson r of student and teacher cosines over the whole in-batch "
        "matrix): every pair of the batch on the teacher's one scale, up to a global affine map. 0 disables it.",
    )
    pair_rank_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of L_rank (CoSENT over the batch's gold pairs): every kept positive pair above every "
        "kept negative pair of the same source, across anchors, so one threshold fits a task's pairs (MQP, RQE). "
        "0 disables it.",
    )
    pair_rank_scale: float = Field(20.0, gt=0, description="CoSENT scale of L_rank (sentence-transformers' 20).")
    margin: float = Field(0.06, description="m_c: inter-class angular margin (radians).")
    filter: bool = Field(True, description="Dual-threshold filter on/off.")
    filter_scope: Literal["labelled", "all"] = Field(
        "labelled",
        description="labelled: filter the gold-labelled pairs only; all: also in-batch pairs (drops hard in-batch "
        "negatives the teacher finds similar).",
    )
    filter_pos_threshold: float = Field(0.5, description="tau_pos: drop positives the teacher scores below.")
    filter_neg_threshold: float = Field(0.5, description="tau_neg: drop negatives the teacher scores above.")
    filter_calibration: Literal["fixed", "teacher_dev"] = Field(
        "fixed",
        description="fixed: tau_pos/tau_neg as set (the paper's 0.5). teacher_dev: on the teacher's own scale, "
        "tau_pos = t* - filter_band and tau_neg = t* + filter_band, t* = the teacher's F1-optimal dev threshold "
        "(mean over the dev pair sets): raw MiniLM cosine is not a probability, so 0.5 drops most hard negatives.",
    )
    filter_band: float = Field(0.1, description="Half-width of the teacher_dev band around t*.")
    pseudo_threshold: float | None = Field(
        None,
        description="Rows without a gold label (the unlabelled source): a pair is a teacher-derived positive for "
        "MCL when the teacher scores it at or above this; None: the filter's midpoint (tau_pos + tau_neg) / 2.",
    )
    generative_weight: float = Field(
        0.0,
        description="Weight of the yes/no match-label loss through the LM head (the decoder/rerank reading); "
        "0 disables it and the head is not exported.",
    )
    generative_pairs: int | None = Field(
        None,
        ge=1,
        description="Gold-labelled pairs per step that go through the yes/no head (the first N of the batch); "
        "None: all. Each runs every kept block on a two-text prompt, outside the prefix cache, so a cap keeps "
        "the head's cost per step bounded.",
    )


class OptimConfig(_Section):
    lr: float = Field(3e-5, description="AdamW peak learning rate (paper default).")
    warmup: float = Field(0.05, description="Warmup fraction of the steps.")
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    batch_pairs: int = Field(32, description="Pairs per step (anchors come with their pos and neg pair).")
    steps: int = 300
    max_minutes: float | None = Field(
        None,
        description="Time budget of the student phase (minutes). The plan is optim.steps; if the measured speed "
        "says it would overrun, the plan shrinks so warmup and decay still complete (recorded in metrics.json).",
    )
    bf16: Literal["auto", "on", "off"] = Field("auto", description="bf16 autocast when the hardware supports it.")


class RunConfig(_Section):
    output_dir: str = "runs/default"
    seed: int = 42
    eval_every: int = Field(100, description="Dev evaluation every N steps (best checkpoint kept).")
    checkpoint_every: int = 100
    log_every: int = 10
    stop_at_step: int | None = Field(
        None, description="Stop after this step as if interrupted (the schedule still spans optim.steps); resume later."
    )
    resume: bool = Field(True, description="Resume from output_dir/checkpoint if present.")
    full_report: bool = Field(
        True,
        description="Also evaluate the zero-shot student and the teacher, and every model on the test sets. "
        "false: dev only (checkpoint selection), for callers that run their own test evaluation.",
    )
    test_zero_shot: bool = Field(
        True,
        description="With full_report, also the zero-shot student on the test sets: a full-model pass over every "
        "test text (~80 s of the default's 15 minutes on 2 cores). Its dev figures are reported either way.",
    )
    device: str = Field("auto", description="auto, cpu or cuda.")


class TrainConfig(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    lora: LoraSection = Field(default_factory=LoraSection)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.optim.batch_pairs < 2:
            raise ValueError("optim.batch_pairs must be >= 2: in-batch similarities need several pairs")
        if not 0 <= self.loss.margin < 1.5:
            raise ValueError("loss.margin is an angle in radians; expected 0 <= m_c < 1.5")
        return self


def _parse_scalar(text: str) -> Any:
    return yaml.safe_load(text)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides (value parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        dotted, value = item.split("=", 1)
        node = raw
        *parents, leaf = dotted.strip().split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {key!r} is not a section")
        node[leaf] = _parse_scalar(value)
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    raw: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text())
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config file must be a YAML mapping")
        raw = loaded
    return TrainConfig.model_validate(apply_overrides(raw, overrides or []))


def save_config(config: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))
