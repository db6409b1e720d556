"""Export the distilled student as a plain sentence-transformers folder, then prove it numerically.

Transformer (LoRA deltas merged into the blocks) -> Pooling -> Dense(A, the readout) -> Normalize.
The LM head's LoRA is exported as the Dense layer, never merged: SmolLM2 ties its LM head to the input
embeddings, so merging a delta there would also change every input embedding.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from training.generative import PARITY_MAX_DIFF, reload_probabilities, write_match_head
from training.student import READOUT_MODULE, StudentEncoder

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: optional match_head (the decoder reading); version 1 folders read unchanged
PARITY_MIN_COSINE = 0.999
PROBE_TEXTS = [
    "card",
    "How do I activate my new card?",
    "I was charged twice for the same coffee this morning, can you refund one of the payments please?",
    "Is it safe to take ibuprofen while pregnant?",
    "My doctor prescribed azithromycin for five days and I still have a fever and a sore throat on day four, "
    "should I go back or wait until the course is finished before deciding anything else?",
    "Wie kann ich mein Konto schließen?",
]


class ParityError(RuntimeError):
    """The exported folder does not reproduce the training-time embeddings."""


def merged_backbone(student: StudentEncoder) -> nn.Module:
    """A copy of the base transformer with block LoRA merged in; the training student is left untouched."""
    peft_model = copy.deepcopy(student.model)
    causal_lm = peft_model.base_model.model
    head = getattr(causal_lm, READOUT_MODULE)
    setattr(causal_lm, READOUT_MODULE, head.base_layer)  # drop the readout LoRA before merging
    merged = peft_model.merge_and_unload()
    return merged.model  # the transformer without its LM head


def export_student(
    student: StudentEncoder,
    out_dir: str | Path,
    *,
    manifest: dict[str, Any],
    model_card: str,
    match_head: bool = False,
) -> Path:
    """Write the artifact folder (atomically: built beside, then renamed) and run the parity check.
    match_head: also write the yes/no head of the decoder reading (training/generative.py) and check it."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    student.eval()
    reference = student.encode(PROBE_TEXTS, batch_size=len(PROBE_TEXTS))  # fp32, adapters live

    backbone = merged_backbone(student)
    backbone.save_pretrained(tmp, safe_serialization=True)
    tokenizer = copy.deepcopy(student.tokenizer)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp)
    (tmp / "chat_template.jinja").unlink(missing_ok=True)

    readout = student.readout.weight.detach().float().cpu()  # (r, H)
    transformer = Transformer(str(tmp), max_seq_length=student.max_seq_length)
    modules = [
        transformer,
        Pooling(backbone.config.hidden_size, pooling_mode=student.pooling),
        Dense(readout.shape[1], readout.shape[0], bias=False, activation_function=nn.Identity(), init_weight=readout),
        Normalize(),
    ]
    SentenceTransformer(modules=modules, device="cpu").save(str(tmp))
    (tmp / "chat_template.jinja").unlink(missing_ok=True)

    full_manifest = {
        "format_version": FORMAT_VERSION,
        "embedding_dim": int(readout.shape[0]),
        "max_seq_length": student.max_seq_length,
        **manifest,
        "probes": [{"text": t, "vector": v.tolist()} for t, v in zip(PROBE_TEXTS, reference, strict=True)],
    }
    if match_head:
        full_manifest["match_head"] = write_match_head(student, tmp)
    (tmp / "flipmatch.json").write_text(json.dumps(full_manifest, indent=2))
    (tmp / "README.md").write_text(model_card)
    cosines = check_parity(tmp, PROBE_TEXTS, reference)
    logger.info("parity: min cosine %.6f over %d probes and 3 batch layouts", cosines.min(), len(PROBE_TEXTS))
    if match_head:
        check_head_parity(tmp, full_manifest["match_head"])
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def check_head_parity(folder: str | Path, entry: dict[str, Any]) -> None:
    """The exported head reproduces the training-time match probabilities (absolute difference)."""
    expected = np.array([p["probability"] for p in entry["probes"]])
    diff = np.abs(np.array(reload_probabilities(folder, entry)) - expected)
    if diff.max() > PARITY_MAX_DIFF:
        raise ParityError(f"exported match head differs from the training-time student by {diff.max():.5f}")
    logger.info("match head parity: max probability difference %.2e over %d probes", diff.max(), len(diff))


def check_parity(folder: str | Path, texts: list[str], reference: np.ndarray) -> np.ndarray:
    """Load with plain SentenceTransformer and compare: one batch, one text at a time (no padding),
    and reversed order in pairs (different padding). Raises ParityError below PARITY_MIN_COSINE."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    layouts = {
        "one batch": model.encode(texts, batch_size=len(texts), normalize_embeddings=True),
        "single": np.stack([model.encode([t], normalize_embeddings=True)[0] for t in texts]),
        "reversed pairs": model.encode(texts[::-1], batch_size=2, normalize_embeddings=True)[::-1],
    }
    worst = np.ones(len(texts))
    for name, vecs in layouts.items():
        cos = (vecs * reference).sum(axis=1)
        worst = np.minimum(worst, cos)
        if cos.min() < PARITY_MIN_COSINE:
            bad = texts[int(cos.argmin())][:60]
            raise ParityError(
                f"exported model differs from the training-time student ({name}): cosine {cos.min():.5f} "
                f"< {PARITY_MIN_COSINE} on {bad!r}"
            )
    return worst


def model_card(
    *,
    student_id: str,
    teacher_id: str,
    metrics: dict[str, Any],
    threshold: float,
    config: dict,
    training: dict | None = None,
) -> str:
    import yaml

    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()) if isinstance(v, float))
    schedule = (training or {}).get("schedule")
    precision = (training or {}).get("precision", {})
    trained = (
        f"Trained {schedule['steps_run']} steps of a planned {schedule['planned']} (configured "
        f"{schedule['configured']}); schedule completed: {'yes' if schedule['schedule_completed'] else 'no'}"
        f"{' (resized to fit optim.max_minutes)' if schedule['resized'] else ''}; precision: "
        f"{'bf16 autocast' if precision.get('bf16') else 'fp32'} ({precision.get('decided_by', 'n/a')})."
        if schedule
        else "Training schedule: not recorded."
    )
    # The merged weights are a derivative of the student's: its license travels with them.
    gemma = "gemma" in student_id.lower()
    license_line = "license: gemma\n" if gemma else ""
    terms = (
        "a Gemma model derivative under the Gemma Terms of Use (ai.google.dev/gemma/terms), prohibited-use policy "
        "included" if gemma else f"under the license of `{student_id}`"
    )
    return f"""---
{license_line}library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags: [flipmatch, flipped-knowledge-distillation, lora-merged]
---
# FlipMatch encoder

A decoder-only LM (`{student_id}`) distilled from a small fine-tuned encoder teacher (`{teacher_id}`)
with Flipping Knowledge Distillation (Li et al., ACL 2025): LoRA deltas merged into the blocks; the
embedding is the LM-head LoRA's A projection of the pooled final hidden state, then L2-normalised.
Its weights are the student's with the LoRA deltas merged: {terms}.

Load it with plain sentence-transformers (no chat template, the tokenizer appends EOS itself):

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("path/to/this/folder")
vectors = model.encode(["How do I activate my card?"])
```

**Match threshold** (F1-optimal cosine on the dev pairs): `{threshold:.4f}`

**Training:** {trained}

## Metrics

| metric | value |
|---|---|
{rows}

## Training config

```yaml
{yaml.safe_dump(config, sort_keys=False)}```
"""
