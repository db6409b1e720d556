"""The artifact's second reading: a yes/no match head over the same transformer (docs/artifact.md, match_head).

For a (query, candidate) pair: both texts cut to `part_tokens` tokens, put in the exported prompt, run through
the encoder's own transformer; the final hidden state at the last token times the (2, H) head gives
(logit_yes, logit_no), and the match probability is their softmax's first entry. The second service module
that imports torch; it reuses the Encoder's model and tokenizer, so the rerank costs no second copy of weights.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.errors import ArtifactError

logger = logging.getLogger(__name__)

MIN_SHARED_TOKENS = 4  # below this, one plain pass is as cheap as a cached prefix plus a second pass
PARITY_MAX_DIFF = 0.02  # probability difference allowed against the exporter's fp32 probes (bf16 serving drifts)


@dataclass(frozen=True)
class MatchHeadSpec:
    path: Path
    prompt: str
    part_tokens: int
    max_tokens: int
    probes: tuple[tuple[str, str, float], ...]


def read_match_head(root: Path) -> MatchHeadSpec | None:
    """The flipmatch.json `match_head` entry (format_version >= 2); None when the artifact has none."""
    card_path = root / "flipmatch.json"
    card: dict[str, Any] = json.loads(card_path.read_text()) if card_path.exists() else {}
    entry = card.get("match_head")
    if not entry:
        return None
    try:
        return MatchHeadSpec(
            path=root / entry["path"],
            prompt=str(entry["prompt"]),
            part_tokens=int(entry["part_tokens"]),
            max_tokens=int(entry["max_tokens"]),
            probes=tuple((p["query"], p["candidate"], float(p["probability"])) for p in entry.get("probes", [])),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ArtifactError(f"{card_path}: malformed match_head entry ({err!r}); see docs/artifact.md") from err


class MatchReranker:
    """(query, candidates) -> match probabilities. Not thread-safe with itself: call from one worker thread."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, spec: MatchHeadSpec, device: str) -> None:
        from safetensors.torch import load_file

        self.model, self.tokenizer, self.spec, self.device = model, tokenizer, spec, device
        weight = load_file(str(spec.path))["weight"]
        if weight.ndim != 2 or weight.shape[0] != 2:
            raise ArtifactError(f"{spec.path}: the match head must be a (2, hidden) matrix, got {tuple(weight.shape)}")
        self.weight = weight.to(device=device, dtype=torch.float32)
        # transformers >= 5.24 names the cache argument `cache` (`past_key_values` is deprecated there)
        self._cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def _cut(self, text: str) -> str:
        ids = self.tokenizer(text, add_special_tokens=False, truncation=True, max_length=self.spec.part_tokens,
                             verbose=False)["input_ids"]
        return self.tokenizer.decode(ids)

    @torch.inference_mode()
    def probabilities(self, query: str, candidates: Sequence[str]) -> np.ndarray:
        """(len(candidates),) float32 in [0, 1]: the head's probability that each candidate matches the query.

        Every prompt starts with the same instruction and query, so that shared run of tokens goes through the
        model once and the candidates continue from its key/value cache (on short FAQ texts most of a prompt's
        tokens are shared). The split is taken on token ids, so each prompt's tokens are exactly the full
        prompt's: the result equals the one-pass reading to float rounding (tests/contract/test_rerank.py).
        """
        if not candidates:
            return np.zeros(0, np.float32)
        cut_query = self._cut(query)
        prompts = [self.spec.prompt.format(query=cut_query, candidate=self._cut(c)) for c in candidates]
        ids = self.tokenizer(prompts, truncation=True, max_length=self.spec.max_tokens, verbose=False)["input_ids"]
        shared = _shared_prefix_length(ids)
        states = self._last_states(ids, shared if shared >= MIN_SHARED_TOKENS else 0)
        logits = states @ self.weight.T  # (N, 2): yes, no
        return torch.softmax(logits, dim=-1)[:, 0].cpu().numpy().astype(np.float32)

    def _last_states(self, ids: list[list[int]], shared: int) -> torch.Tensor:
        """(N, H) float32: the final hidden state at each prompt's last token; the first `shared` tokens (common
        to every prompt) run once, batch 1, and the rest continue from their cache."""
        past, positions = {}, None
        if shared:
            prefix = torch.tensor([ids[0][:shared]], device=self.device)
            cache = self.model(input_ids=prefix, use_cache=True).past_key_values
            cache.batch_repeat_interleave(len(ids))
            past = {self._cache_argument: cache}
        rests = [row[shared:] for row in ids]
        width = max(len(r) for r in rests)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rests], device=self.device)
        mask = torch.tensor([[1] * (shared + len(r)) + [0] * (width - len(r)) for r in rests], device=self.device)
        if shared:  # right padding: each continuation's positions follow the shared run
            positions = torch.arange(shared, shared + width, device=self.device).expand(len(ids), -1)
        hidden = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=shared > 0,
                            **past).last_hidden_state
        last = torch.tensor([len(r) - 1 for r in rests], device=self.device)
        return hidden[torch.arange(len(ids), device=self.device), last].float()

    def probe_difference(self) -> float:
        """Largest |probability - exporter's probability| over the flipmatch.json probes (0 with none)."""
        worst = 0.0
        for query, candidate, expected in self.spec.probes:
            worst = max(worst, abs(float(self.probabilities(query, [candidate])[0]) - expected))
        return worst


def _shared_prefix_length(ids: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own (the readout position)."""
    limit = min(len(row) for row in ids) - 1
    if len(ids) < 2:
        return 0  # one prompt: nothing to share
    shared = 0
    while shared < limit and all(row[shared] == ids[0][shared] for row in ids):
        shared += 1
    return shared


def load_reranker(encoder: Any) -> MatchReranker | None:
    """The encoder's artifact's match head, parity-checked; None when the artifact has no head (or the encoder is
    not a loaded artifact, e.g. a test's fake)."""
    if not hasattr(encoder, "spec") or not hasattr(encoder, "model"):
        return None
    spec = read_match_head(encoder.spec.root)
    if spec is None:
        return None
    reranker = MatchReranker(encoder.model, encoder.tokenizer, spec, encoder.device)
    diff = reranker.probe_difference()
    if diff > PARITY_MAX_DIFF:
        raise ArtifactError(f"{spec.path}: the match head's probe probabilities differ by {diff:.5f} from the "
                            f"exporter's (limit {PARITY_MAX_DIFF}); re-export, or serve with FLIPMATCH_DTYPE=float32")
    logger.info("match head loaded probes=%d max_probability_diff=%.2e", len(spec.probes), diff)
    return reranker
