"""Device and dtype choice, every branch, without a GPU; the measured CPU choice from fake timings."""

from __future__ import annotations

import os

import pytest

from service.engine.device import (
    Candidate,
    Measurement,
    choose,
    cpu_candidates,
    cpu_flags,
    cpu_has_fast_bf16,
    fit_cost_model,
    select,
)
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
    ("cpu", "float16", True, True, "float16 on a CPU without AVX512-FP16"),
    ("cuda", "int8", True, True, "int8 is a CPU option"),
    ("cuda", "bfloat16", True, False, "does not support bfloat16"),
    ("tpu", "auto", False, False, "unknown device"),
    ("auto", "int4", False, False, "unknown dtype"),
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


def test_explicit_float16_on_cpu_needs_avx512_fp16():
    assert choose("cpu", "float16", cuda_available=False, cpu_fp16_native=True).dtypes == ("float16",)


def test_cpu_flags_are_read_as_a_set(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512_fp16 avx512_bf16\n")
    assert cpu_flags(info) == frozenset({"fpu", "avx512_fp16", "avx512_bf16"})
    assert cpu_flags(tmp_path / "missing") == frozenset()


# -- the measured choice (issue 14): candidates, selection, cost model, all from fake timings --

SHAPES = ((1, 12), (8, 16))


def timing(dtype: str, threads: int, lone_ms: float, batch_ms: float, cosine: float = 1.0) -> Measurement:
    return Measurement(Candidate(dtype, threads), SHAPES, (lone_ms / 1000, batch_ms / 1000), cosine)


def test_candidates_cover_dtypes_and_thread_counts():
    found = cpu_candidates(dtype="auto", threads=None, cores=2, cpu_flags=frozenset({"avx512_bf16"}))
    # One all-core pass, or one 1-thread pass per core running at once.
    assert [str(c) for c in found] == ["float32/1tx2", "float32/2t", "bfloat16/1tx2", "bfloat16/2t"]


def test_fp16_is_a_candidate_only_with_avx512_fp16():
    found = cpu_candidates(dtype="auto", threads=None, cores=1, cpu_flags=frozenset({"avx512_fp16"}))
    assert [str(c) for c in found] == ["float32/1t", "bfloat16/1t", "float16/1t"]


def test_explicit_settings_narrow_the_candidates():
    assert cpu_candidates(dtype="bfloat16", threads=None, cores=4, cpu_flags=frozenset()) == [
        Candidate("bfloat16", 1, 4), Candidate("bfloat16", 4, 1)]
    assert cpu_candidates(dtype="auto", threads=2, cores=4, cpu_flags=frozenset()) == [
        Candidate("float32", 2, 2), Candidate("bfloat16", 2, 2)]
    assert cpu_candidates(dtype="float32", threads=1, cores=4, cpu_flags=frozenset()) == [Candidate("float32", 1, 4)]
    assert cpu_candidates(dtype="float32", threads=1, cores=4, cpu_flags=frozenset(), workers=1) == [
        Candidate("float32", 1, 1)]


def test_int8_is_opt_in_and_joins_the_float_candidates():
    found = cpu_candidates(dtype="int8", threads=1, cores=2, cpu_flags=frozenset())
    assert [c.dtype for c in found] == ["float32", "bfloat16", "int8"]


def test_bf16_slower_than_fp32_gives_fp32():
    """The Xeon of issue 14: bf16 flags present, bf16 half the speed."""
    choice = select([timing("float32", 1, 20, 150), timing("float32", 2, 12, 76),
                     timing("bfloat16", 1, 35, 300), timing("bfloat16", 2, 22, 160, cosine=0.9993)])
    assert choice.candidate == Candidate("float32", 2)
    assert "float32/2t" in choice.reason


def test_bf16_faster_than_fp32_gives_bf16():
    """The EPYC of the docs: bf16 about twice as fast."""
    choice = select([timing("float32", 1, 30, 300), timing("bfloat16", 1, 18, 140, cosine=0.9992)])
    assert choice.candidate == Candidate("bfloat16", 1)


def test_a_faster_candidate_that_fails_parity_is_never_chosen():
    choice = select([timing("float32", 1, 30, 300), timing("bfloat16", 1, 10, 100, cosine=0.985),
                     timing("int8", 1, 5, 50, cosine=0.42)])
    assert choice.candidate == Candidate("float32", 1)
    assert "failed parity: bfloat16/1t, int8/1t" in choice.reason


def test_int8_wins_when_it_keeps_its_own_parity_bar():
    choice = select([timing("float32", 1, 30, 300), timing("int8", 1, 10, 100, cosine=0.995)])
    assert choice.candidate.dtype == "int8"


def test_near_ties_go_to_exact_arithmetic_then_the_faster_lone_question():
    assert select([timing("float32", 1, 30, 300), timing("bfloat16", 1, 29, 290, cosine=0.9995)],
                  margin=0.05).candidate == Candidate("float32", 1)
    assert select([timing("float32", 1, 30, 300), timing("float32", 2, 20, 292)]).candidate == Candidate("float32", 2)
    assert select([timing("float32", 1, 20, 300), timing("float32", 2, 30, 292)]).candidate == Candidate("float32", 1)
    assert select([timing("float32", 1, 30, 300), timing("float32", 2, 20, 200)]).candidate == Candidate("float32", 2)


def test_throughput_under_load_outweighs_a_faster_lone_question():
    """Machine A (2-core EPYC, bf16): one 1-thread pass per core against one 2-thread pass. The 2-thread pass
    answers a lone question sooner; the two 1-thread passes serve more texts per second."""
    one_per_core = Measurement(Candidate("bfloat16", 1, 2), SHAPES, (0.0287, 0.0564), 0.9999)
    all_cores = Measurement(Candidate("bfloat16", 2, 1), SHAPES, (0.0170, 0.0620), 0.9999)
    choice = select([one_per_core, all_cores])
    assert choice.candidate == Candidate("bfloat16", 1, 2)
    assert "bfloat16/1tx2" in choice.reason and "56.4 ms per batch pass under load" in choice.reason


def test_nothing_passing_is_an_error():
    with pytest.raises(ConfigError, match="no configuration reproduced"):
        select([timing("float32", 1, 30, 300, cosine=0.5)])


def test_cost_model_fit_recovers_fixed_and_per_token_cost():
    # 20 ms fixed + 0.5 ms per padded token, exactly.
    shapes = [(1, 12), (8, 16), (4, 10)]
    seconds = [(20 + 0.5 * c * w) / 1000 for c, w in shapes]
    model = fit_cost_model(shapes, seconds)
    assert model is not None
    assert model.fixed_s == pytest.approx(0.020)
    assert model.per_token_s == pytest.approx(0.0005)
    assert model.overhead_tokens == pytest.approx(40.0)


def test_cost_model_refuses_what_timings_cannot_support():
    assert fit_cost_model([(8, 16), (8, 16)], [0.1, 0.12]) is None  # one size only
    assert fit_cost_model([(1, 12), (8, 16)], [0.2, 0.1]) is None  # bigger batch faster: noise


def test_the_choice_carries_the_winners_cost_model():
    choice = select([timing("float32", 1, 26, 84), timing("bfloat16", 1, 40, 200)])
    assert choice.cost_model is not None
    # (12 tok, 26 ms) and (128 tok, 84 ms): 0.5 ms per token, 20 ms fixed -> 40 tokens.
    assert choice.cost_model.overhead_tokens == pytest.approx(40.0)


def test_reduced_precision_is_held_to_the_accuracy_bar_and_float32_to_the_parity_bar():
    """bf16 at the default model's probe cosine (0.9987, Banking77 R@1 -0.0007) may serve; an fp32 load that far
    off the exporter's vectors is a broken load."""
    assert timing("bfloat16", 1, 18, 140, cosine=0.9987).passes
    assert not timing("float32", 1, 18, 140, cosine=0.9987).passes
    choice = select([timing("float32", 1, 30, 300), timing("bfloat16", 1, 18, 140, cosine=0.9987)])
    assert choice.candidate == Candidate("bfloat16", 1)


def test_calibration_drops_a_dtype_that_moves_the_match_head():
    """bf16 held the rerank preset's embeddings (cosine 0.9987) but moved its match head by 0.049 (> 0.02):
    the reranker shares the encoder's weights, so bf16 must leave the candidates; float32 is never dropped."""
    from service.engine.encoder import keep_head_parity

    asked: list[str] = []

    def difference(dtype: str) -> float:
        asked.append(dtype)
        return {"bfloat16": 0.049, "int8": 0.01}[dtype]

    candidates = [Candidate("float32", 1), Candidate("float32", 2), Candidate("bfloat16", 1),
                  Candidate("bfloat16", 2), Candidate("int8", 1)]
    kept = keep_head_parity(candidates, difference)
    assert kept == [Candidate("float32", 1), Candidate("float32", 2), Candidate("int8", 1)]
    assert asked == ["bfloat16", "int8"]  # once per dtype, never for float32


def test_available_cores_honours_a_container_cpu_quota(tmp_path):
    from service.engine.device import available_cores

    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")  # no quota
    assert available_cores(cpu_max) == affinity
    cpu_max.write_text("100000 100000\n")  # cpus: 1
    assert available_cores(cpu_max) == 1
    cpu_max.write_text("150000 100000\n")  # cpus: 1.5 -> 2 workers at most, never above the affinity mask
    assert available_cores(cpu_max) == min(2, affinity)
    assert available_cores(tmp_path / "absent") == affinity
