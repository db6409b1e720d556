"""What machine a results file was measured on: CPU model, flags, cores, Python and library versions."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The flags that decide which dtype and kernels are fast (the rest of /proc/cpuinfo's list is kept too).
KEY_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")


def describe(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, object]:
    try:
        lines = cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                 platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return {"cpu": model, "cores": os.cpu_count(), "key_flags": [f for f in KEY_FLAGS if f in flags],
            "flags": flags, "python": platform.python_version(), "platform": platform.platform()}


def label(info: dict[str, object]) -> str:
    """One line for a report: 'AMD EPYC 9R14, 2 cores, avx512_bf16 avx512_vnni'."""
    if "key_flags" not in info:
        return f"{info.get('cpu')}, {info.get('cores')} cores (flags not recorded)"
    flags = " ".join(info["key_flags"]) or "none of " + "/".join(KEY_FLAGS)  # type: ignore[arg-type]
    return f"{info.get('cpu')}, {info.get('cores')} cores, {flags}"
