"""Prepacked linear layers for the CPU forward: each nn.Linear's weight is reordered once, at load, into oneDNN's
blocked layout, and every pass calls oneDNN's linear on it directly (what torch.compile's CPU freezing does, here
without a compiler).

Why: measured, not derived. On machine A (AMD EPYC, bf16) `bench.layout_bench` ran a lone Banking77 question 1.38x
faster prepacked on one thread, and 12-question passes 1.06x (bench/results/layout.json). Our reading:
eager `F.linear` prepares the weight for the GEMM on every call, which matters most when a pass is a few dozen
tokens. The arithmetic is the same (cosine 1.0 against eager); the encoder still checks it at load and puts the
eager modules back where a CPU's oneDNN rejects the dtype or differs.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

PREPACK_DTYPES = (torch.float32, torch.bfloat16)


class PrepackedLinear(nn.Module):
    """Inference-only stand-in for an nn.Linear: the same function, the weight held in oneDNN's packed layout."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach()
        # The second argument is the expected rows per call, a hint for oneDNN's kernel choice; measured: the same
        # speed with 1 or the served 15-180 rows.
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


Swapped = list[tuple[nn.Module, str, nn.Linear]]


def prepack_linears(model: nn.Module) -> Swapped:
    """Replace every float32/bf16 nn.Linear in `model` with a PrepackedLinear, in place. Returns what was replaced,
    so `restore` can undo it. Raises if this torch build or CPU cannot pack (the model is left as it was)."""
    if not torch.backends.mkldnn.is_available():
        raise RuntimeError("this torch build has no oneDNN (mkldnn)")
    swapped: Swapped = []
    try:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear and child.weight.dtype in PREPACK_DTYPES:
                    setattr(parent, name, PrepackedLinear(child))
                    swapped.append((parent, name, child))
    except Exception:
        restore(swapped)
        raise
    return swapped


def restore(swapped: Swapped) -> None:
    """Put the original nn.Linear modules back."""
    for parent, name, linear in swapped:
        setattr(parent, name, linear)
