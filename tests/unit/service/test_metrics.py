"""Metrics: the contract names, one registry per instance, bounded labels."""

from __future__ import annotations

from service.metrics import Metrics

CONTRACT = {
    "flipmatch_requests_total", "flipmatch_request_duration_seconds", "flipmatch_queue_depth",
    "flipmatch_queue_rejections_total", "flipmatch_batch_size", "flipmatch_batch_tokens",
    "flipmatch_inference_duration_seconds", "flipmatch_search_duration_seconds", "flipmatch_corpus_vectors",
    "flipmatch_corpus_entries", "flipmatch_decisions_total", "flipmatch_truncated_texts_total",
    "flipmatch_model_info",
}


def exposed(metrics: Metrics) -> set[str]:
    names = set()
    for line in metrics.render().decode().splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name + ("_total" if kind == "counter" and not name.endswith("_total") else ""))
    return names


def test_contract_names_are_exposed():
    assert CONTRACT <= exposed(Metrics())


def test_two_instances_do_not_share_a_registry():
    a, b = Metrics(), Metrics()
    a.queue_rejections.inc()
    assert b"flipmatch_queue_rejections_total 1.0" in a.render()
    assert b"flipmatch_queue_rejections_total 0.0" in b.render()


def test_forgetting_a_corpus_drops_its_series():
    m = Metrics()
    m.set_corpus_size("faq", entries=3, vectors=5)
    m.decisions.labels("faq", "answer").inc()
    m.search_duration.labels("faq").observe(0.01)
    m.forget_corpus("faq")
    m.forget_corpus("never-existed")
    assert b'corpus="faq"' not in m.render()
