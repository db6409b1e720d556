"""Encoder: load the artifact, tokenize, forward, pool, project, normalize -> float32 numpy.

The only service module that imports torch/transformers. It runs the stock sentence-transformers pipeline
(Transformer -> Pooling(mean|cls|lasttoken) -> optional Dense -> optional Normalize) itself, without the
`SentenceTransformer.encode` overhead, and proves on load that it computes the same vectors: the flipmatch.json
probes must reach cosine >= 0.999 in float32, >= 0.99 in a reduced precision (device.PARITY_MIN_COSINE;
tests also compare against `SentenceTransformer.encode`).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from service.engine.artifact import ArtifactSpec, DenseSpec, read_artifact, resolve_model_path
from service.engine.autotune import CALIBRATION_TEXTS, measure, min_cosine, padded_shape
from service.engine.device import (
    PARITY_MIN_COSINE,
    Candidate,
    Choice,
    Placement,
    available_cores,
    choose,
    cpu_candidates,
    cpu_flags,
    cpu_has_fast_bf16,
    select,
)
from service.engine.engine import CalibrationRow, EncoderInfo, TokenizedText
from service.engine.prepack import prepack_linears, restore
from service.engine.reranker import PARITY_MAX_DIFF, MatchReranker, read_match_head
from service.errors import ArtifactError, ConfigError

logger = logging.getLogger(__name__)

# Packed and padded passes do the same arithmetic in another layout; a model whose attention crosses the packed
# texts' boundaries lands far below this.
PACKING_MIN_COSINE = 0.999
# Prepacked linears compute the same products as eager ones (measured cosine 1.0 in bf16, 0.99999994 in fp32).
PREPACK_MIN_COSINE = 0.9999

_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                 "int8": torch.float32}  # int8: loaded in float32, then quantized (engine/quantize.py)


def _load_dense(spec: DenseSpec, device: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    weights_file = spec.path / "model.safetensors"
    if weights_file.exists():
        from safetensors.torch import load_file

        state = load_file(str(weights_file))
    elif (spec.path / "pytorch_model.bin").exists():
        state = torch.load(spec.path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ArtifactError(f"Dense module in {spec.path} has no model.safetensors or pytorch_model.bin")
    weight = state["linear.weight"].float().to(device)  # (out, in)
    if tuple(weight.shape) != (spec.out_features, spec.in_features):
        raise ArtifactError(f"Dense weight in {spec.path} has shape {tuple(weight.shape)}, config says "
                            f"({spec.out_features}, {spec.in_features})")
    bias = state["linear.bias"].float().to(device) if spec.bias else None
    return weight, bias


class Encoder:
    """Thread-safety: `tokenize` and `encode` may run on different threads, and `encode` on several forward
    workers at once: inference only, nothing in the model changes (tested against sequential passes)."""

    def __init__(self, spec: ArtifactSpec, placement: Placement, dtype: str, *, packing: bool = True,
                 prepack: bool = True, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        """`tokenizer`: one already loaded from this artifact, shared by the calibration's candidate encoders
        (Gemma's 33 MB tokenizer.json took ~3 s to load, a third of the start-up calibration)."""
        self.spec = spec
        self.device = placement.device
        self.dtype = dtype
        root = spec.transformer_path
        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(str(root))
        self.model = AutoModel.from_pretrained(str(root), dtype=_TORCH_DTYPES[dtype]).to(self.device).eval()
        self._accepts_type_ids = "token_type_ids" in inspect.signature(self.model.forward).parameters
        self.max_seq_length = self._max_length()
        self._left_pad = spec.causal or self.tokenizer.padding_side == "left"
        pad = self.tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))
        self._dense = [(_load_dense(d, self.device), d.activation) for d in spec.dense]
        self.dimension = spec.dense[-1].out_features if spec.dense else int(self.model.config.hidden_size)
        checks = self.tokenize(CALIBRATION_TEXTS)  # texts of different lengths for the load-time checks
        if dtype == "int8":  # calibrated on FAQ-style texts through the float32 model, then quantized
            from service.engine.quantize import quantize_int8

            self.model = quantize_int8(self.model, self._collate(checks))
        # CPU only: measured there (docs/performance.md); on CUDA padding is cheap and packing is unmeasured.
        cpu = self.device == "cpu"
        padded = self.encode(checks, packed=False) if cpu and (prepack or packing) else None
        self.prepacked = False
        if cpu and prepack:
            self.prepacked, padded = self._prepack_linears(checks, padded)
        self.packed = cpu and packing and self._packing_reproduces_padding(checks, padded)
        self._info = EncoderInfo(
            model=spec.name, dimension=self.dimension, device=self.device, dtype=dtype,
            max_seq_length=self.max_seq_length, fingerprint=spec.fingerprint,
            match_threshold=spec.card.match_threshold, packed=self.packed, prepacked=self.prepacked,
        )

    @property
    def info(self) -> EncoderInfo:
        return self._info

    def record_choice(self, choice: Choice, *, seconds: float, selection: str) -> None:
        """Put the start-up calibration's decision into `info` (for /v1/info and flipmatch_model_info)."""
        rows = tuple(CalibrationRow(dtype=m.candidate.dtype, threads=m.candidate.threads, workers=m.candidate.workers,
                                    ms=tuple(1000 * s for s in m.seconds if s != float("inf")),  # inf: not timed
                                    min_cosine=m.min_cosine, passed=m.passes)
                     for m in choice.measurements)
        cost = choice.cost_model
        self._info = dataclasses.replace(
            self._info, threads=choice.candidate.threads, forward_workers=choice.candidate.workers,
            selection=selection, reason=choice.reason,
            calibration=rows, calibration_seconds=seconds,
            batch_overhead_tokens=cost.overhead_tokens if cost is not None else None)

    def _max_length(self) -> int:
        # Same resolution as sentence-transformers: sentence_bert_config.json, else the tokenizer's
        # model_max_length capped at the position table.
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if self.spec.max_seq_length is not None:
            length = self.spec.max_seq_length
        else:
            length = int(self.tokenizer.model_max_length)
            if positions and positions > 0:
                length = min(length, int(positions))
        if length > 1_000_000:
            raise ArtifactError(f"cannot tell the max sequence length of {self.spec.root}; set max_seq_length in "
                                "sentence_bert_config.json")
        card_length = self.spec.card.max_seq_length
        if card_length is not None and card_length != length:
            logger.warning("flipmatch.json max_seq_length=%s differs from the model's %s; using the model's",
                           card_length, length)
        return length

    def tokenize(self, texts: Sequence[str]) -> list[TokenizedText]:
        prepared = [self.spec.prompt + t for t in texts]
        if self.spec.do_lower_case:
            prepared = [t.lower() for t in prepared]
        enc = self.tokenizer(prepared, truncation=True, max_length=self.max_seq_length, verbose=False)
        type_rows = enc.get("token_type_ids") if self._accepts_type_ids else None
        out = []
        for i, ids in enumerate(enc["input_ids"]):
            truncated = False
            if len(ids) >= self.max_seq_length:  # at the limit: was it cut? (rare, so a second call is cheap)
                full = self.tokenizer(prepared[i], truncation=False, verbose=False)["input_ids"]
                truncated = len(full) > len(ids)
            out.append(TokenizedText(tuple(ids), tuple(type_rows[i]) if type_rows else None, truncated))
        return out

    def _collate(self, batch: Sequence[TokenizedText]) -> dict[str, torch.Tensor]:
        width = max(t.n_tokens for t in batch)
        ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        types = torch.zeros((len(batch), width), dtype=torch.long) if batch[0].type_ids is not None else None
        for row, text in enumerate(batch):
            n = text.n_tokens
            cols = slice(width - n, width) if self._left_pad else slice(0, n)
            ids[row, cols] = torch.tensor(text.ids)
            mask[row, cols] = 1
            if types is not None and text.type_ids is not None:
                types[row, cols] = torch.tensor(text.type_ids)
        features = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            features["token_type_ids"] = types
        if self.device == "cpu":
            return features
        # GPU path: page-locked host buffers let the copy overlap the previous batch's kernels.
        return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in features.items()}

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """hidden (B, T, H) float32, mask (B, T) -> (B, H). Works for left and right padding."""
        if self.spec.pooling == "mean":
            m = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        width = mask.shape[1]
        if self.spec.pooling == "cls":
            index = mask.int().argmax(dim=1)  # first real token
        else:  # lasttoken: the last real token, wherever the padding is
            index = width - 1 - mask.flip(1).int().argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]

    def _pack(self, batch: Sequence[TokenizedText]) -> dict[str, torch.Tensor]:
        """All texts in one row, no padding; positions restart at 0 for each text, which is how transformers'
        attention masks tell packed sequences apart (attention stays within each text)."""
        features = {
            "input_ids": torch.tensor([i for t in batch for i in t.ids], dtype=torch.long).unsqueeze(0),
            "position_ids": torch.cat([torch.arange(t.n_tokens) for t in batch]).unsqueeze(0),
        }
        if self._accepts_type_ids and batch[0].type_ids is not None:
            features["token_type_ids"] = torch.tensor([i for t in batch for i in t.type_ids or ()]).unsqueeze(0)
        return features

    def _pool_packed(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """hidden (T, H) float32 of texts laid end to end with `lengths` -> (B, H)."""
        ends = lengths.cumsum(0)
        if self.spec.pooling == "mean":
            segment = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
            sums = torch.zeros(len(lengths), hidden.shape[1], dtype=hidden.dtype).index_add_(0, segment, hidden)
            return sums / lengths.unsqueeze(1).to(hidden.dtype)
        if self.spec.pooling == "cls":
            return hidden[ends - lengths]
        return hidden[ends - 1]  # lasttoken

    def _pooled(self, batch: Sequence[TokenizedText], *, packed: bool) -> torch.Tensor:
        if packed:
            hidden = self.model(**self._pack(batch)).last_hidden_state[0].float()  # (T, H)
            return self._pool_packed(hidden, torch.tensor([t.n_tokens for t in batch]))
        features = self._collate(batch)
        hidden = self.model(**features).last_hidden_state.float()  # (B, T, H)
        return self._pool(hidden, features["attention_mask"])

    @torch.inference_mode()
    def encode(self, batch: Sequence[TokenizedText], *, packed: bool | None = None) -> np.ndarray:
        """(B, D) float32. Packed (the default where the load-time check passed) or padded."""
        pooled = self._pooled(batch, packed=self.packed if packed is None else packed)  # (B, H)
        for (weight, bias), activation in self._dense:
            pooled = F.linear(pooled, weight, bias)
            if activation == "tanh":
                pooled = torch.tanh(pooled)
        if self.spec.normalize:
            pooled = F.normalize(pooled, p=2, dim=-1)
        return pooled.cpu().numpy().astype(np.float32, copy=False)

    def prepare_thread(self) -> None:
        """Run once on each forward worker thread: torch's thread count is kept per OS thread."""
        if self.device == "cpu" and self._info.threads:
            set_threads(self._info.threads)

    def pass_shape(self, batch: Sequence[TokenizedText]) -> tuple[int, int]:
        """(rows, width) of the forward pass `encode` runs for `batch`: one row of all tokens when packed."""
        if self.packed:
            return 1, sum(t.n_tokens for t in batch)
        return padded_shape(batch)

    def _prepack_linears(self, batch: Sequence[TokenizedText], eager: np.ndarray) -> tuple[bool, np.ndarray]:
        """Swap in oneDNN-prepacked linear layers (engine/prepack.py) where they reproduce `eager`, the padded
        vectors of `batch`; otherwise keep the eager ones. Returns whether they were kept and the padded vectors
        of the model as it now stands (the packing check's reference)."""
        try:
            swapped = prepack_linears(self.model)
        except Exception:  # a torch build or CPU without oneDNN support for this dtype
            logger.warning("prepacking the linear layers failed; keeping eager ones", exc_info=True)
            return False, eager
        if not swapped:
            return False, eager
        try:
            prepacked = self.encode(batch, packed=False)
            cosine = min_cosine(prepacked, eager)
        except Exception:
            logger.warning("prepacked forward failed; keeping eager linear layers", exc_info=True)
            cosine = -1.0
        logger.info("prepack check dtype=%s layers=%d min_cosine=%.6f", self.dtype, len(swapped), cosine)
        if cosine < PREPACK_MIN_COSINE:
            restore(swapped)
            return False, eager
        return True, prepacked

    def _packing_reproduces_padding(self, batch: Sequence[TokenizedText], padded: np.ndarray | None) -> bool:
        """Whether packed passes give `padded`, the padded passes' vectors of `batch` (texts of different lengths).
        A model whose masks ignore the position restarts fails and keeps padded batches. transformers 5 builds
        packed-sequence masks from position_ids for causal and bidirectional models alike (Llama, Gemma, BERT all
        pass)."""
        if padded is None or "position_ids" not in inspect.signature(self.model.forward).parameters:
            return False
        try:
            cosine = min_cosine(self.encode(batch, packed=True), padded)
        except Exception:  # an architecture that rejects the packed layout: padded it is
            logger.warning("packed forward failed; serving padded batches", exc_info=True)
            return False
        logger.info("packing check dtype=%s min_cosine=%.6f -> %s", self.dtype, cosine,
                    "packed" if cosine >= PACKING_MIN_COSINE else "padded")
        return cosine >= PACKING_MIN_COSINE

    def probe_cosines(self) -> np.ndarray:
        """Cosine between each flipmatch.json probe vector and this encoder's vector for the probe text."""
        probes = self.spec.card.probes
        if not probes:
            return np.ones(0, np.float32)
        expected = np.asarray([p.vector for p in probes], np.float32)
        if expected.shape[1] != self.dimension:
            raise ArtifactError(f"flipmatch.json probes have dimension {expected.shape[1]}, the model "
                                f"outputs {self.dimension}")
        got = self.encode(self.tokenize([p.text for p in probes]))
        num = (got * expected).sum(axis=1)
        return num / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1) + 1e-12)


def set_threads(threads: int) -> None:
    """torch's intra-op threads for CPU forward passes (process-wide)."""
    torch.set_num_threads(max(1, threads))


def load_encoder(model_path: str, *, device: str = "auto", dtype: str = "auto", cpu_threads: int | None = 1,
                 calibration_rounds: int = 3, packing: bool = True, forward_workers: int | None = None,
                 prepack: bool = True) -> Encoder:
    """Resolve, load and parity-check the encoder.

    On CPU the dtype (unless explicit) and the forward thread count (unless `cpu_threads` is given) are chosen by
    timing each candidate on a probe batch (`autotune.measure`, `device.select`); the same timings fit the
    batcher's cost model (`info.batch_overhead_tokens`). On CUDA the placement's dtypes are tried in order.
    `packing`: on CPU, run each pass's texts as one unpadded row where the model keeps them apart (checked on load,
    `info.packed`). `prepack`: on CPU, hold linear weights in oneDNN's packed layout where that reproduces the
    eager vectors (`info.prepacked`). `forward_workers`: passes at once, so the calibration times the layout that
    will be served (None: cores // threads per candidate). Fails loudly when no candidate reproduces the reference
    vectors."""
    root = resolve_model_path(model_path)
    spec = read_artifact(root, name=root.name if Path(model_path).expanduser().is_dir() else model_path)
    cuda = torch.cuda.is_available()
    flags = cpu_flags()
    placement = choose(device, dtype, cuda_available=cuda, cuda_bf16_supported=cuda and torch.cuda.is_bf16_supported(),
                       cpu_bf16_fast=cpu_has_fast_bf16(), cpu_fp16_native="avx512_fp16" in flags)
    if placement.device == "cpu":
        return _calibrated(spec, dtype=dtype, threads=cpu_threads, flags=flags, rounds=calibration_rounds,
                           packing=packing, workers=forward_workers, prepack=prepack)
    set_threads(cpu_threads or 1)
    failures = []
    tokenizer = None
    for candidate in placement.dtypes:
        encoder = Encoder(spec, placement, candidate, packing=packing, prepack=prepack, tokenizer=tokenizer)
        tokenizer = encoder.tokenizer
        cosines = encoder.probe_cosines()
        worst = float(cosines.min()) if cosines.size else 1.0
        head = head_probe_difference(root, encoder) if worst >= PARITY_MIN_COSINE[candidate] else 0.0
        if worst >= PARITY_MIN_COSINE[candidate] and (candidate == "float32" or head <= PARITY_MAX_DIFF):
            logger.info("encoder loaded model=%s device=%s dtype=%s dim=%d max_len=%d probes=%d min_cosine=%.5f "
                        "(%s)", spec.name, placement.device, candidate, encoder.dimension, encoder.max_seq_length,
                        cosines.size, worst, placement.reason)
            return encoder
        failures.append(f"{candidate}: min cosine {worst:.5f}, match head difference {head:.4f}")
        logger.warning("probe parity failed dtype=%s min_cosine=%.5f", candidate, worst)
    raise _parity_error(root, failures)


def head_probe_difference(root: Path, encoder: Encoder) -> float:
    """The artifact's match head through `encoder`'s model: its largest probe probability difference (0 with no
    head). The reranker reuses the encoder's weights, so the dtype that serves embeddings also serves the head."""
    spec = read_match_head(root)
    if spec is None:
        return 0.0
    return MatchReranker(encoder.model, encoder.tokenizer, spec, encoder.device).probe_difference()


def keep_head_parity(candidates: list[Candidate], difference: Callable[[str], float]) -> list[Candidate]:
    """Drop the reduced-precision candidates whose dtype moves the match head's probabilities past the reranker's
    bar (bf16 moved the rerank preset's by 0.049 while its embeddings held cosine 0.9987); float32 always stays."""
    verdict: dict[str, float] = {}
    kept = []
    for candidate in candidates:
        if candidate.dtype != "float32" and candidate.dtype not in verdict:
            verdict[candidate.dtype] = difference(candidate.dtype)
            if verdict[candidate.dtype] > PARITY_MAX_DIFF:
                logger.warning("calibration drops dtype=%s: the match head's probabilities move by %.4f (limit %s)",
                               candidate.dtype, verdict[candidate.dtype], PARITY_MAX_DIFF)
        if candidate.dtype == "float32" or verdict[candidate.dtype] <= PARITY_MAX_DIFF:
            kept.append(candidate)
    return kept


def _parity_error(root: Path, failures: list[str]) -> ArtifactError:
    return ArtifactError(
        f"{root}: re-encoded flipmatch.json probes do not match the exported vectors (need cosine >= "
        f"0.999 in float32, 0.99 in bf16, fp16 or int8; {'; '.join(failures)}). The artifact and this loader disagree: "
        "re-export it, or check FLIPMATCH_DTYPE."
    )


def _calibrated(spec: ArtifactSpec, *, dtype: str, threads: int | None, flags: frozenset[str],
                rounds: int, packing: bool, workers: int | None, prepack: bool = True) -> Encoder:
    """CPU: time the candidates, keep the fastest that passes parity, record the decision in `info`."""
    started = time.perf_counter()
    placement = Placement("cpu", ("float32",), "calibration")
    built: dict[str, Encoder] = {}

    def build(candidate_dtype: str) -> Encoder:
        if candidate_dtype not in built:
            shared = next(iter(built.values())).tokenizer if built else None  # read-only after loading
            built[candidate_dtype] = Encoder(spec, placement, candidate_dtype, packing=packing, prepack=prepack,
                                             tokenizer=shared)
        return built[candidate_dtype]

    probes = spec.card.probes
    if probes:  # the artifact's own expected vectors are the reference
        parity_texts = [p.text for p in probes]
        reference = np.asarray([p.vector for p in probes], np.float32)
    else:  # a plain sentence-transformers folder: the fp32 forward is the reference
        parity_texts = list(CALIBRATION_TEXTS)
        fp32 = build("float32")
        reference = fp32.encode(fp32.tokenize(parity_texts))
    first = build(dtype if dtype not in ("auto", "int8") else "float32")
    # What the calibration adds to start-up is counted from here: loading one encoder is needed without it too.
    calibration_started = time.perf_counter()
    if reference.shape[1] != first.dimension:
        raise ArtifactError(f"flipmatch.json probes have dimension {reference.shape[1]}, the model outputs "
                            f"{first.dimension}")
    texts = first.tokenize(CALIBRATION_TEXTS)
    # A lone question (latency) and a batch of 12, about the 9-11 texts served passes held at concurrency 32 on
    # machine A (throughput).
    timed = [texts[:1], texts]
    candidates = cpu_candidates(dtype=dtype, threads=threads, cores=available_cores(), cpu_flags=flags,
                                workers=workers)
    if dtype in ("auto", "int8"):  # measured dtypes: a match head, if any, must hold its own parity too
        candidates = keep_head_parity(candidates, lambda d: head_probe_difference(spec.root, build(d)))
    measurements, _ = measure(candidates, build=build, set_threads=set_threads, timed_batches=timed,
                              parity_batch=first.tokenize(parity_texts), reference=reference, rounds=rounds,
                              pass_shape=first.pass_shape)
    try:
        choice = select(measurements)
    except ConfigError as err:
        failures = [f"{m.candidate.dtype}: min cosine {m.min_cosine:.5f}" for m in measurements]
        raise _parity_error(spec.root, list(dict.fromkeys(failures))) from err
    chosen = built[choice.candidate.dtype]
    built.clear()  # the losers' weights go with this
    set_threads(choice.candidate.threads)
    selection = (f"dtype {'requested' if dtype not in ('auto', 'int8') else 'measured'}, "
                 f"threads {'requested' if threads else 'measured'}" + (", workers requested" if workers else ""))
    chosen.record_choice(choice, seconds=time.perf_counter() - calibration_started, selection=selection)
    info = chosen.info
    logger.info("encoder loaded model=%s device=cpu dtype=%s threads=%d workers=%d packed=%s prepacked=%s dim=%d "
                "max_len=%d overhead_tokens=%s load_and_calibration_s=%.2f calibration_s=%.2f (%s)", spec.name,
                info.dtype,
                choice.candidate.threads, choice.candidate.workers, info.packed, info.prepacked, info.dimension,
                info.max_seq_length, f"{info.batch_overhead_tokens:.1f}" if info.batch_overhead_tokens else "n/a",
                time.perf_counter() - started, info.calibration_seconds, choice.reason)
    return chosen
