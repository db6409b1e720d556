"""The calibration pool and the evaluation list of off-topic questions stay apart (calibration never sees the
questions it is judged on) and each has the size and spread it claims."""

from __future__ import annotations

from service.corpus.calibrator import POOL_FILE, load_pool
from tests.fixtures.offtopic_questions import CHIT_CHAT, NONSENSE, OFFTOPIC, OTHER_DOMAINS


def norm(text: str) -> str:
    words = " ".join(text.lower().split())
    return words.rstrip("?!.") or words  # "???" stays itself


def test_pool_has_a_documented_source_and_license():
    header = [line for line in POOL_FILE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert any("Source:" in line for line in header) and any("License:" in line for line in header)
    pool = load_pool()
    assert len(pool) >= 250 and len({norm(q) for q in pool}) == len(pool)


def test_the_evaluation_list_is_disjoint_from_the_pool_and_spread():
    pool = {norm(q) for q in load_pool()}
    assert not pool & {norm(q) for q in OFFTOPIC}
    assert len(OFFTOPIC) >= 100 and len({norm(q) for q in OFFTOPIC}) == len(OFFTOPIC)
    assert min(len(CHIT_CHAT), len(OTHER_DOMAINS), len(NONSENSE)) >= 25
