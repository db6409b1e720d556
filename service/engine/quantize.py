"""int8 weights and activations for the CPU forward (FLIPMATCH_DTYPE=int8): SmoothQuant-style outlier migration,
per-output-channel weight scales, dynamic activation scales per token (or per tensor), int8 x int8 -> int32
matmuls (`torch._int_mm`).

Why not `quantize_dynamic`: one activation scale per tensor cannot cover SmolLM2's outlier channels (a few
hidden channels run ~100x the rest), so every other channel rounds to a handful of levels (min cosine 0.38-0.42
against fp32, issue 14). Smoothing divides each input channel by s_j = max|X_j|^alpha / max|W_j|^(1-alpha) and
multiplies the weight's column j by it (Xiao et al. 2023, Eq. 4), which moves the range into the weights where
per-channel scales absorb it; per-token scales then keep one outlier token from flattening the others.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class Int8Linear(nn.Module):
    """y = (x / s) W'^T + b with W' = W diag(s) quantized per output channel and x / s quantized on the fly."""

    def __init__(self, linear: nn.Linear, smooth: torch.Tensor | None, *, per_token: bool) -> None:
        super().__init__()
        weight = linear.weight.detach().float()  # (out, in)
        if smooth is not None:
            weight = weight * smooth  # column j times s_j
            self.register_buffer("inv_smooth", (1.0 / smooth).float())
        else:
            self.inv_smooth = None
        w_scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0  # (out,)
        self.register_buffer("qweight_t", (weight / w_scale[:, None]).round().clamp(-127, 127)
                             .to(torch.int8).t().contiguous())  # (in, out): the layout _int_mm wants
        self.register_buffer("w_scale", w_scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)
        self.per_token = per_token
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features).float()  # (N, in)
        if self.inv_smooth is not None:
            flat = flat * self.inv_smooth
        if self.per_token:
            a_scale = flat.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0  # (N, 1)
        else:
            a_scale = flat.abs().amax().clamp(min=1e-8) / 127.0
        quantized = (flat / a_scale).round_().clamp_(-127, 127).to(torch.int8)
        out = torch._int_mm(quantized, self.qweight_t).float() * a_scale * self.w_scale  # (N, out)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)


@torch.inference_mode()
def activation_absmax(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-input-channel max |x| of every Linear over the calibration batches (padding included: its rows are
    ordinary token activations, harmless for a max)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            def record(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor, name: str = name) -> None:
                peak = inputs[0].detach().float().abs().reshape(-1, inputs[0].shape[-1]).amax(dim=0)
                seen[name] = torch.maximum(seen[name], peak) if name in seen else peak
            hooks.append(module.register_forward_hook(record))
    try:
        for features in batches:
            model(**features)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def quantize_int8(model: nn.Module, features: dict[str, torch.Tensor], *, alpha: float | None = 0.5,
                  per_token: bool = True, keep_float: tuple[str, ...] = ()) -> nn.Module:
    """Replace every Linear (except names ending in `keep_float`) by an Int8Linear, in place. `alpha`: the
    SmoothQuant migration strength (None: no smoothing); statistics come from one forward of `features`."""
    peaks = activation_absmax(model, [features]) if alpha is not None else {}
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and not (keep_float and name.endswith(keep_float))]
    for name, linear in targets:
        smooth = None
        if alpha is not None and name in peaks:
            w_peak = linear.weight.detach().float().abs().amax(dim=0).clamp(min=1e-5)  # (in,)
            smooth = (peaks[name].clamp(min=1e-5) ** alpha / w_peak ** (1 - alpha)).clamp(min=1e-5)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, Int8Linear(linear, smooth,
                                                                                      per_token=per_token))
    return model
