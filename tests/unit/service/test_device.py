"""Device and dtype choice, every branch, without a GPU."""

from __future__ import annotations

import pytest

from service.engine.device import choose, cpu_has_fast_bf16
from service.errors import ConfigError


def test_auto_prefers_cuda_half_precision_with_fallbacks():
    placement = choose("auto", "auto", cuda_available=True, cuda_bf16_supported=True)
    assert placement.device == "cuda"
    assert placement.dtypes == ("float16", "bfloat16", "float32")


def test_auto_on_a_gpu_without_bf16_skips_it():
    assert choose("auto", "auto", cuda_available=True).dtypes == ("float16", "float32")


def test_auto_without_cuda_is_cpu_float32():
    placement = choose("auto", "auto", cuda_available=False)
    assert (placement.device, placement.dtypes) == ("cpu", ("float32",))


def test_cpu_with_native_bf16_tries_bfloat16_first():
    assert choose("cpu", "auto", cuda_available=True, cpu_bf16_fast=True).dtypes == ("bfloat16", "float32")


def test_explicit_dtype_has_no_fallback():
    placement = choose("cuda", "bfloat16", cuda_available=True, cuda_bf16_supported=True)
    assert (placement.device, placement.dtypes) == ("cuda", ("bfloat16",))


def test_cpu_preference_wins_over_an_available_gpu():
    assert choose("cpu", "auto", cuda_available=True).device == "cpu"


@pytest.mark.parametrize(("device", "dtype", "cuda", "bf16", "message"), [
    ("cuda", "auto", False, False, "no CUDA device"),
    ("cpu", "float16", True, True, "float16 on CPU"),
    ("cuda", "bfloat16", True, False, "does not support bfloat16"),
    ("tpu", "auto", False, False, "unknown device"),
    ("auto", "int8", False, False, "unknown dtype"),
])
def test_impossible_choices_are_refused(device, dtype, cuda, bf16, message):
    with pytest.raises(ConfigError, match=message):
        choose(device, dtype, cuda_available=cuda, cuda_bf16_supported=bf16)


def test_bf16_detection_reads_cpu_flags(tmp_path):
    cases = {"fpu sse avx512f amx_bf16 amx_tile": True, "fpu sse avx512_bf16": True, "fpu sse avx2 avx512f": False}
    for flags, expected in cases.items():
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert cpu_has_fast_bf16(info) is expected, flags
    assert cpu_has_fast_bf16(tmp_path / "missing") is False
