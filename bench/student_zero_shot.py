"""Zero-shot table of a student at several readout depths, mean and last-token pooling, on the config's dev sets.

The same numbers as `flipmatch eval --tasks training --model 'student:<model>@<pooling>:<blocks>'` (a model cut
after block N keeps its final norm: norm(h_N)), but one forward through the blocks serves every cut and both
poolings, so the whole table costs one full pass over the dev texts (fp32):

    .venv/bin/python -m bench.student_zero_shot --model packaged:gemma3-270m --blocks 18 9 6
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import torch

from training.config import LoraSection, StudentConfig, load_config
from training.pooling import pool
from training.student import StudentEncoder, load_student

POOLINGS = ("lasttoken", "mean")


class CutEmbedder:
    """text -> pooled vector after each requested cut, for both poolings; computed once per text."""

    def __init__(self, student: StudentEncoder, cuts: list[int], batch_size: int = 32):
        self.student, self.cuts, self.batch_size = student, sorted(set(cuts)), batch_size
        self.vectors: dict[tuple[int, str], dict[str, np.ndarray]] = {(c, p): {} for c in self.cuts for p in POOLINGS}

    @torch.no_grad()
    def _fill(self, texts: list[str]) -> None:
        student, last = self.student, self.student.num_blocks
        missing = sorted({t for t in texts if t not in self.vectors[(self.cuts[0], POOLINGS[0])]}, key=len)
        for start in range(0, len(missing), self.batch_size):
            part = missing[start : start + self.batch_size]
            batch = student.tokenize(part, "cpu")
            mask, hidden, depth = batch["attention_mask"], None, 0
            for cut in self.cuts:
                if hidden is None:
                    hidden = student.run_blocks(0, cut, inputs=batch["input_ids"], mask=mask)
                else:
                    hidden = student.run_blocks(depth, cut, embeds=hidden, mask=mask)
                depth = cut
                # run_blocks applies the final norm only at the last block; a truncated model applies it at its cut
                normed = hidden if cut == last else student.backbone.norm(hidden)
                for pooling in POOLINGS:
                    vecs = torch.nn.functional.normalize(pool(normed, mask, pooling).float(), dim=-1).numpy()
                    self.vectors[(cut, pooling)].update(zip(part, vecs, strict=True))

    def encoder(self, cut: int, pooling: str):
        def encode(texts: list[str]) -> np.ndarray:
            self._fill(texts)
            store = self.vectors[(cut, pooling)]
            return np.stack([store[t] for t in texts]) if texts else np.zeros((0, 1), np.float32)

        return encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="student spec, e.g. packaged:gemma3-270m")
    parser.add_argument("--blocks", type=int, nargs="+", required=True, help="cuts: blocks kept (the full depth too)")
    parser.add_argument("--config", default="training/configs/default.yaml")
    parser.add_argument("--out", help="also write the table as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from training.data.sources import load_task_data
    from training.evaluate.evaluators import evaluate_split

    cfg = load_config(args.config)
    # The dev sets are split before any mining (the teacher only picks training negatives), so a constant miner
    # and a few training anchors leave them exactly as `flipmatch eval` builds them, without its teacher pass.
    data = load_task_data(cfg.data.model_copy(update={"max_train_anchors": 16}),
                          lambda texts: np.zeros((len(texts), 1), np.float32))
    # The zero-shot spec's defaults (training/evaluate/encoders.py): StudentConfig's max_seq_length, no adapters.
    student = load_student(StudentConfig(model=args.model, num_layers=max(args.blocks)), LoraSection())
    student.eval()
    embedder = CutEmbedder(student, args.blocks)
    rows = []
    for cut in sorted(set(args.blocks), reverse=True):
        for pooling in POOLINGS:
            metrics = evaluate_split(embedder.encoder(cut, pooling), data.dev, data.test, "dev")
            rows.append({"model": args.model, "blocks": cut, "pooling": pooling, **metrics})
            logging.info("%s", rows[-1])
    print("| blocks kept | pooling | Banking77 R@1 | MQP F1 | MQP ROC-AUC | MedQuAD q->a R@1 | RQE F1 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['blocks']} | {'last token' if row['pooling'] == 'lasttoken' else 'mean'} | "
              f"{row.get('banking77/r@1', float('nan')):.3f} | {row.get('mqp/f1', float('nan')):.3f} | "
              f"{row.get('mqp/roc_auc', float('nan')):.3f} | {row.get('medquad/r@1', float('nan')):.3f} | "
              f"{row.get('rqe/f1', float('nan')):.3f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
