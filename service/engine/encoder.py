"""Encoder: load the artifact, tokenize, forward, pool, project, normalize -> float32 numpy.

The only service module that imports torch/transformers. It runs the stock sentence-transformers pipeline
(Transformer -> Pooling(mean|cls|lasttoken) -> optional Dense -> optional Normalize) itself, without the
`SentenceTransformer.encode` overhead, and proves on load that it computes the same vectors: the flipmatch.json
probes must reach cosine >= 0.999 (tests also compare against `SentenceTransformer.encode`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from service.engine.artifact import ArtifactSpec, DenseSpec, read_artifact, resolve_model_path
from service.engine.device import Placement, choose, cpu_has_fast_bf16
from service.engine.engine import EncoderInfo, TokenizedText
from service.errors import ArtifactError

logger = logging.getLogger(__name__)

PARITY_MIN_COSINE = 0.999
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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
    """Thread-safety: `tokenize` and `encode` may run on different threads; `encode` calls are serialized by the
    batcher's single worker thread."""

    def __init__(self, spec: ArtifactSpec, placement: Placement, dtype: str) -> None:
        self.spec = spec
        self.device = placement.device
        self.dtype = dtype
        root = spec.transformer_path
        self.tokenizer = AutoTokenizer.from_pretrained(str(root))
        self.model = AutoModel.from_pretrained(str(root), dtype=_TORCH_DTYPES[dtype]).to(self.device).eval()
        self._accepts_type_ids = "token_type_ids" in inspect.signature(self.model.forward).parameters
        self.max_seq_length = self._max_length()
        self._left_pad = spec.causal or self.tokenizer.padding_side == "left"
        pad = self.tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))
        self._dense = [(_load_dense(d, self.device), d.activation) for d in spec.dense]
        self.dimension = spec.dense[-1].out_features if spec.dense else int(self.model.config.hidden_size)
        self._info = EncoderInfo(
            model=spec.name, dimension=self.dimension, device=self.device, dtype=dtype,
            max_seq_length=self.max_seq_length, fingerprint=spec.fingerprint,
            match_threshold=spec.card.match_threshold,
        )

    @property
    def info(self) -> EncoderInfo:
        return self._info

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

    @torch.inference_mode()
    def encode(self, batch: Sequence[TokenizedText]) -> np.ndarray:
        features = self._collate(batch)
        hidden = self.model(**features).last_hidden_state.float()  # (B, T, H)
        pooled = self._pool(hidden, features["attention_mask"])  # (B, H)
        for (weight, bias), activation in self._dense:
            pooled = F.linear(pooled, weight, bias)
            if activation == "tanh":
                pooled = torch.tanh(pooled)
        if self.spec.normalize:
            pooled = F.normalize(pooled, p=2, dim=-1)
        return pooled.cpu().numpy().astype(np.float32, copy=False)

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


def load_encoder(model_path: str, *, device: str = "auto", dtype: str = "auto", cpu_threads: int = 1) -> Encoder:
    """Resolve, load and parity-check the encoder. Tries the placement's dtypes in order; fails loudly when
    none reproduces the probes (cosine < 0.999). `cpu_threads` sets torch's intra-op threads (process-wide)."""
    torch.set_num_threads(max(1, cpu_threads))
    root = resolve_model_path(model_path)
    spec = read_artifact(root, name=root.name if Path(model_path).expanduser().is_dir() else model_path)
    cuda = torch.cuda.is_available()
    placement = choose(device, dtype, cuda_available=cuda,
                       cuda_bf16_supported=cuda and torch.cuda.is_bf16_supported(), cpu_bf16_fast=cpu_has_fast_bf16())
    dtypes = placement.dtypes
    if not spec.card.probes and dtype == "auto" and placement.device == "cpu":
        dtypes = ("float32",)  # no probes to prove that bfloat16 keeps parity: stay exact
    failures = []
    for candidate in dtypes:
        encoder = Encoder(spec, placement, candidate)
        cosines = encoder.probe_cosines()
        worst = float(cosines.min()) if cosines.size else 1.0
        if worst >= PARITY_MIN_COSINE:
            logger.info("encoder loaded model=%s device=%s dtype=%s dim=%d max_len=%d probes=%d min_cosine=%.5f "
                        "(%s)", spec.name, placement.device, candidate, encoder.dimension, encoder.max_seq_length,
                        cosines.size, worst, placement.reason)
            return encoder
        failures.append(f"{candidate}: min cosine {worst:.5f}")
        logger.warning("probe parity failed dtype=%s min_cosine=%.5f", candidate, worst)
    raise ArtifactError(
        f"{root}: re-encoded flipmatch.json probes do not match the exported vectors (need cosine >= "
        f"{PARITY_MIN_COSINE}; {'; '.join(failures)}). The artifact and this loader disagree: re-export it, or "
        "check FLIPMATCH_DTYPE."
    )
