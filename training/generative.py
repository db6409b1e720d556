"""The decoder reading of the student: a yes/no match prompt answered through the LM head with its LoRA B.

For a (query, candidate) pair the prompt is MATCH_PROMPT with each text cut to `part_tokens` tokens; the
tokenizer appends EOS, and the final hidden state h at that EOS is read through the LM head restricted to
the " yes" and " no" tokens: logits = W[yes, no] h + s * B[yes, no] (A h), where W is the (tied) LM head,
A the readout (the embedding) and B the decoder half of the LM-head LoRA. The match probability is
softmax(logits)[yes] = sigmoid(z), z = logit_yes - logit_no. Only the two rows matter, so the head exports
as one (2, H) matrix (training/export.py) and the service never computes a vocabulary-sized product.
"""

from __future__ import annotations

import torch
from torch import nn

from training.data.pairs import Pair
from training.pooling import pool

MATCH_PROMPT = "Do these two texts ask the same thing? Text A: {query} Text B: {candidate} Answer yes or no:"
ANSWER_TOKENS = (" yes", " no")


def answer_token_ids(tokenizer) -> list[int]:
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ANSWER_TOKENS]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"the student tokenizer splits {ANSWER_TOKENS} into several tokens ({ids})")
    return [i[0] for i in ids]


def match_prompts(tokenizer, pairs: list[tuple[str, str]], part_tokens: int) -> list[str]:
    """Each text cut to part_tokens tokens first, so truncation never removes the question at the end."""

    def cut(text: str) -> str:
        ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=part_tokens)["input_ids"]
        return tokenizer.decode(ids)

    return [MATCH_PROMPT.format(query=cut(q), candidate=cut(c)) for q, c in pairs]


def head_weight(student) -> torch.Tensor:
    """The effective (2, H) yes/no head: W[yes, no] + s * B[yes, no] @ A (what the export writes)."""
    lm = student.model.base_model.model.lm_head
    ids = answer_token_ids(student.tokenizer)
    a, b = lm.lora_A["default"].weight, lm.lora_B["default"].weight[ids]  # (r, H), (2, r)
    return lm.base_layer.weight[ids] + lm.scaling["default"] * (b @ a)


def match_logits(student, pairs: list[tuple[str, str]], device: torch.device | str) -> torch.Tensor:
    """z = logit_yes - logit_no per pair (N,), differentiable in the block LoRA, A and B. Runs the whole
    student (prompts are not in the prefix cache: they are new texts every step)."""
    prompts = match_prompts(student.tokenizer, pairs, student.max_seq_length)
    batch = student.tokenizer(
        prompts, padding=True, truncation=True, max_length=prompt_tokens(student.max_seq_length), return_tensors="pt"
    )
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    hidden = student.run_blocks(0, student.num_blocks, inputs=ids, mask=mask)  # (N, T, H)
    last = pool(hidden, mask, "lasttoken")  # (N, H): the EOS state
    weight = head_weight(student)
    logits = last.to(weight.dtype) @ weight.T  # (N, 2)
    return (logits[:, 0] - logits[:, 1]).float()


def prompt_tokens(max_seq_length: int) -> int:
    """Token budget of a whole prompt: two cut texts plus the template's ~25 tokens."""
    return 2 * max_seq_length + 32


class MatchLabelLoss(nn.Module):
    """Binary cross-entropy of the yes/no answer against the gold label: the 2-way softmax over (yes, no)."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.float())


def generative_loss(
    student, pairs: list[Pair], device: torch.device | str, limit: int | None = None
) -> torch.Tensor | None:
    """The label loss over a batch's gold-labelled pairs (the unlabelled source has none), the first `limit` of
    them when set; None when none."""
    labelled = [p for p in pairs if p.label in (0, 1)][:limit]
    if not labelled:
        return None
    logits = match_logits(student, [(p.text_a, p.text_b) for p in labelled], device)
    return MatchLabelLoss()(logits, torch.tensor([p.label for p in labelled], device=logits.device))


@torch.no_grad()
def match_probabilities(student, pairs: list[tuple[str, str]], batch_size: int = 32) -> list[float]:
    was_training = student.training
    student.eval()
    device = next(student.parameters()).device
    out: list[float] = []
    for start in range(0, len(pairs), batch_size):
        out += torch.sigmoid(match_logits(student, pairs[start : start + batch_size], device)).tolist()
    student.train(was_training)
    return out


HEAD_DIR = "match_head"
PROBE_PAIRS = [
    ("How do I activate my new card?", "How can I start using the card I just received?"),
    ("How do I activate my new card?", "What is the exchange rate for euros today?"),
    ("Is it safe to take ibuprofen with alcohol?", "Can I drink while taking painkillers?"),
    ("What are the symptoms of anemia?", "Anemia can cause tiredness, pale skin and shortness of breath."),
]
PARITY_MAX_DIFF = 1e-3  # absolute difference in match probability, export vs training-time student


def write_match_head(student, folder) -> dict:
    """Write the (2, H) head beside the sentence-transformers modules (not in modules.json, so a plain
    SentenceTransformer(folder) never sees it) and return its flipmatch.json entry with probe probabilities."""
    from pathlib import Path

    from safetensors.torch import save_file

    folder = Path(folder)
    (folder / HEAD_DIR).mkdir(exist_ok=True)
    weight = head_weight(student).detach().float().cpu().contiguous()
    save_file({"weight": weight}, str(folder / HEAD_DIR / "model.safetensors"))
    probabilities = match_probabilities(student, PROBE_PAIRS)
    return {
        "path": f"{HEAD_DIR}/model.safetensors",
        "prompt": MATCH_PROMPT,
        "part_tokens": student.max_seq_length,
        "max_tokens": prompt_tokens(student.max_seq_length),
        "answers": list(ANSWER_TOKENS),
        "readout": "final hidden state at the last token (the EOS the tokenizer appends), times weight.T: "
        "(logit_yes, logit_no); probability = softmax(...)[0]",
        "probes": [
            {"query": q, "candidate": c, "probability": p}
            for (q, c), p in zip(PROBE_PAIRS, probabilities, strict=True)
        ],
    }


@torch.no_grad()
def reload_probabilities(folder, entry: dict) -> list[float]:
    """Probabilities from the exported folder alone (the merged transformer + the head file), for the
    export's parity check: what any reader of docs/artifact.md computes."""
    from pathlib import Path

    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    weight = load_file(str(folder / entry["path"]))["weight"]
    pairs = [(p["query"], p["candidate"]) for p in entry["probes"]]
    prompts = match_prompts(tokenizer, pairs, entry["part_tokens"])
    batch = tokenizer(prompts, padding=True, truncation=True, max_length=entry["max_tokens"], return_tensors="pt")
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    logits = pool(hidden, batch["attention_mask"], "lasttoken") @ weight.T
    return torch.softmax(logits, dim=-1)[:, 0].tolist()
