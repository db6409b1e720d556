"""Device and precision choice for training: pure functions of what is available, testable without a GPU."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def choose_device(preference: str, cuda_available: bool) -> str:
    if preference not in {"auto", "cpu", "cuda"}:
        raise ValueError(f"run.device must be auto, cpu or cuda, got {preference!r}")
    if preference == "cuda" and not cuda_available:
        raise ValueError("run.device=cuda but no CUDA device is available (use auto or cpu)")
    if preference == "auto":
        return "cuda" if cuda_available else "cpu"
    return preference


def use_bf16(setting: str, device: str, cuda_bf16: bool, cpu_bf16: bool) -> bool:
    """bf16 autocast: 'on' forces, 'off' disables, 'auto' uses it where the hardware has native bf16
    (Ampere+ GPUs; CPUs with AVX-512 BF16 or AMX), where it measured ~2x faster per step than fp32 here."""
    if setting == "off":
        return False
    supported = cuda_bf16 if device == "cuda" else cpu_bf16
    if setting == "on":
        if not supported:
            raise ValueError(f"optim.bf16=on but {device} has no native bf16 support")
        return True
    return supported


def hardware_bf16(device: str) -> tuple[bool, bool]:
    """(cuda_bf16, cpu_bf16) as reported by torch on this machine."""
    cuda = device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return cuda, cpu


def bf16_is_faster(fp32_seconds: list[float], bf16_seconds: list[float], margin: float = 0.9) -> bool:
    """bf16 only when its median probe time beats fp32's by the margin: on some CPUs with the bf16 flag
    (e.g. Intel Xeon without AMX) bf16 matmuls are slower than fp32, so the flag alone is not evidence."""
    fp32, bf16 = sorted(fp32_seconds), sorted(bf16_seconds)
    return bf16[len(bf16) // 2] < margin * fp32[len(fp32) // 2]


def measure_bf16(step: Callable[[bool], None], repeats: int = 3) -> tuple[bool, dict[str, float]]:
    """Time `step(bf16)` alternately in fp32 and bf16 (after one warm-up each), return (use bf16, medians)."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for flag in (False, True):
        step(flag)
    for _ in range(repeats):
        for flag in (False, True):
            started = time.perf_counter()
            step(flag)
            times[flag].append(time.perf_counter() - started)
    medians = {"fp32_s": sorted(times[False])[repeats // 2], "bf16_s": sorted(times[True])[repeats // 2]}
    return bf16_is_faster(times[False], times[True]), medians


def resolve_bf16(setting: str, device: str, probe: Callable[[bool], None]) -> tuple[bool, dict[str, float | str]]:
    """The precision a run trains in. 'auto' on a CPU with native bf16 measures both on a probe step;
    CUDA with bf16 support uses it (always faster there). Returns (bf16, how it was decided)."""
    cuda_bf16, cpu_bf16 = hardware_bf16(device)
    supported = use_bf16(setting, device, cuda_bf16, cpu_bf16)
    if setting != "auto" or not supported or device != "cpu":
        return supported, {"decided_by": "setting" if setting != "auto" else "hardware"}
    chosen, medians = measure_bf16(probe)
    return chosen, {"decided_by": "measured", **medians}
