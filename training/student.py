"""The student: a decoder-only causal LM with LoRA on its blocks and a LoRA readout on the LM head.

The embedding is pool(A . h) where h are the final hidden states and A the LM-head LoRA's down-projection
(r-dim): the LLM read as encoder-decoder. B (r -> vocab) is the decoder half and is not used to embed.
Pooling is linear, so pool(A . h) == A . pool(h): the export is Transformer -> Pooling -> Dense(A).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tokenizers.processors import TemplateProcessing
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from training.assets import resolve_student
from training.config import LoraSection, StudentConfig
from training.pooling import pool

logger = logging.getLogger(__name__)

READOUT_MODULE = "lm_head"


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Plain-text tokenizer that appends EOS itself, so every tool that tokenizes plain text sees it.

    sentence-transformers renders text through a chat template when one exists: we remove it. A BOS the
    tokenizer prepends stays first.
    """
    tokenizer.chat_template = None
    eos, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    if eos is None or eos_id is None:
        raise ValueError("the student tokenizer has no EOS token; last-token pooling needs one (use pooling=mean)")
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("the student needs a fast (tokenizers) tokenizer to append EOS in a post-processor")
    # Keep BOS where the tokenizer adds it (Gemma is trained with it first): its post-processor adds it without
    # setting `add_bos_token` (transformers 5), so ask the tokenizer itself, before the post-processor changes.
    adds_bos = getattr(tokenizer, "add_bos_token", False) or tokenizer("check")["input_ids"][:1] == [
        tokenizer.bos_token_id
    ]
    bos = tokenizer.bos_token if adds_bos and tokenizer.bos_token_id is not None else None
    prefix = f"{bos} " if bos else ""
    special = [(eos, eos_id)] + ([(bos, tokenizer.bos_token_id)] if bos else [])
    backend.post_processor = TemplateProcessing(
        single=f"{prefix}$A {eos}", pair=f"{prefix}$A {eos} $B {eos}", special_tokens=special
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = eos
    tokenizer.padding_side = "right"
    probe = tokenizer("check")["input_ids"]
    if probe[-1] != eos_id:
        raise ValueError(f"EOS was not appended by the tokenizer (ids {probe}); last-token pooling would be wrong")
    return tokenizer


def lora_config(lora: LoraSection, num_layers: int) -> LoraConfig:
    layers = None
    if lora.top_layers is not None:
        if not 0 < lora.top_layers <= num_layers:
            raise ValueError(f"lora.top_layers must be in 1..{num_layers}, got {lora.top_layers}")
        layers = list(range(num_layers - lora.top_layers, num_layers))
    # Block LoRA may be restricted to the top layers; the readout always sits on the LM head, so the
    # two are separate target sets: peft applies layers_to_transform only to modules inside layers.
    return LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=[*lora.targets, READOUT_MODULE],
        layers_to_transform=layers,
        rank_pattern={READOUT_MODULE: lora.readout_rank},
        alpha_pattern={READOUT_MODULE: 2.0 * lora.readout_rank},
    )


class StudentEncoder(nn.Module):
    """texts -> embeddings. `use_readout=False` gives the zero-shot baseline (pooled hidden states)."""

    def __init__(self, model: PeftModel, tokenizer: PreTrainedTokenizerBase, pooling: str, max_seq_length: int):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_seq_length = max_seq_length
        self.use_readout = True
        self.prefix = None  # a PrefixCache: forward passes then start at its depth (training and dev evals)

    @property
    def backbone(self) -> nn.Module:
        """The transformer without its LM head: the embedding path never computes vocabulary logits."""
        return self.model.base_model.model.model

    @property
    def readout(self) -> nn.Linear:
        return self.model.base_model.model.lm_head.lora_A["default"]

    def tokenize(self, texts: list[str], device: torch.device | str) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        )
        return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}

    @property
    def num_blocks(self) -> int:
        return len(self.backbone.layers)

    def run_blocks(
        self,
        start: int,
        stop: int,
        *,
        inputs: torch.Tensor | None = None,
        embeds: torch.Tensor | None = None,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Blocks [start, stop) from token ids (start must be 0) or from the hidden states entering `start`.
        The model's own forward does the work (rotary, causal mask, sliding windows), over a slice of its blocks;
        the final norm applies only when `stop` is the last block. (B, T, H)"""
        if (inputs is None) == (embeds is None) or (inputs is not None and start != 0):
            raise ValueError("run_blocks takes token ids from block 0, or hidden states from any block")
        with _block_slice(self.backbone, start, stop, final_norm=stop == self.num_blocks):
            out = self.backbone(input_ids=inputs, inputs_embeds=embeds, attention_mask=mask, use_cache=False)
            return out.last_hidden_state

    def head(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states -> pooled (B, H), or the readout's A projection (B, r)."""
        pooled = pool(hidden, attention_mask, self.pooling)
        if not self.use_readout:
            return pooled.float()
        return self.readout(pooled.to(self.readout.weight.dtype)).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return self.head(hidden, attention_mask)

    def forward_texts(self, texts: list[str], device: torch.device | str) -> torch.Tensor:
        """Embed texts, starting from the prefix cache when one is attached. (N, r) in input order."""
        if self.prefix is None:
            return self(**self.tokenize(texts, device))
        hidden, mask = self.prefix.batch(texts, device)
        hidden = hidden.to(self.readout.weight.dtype)
        top = self.run_blocks(self.prefix.depth, self.num_blocks, embeds=hidden, mask=mask)
        return self.head(top, mask)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64, autocast_bf16: bool = False) -> np.ndarray:
        """L2-normalised float32 embeddings; texts sorted by length so padding stays small."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 0), dtype=np.float32)
        chunks = []
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
                vecs = self.forward_texts([texts[i] for i in idx], device)
            chunks.append(nn.functional.normalize(vecs.float(), dim=-1).cpu().numpy())
        if chunks:
            stacked = np.concatenate(chunks)
            out = np.empty_like(stacked)
            out[order] = stacked
        self.train(was_training)
        return out


@contextmanager
def _block_slice(backbone: nn.Module, start: int, stop: int, final_norm: bool) -> Iterator[None]:
    """Temporarily make the backbone's forward run blocks [start, stop) only (and skip the final norm unless
    asked): HF decoders loop over `self.layers[: config.num_hidden_layers]`."""
    layers, config, norm = backbone.layers, backbone.config, backbone.norm
    count, types = config.num_hidden_layers, getattr(config, "layer_types", None)
    backbone.layers = layers[start:stop]
    config.num_hidden_layers = stop - start
    if types:
        config.layer_types = types[start:stop]
    if not final_norm:
        backbone.norm = nn.Identity()
    try:
        yield
    finally:
        backbone.layers, backbone.norm, config.num_hidden_layers = layers, norm, count
        if types:
            config.layer_types = types


def truncate_layers(causal_lm: nn.Module, num_layers: int) -> None:
    """Read the embedding after block N: the upper blocks are dropped (and never computed). The final norm
    still applies, so the export stays a stock transformer with a smaller num_hidden_layers."""
    total = causal_lm.config.num_hidden_layers
    if not 0 < num_layers <= total:
        raise ValueError(f"student.num_layers must be in 1..{total}, got {num_layers}")
    causal_lm.model.layers = causal_lm.model.layers[:num_layers]
    causal_lm.config.num_hidden_layers = num_layers
    if getattr(causal_lm.config, "layer_types", None):
        causal_lm.config.layer_types = causal_lm.config.layer_types[:num_layers]


def load_student(cfg: StudentConfig, lora: LoraSection, device: torch.device | str = "cpu") -> StudentEncoder:
    path = resolve_student(cfg.model)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path))
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if cfg.num_layers is not None:
        truncate_layers(base, cfg.num_layers)
    if cfg.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    with warnings.catch_warnings():
        # peft warns that the tied LM head carries an adapter; we never merge it (it exports as Dense).
        warnings.filterwarnings("ignore", message=".*tie_word_embeddings.*")
        model = get_peft_model(base, lora_config(lora, base.config.num_hidden_layers))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info(
        "student %s: %.2fM trainable of %.1fM (%.2f%%)",
        cfg.model,
        trainable / 1e6,
        total / 1e6,
        100 * trainable / total,
    )
    return StudentEncoder(model, tokenizer, cfg.pooling, cfg.max_seq_length).to(device)
