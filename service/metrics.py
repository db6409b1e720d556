"""Every Prometheus metric of the service, defined once, on a registry owned by one app instance.

Labels are bounded: routes are templates ("/v1/corpora/{name}/search"), corpora are validated names capped in
number (limits.max_corpora), outcomes and failure reasons are small fixed sets. No text ever becomes a label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics:
    """All metrics on a dedicated `CollectorRegistry`, so several apps (tests) can coexist in one process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "flipmatch_requests_total", "HTTP requests by route template.", ["route", "method", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "flipmatch_request_duration_seconds", "HTTP request latency.", ["route", "method"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge("flipmatch_queue_depth", "Texts waiting for a forward pass.", registry=r)
        self.queue_rejections = Counter(
            "flipmatch_queue_rejections_total", "Requests refused with 429 because the queue was full.", registry=r
        )
        self.batch_size = Histogram(
            "flipmatch_batch_size", "Texts per forward pass.", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "flipmatch_batch_tokens", "Tokens per forward pass, padding included (packed passes have none).",
            buckets=_TOKEN_BUCKETS, registry=r,
        )
        self.batch_failures = Counter(
            "flipmatch_batch_failures_total", "Forward passes that raised, by exception type.", ["reason"],
            registry=r,
        )
        self.dropped_texts = Counter(
            "flipmatch_dropped_texts_total", "Queued texts dropped before compute (client went away).",
            registry=r,
        )
        self.inference_duration = Histogram(
            "flipmatch_inference_duration_seconds", "Forward pass per batch.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.rerank_duration = Histogram(
            "flipmatch_rerank_duration_seconds", "Match-head rerank of one query's top candidates.", ["corpus"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.search_duration = Histogram(
            "flipmatch_search_duration_seconds", "Index search per request (embedding excluded).", ["corpus"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.corpus_vectors = Gauge("flipmatch_corpus_vectors", "Vectors in the served snapshot.", ["corpus"],
                                    registry=r)
        self.corpus_entries = Gauge("flipmatch_corpus_entries", "Entries in the served snapshot.", ["corpus"],
                                    registry=r)
        self.decisions = Counter(
            "flipmatch_decisions_total", "Search decisions.", ["corpus", "outcome"], registry=r
        )
        self.truncated_texts = Counter(
            "flipmatch_truncated_texts_total", "Texts truncated to the character or token limit.", registry=r
        )
        self.model_info = Gauge(
            "flipmatch_model_info", "The served model and how its dtype, threads per forward pass and concurrent "
            "passes (workers) were chosen (selection: requested or measured by the start-up calibration); packed: "
            "passes run unpadded; prepacked: linear weights in oneDNN's packed layout; processes: forward workers are "
            "forked child processes. Value is always 1.",
            ["model", "device", "dtype", "dimension", "threads", "workers", "packed", "prepacked", "processes",
             "selection"],
            registry=r,
        )
        self.cache_hits = Counter(
            "flipmatch_query_cache_hits_total", "Texts answered from the query embedding cache.", registry=r
        )
        self.cache_misses = Counter(
            "flipmatch_query_cache_misses_total", "Texts looked up in the query cache and computed.", registry=r
        )

        # Shared store (PostgreSQL) only: how far this replica's snapshots are behind the change sequence.
        self.store_applied_sequence = Gauge(
            "flipmatch_store_applied_sequence", "Last change-sequence number applied to this replica's snapshots.",
            registry=r)
        self.store_head_sequence = Gauge(
            "flipmatch_store_head_sequence", "Newest change-sequence number seen in the database.", registry=r)
        self.store_lag_changes = Gauge(
            "flipmatch_store_lag_changes", "Changes committed but not yet applied here (head - applied).", registry=r)
        self.store_lag_seconds = Gauge(
            "flipmatch_store_lag_seconds", "Age of the oldest change not yet applied here (0 when caught up).",
            registry=r)
        self.store_reachable = Gauge(
            "flipmatch_store_reachable", "1 when the last call to the corpus database succeeded, else 0.", registry=r)
        self.store_apply_delay = Histogram(
            "flipmatch_store_apply_delay_seconds", "Commit on another replica -> searchable here, per change.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.store_apply_failures = Counter(
            "flipmatch_store_apply_failures_total", "Failed attempts to apply other replicas' changes (retried).",
            registry=r)

    def set_corpus_size(self, corpus: str, *, entries: int, vectors: int) -> None:
        self.corpus_entries.labels(corpus).set(entries)
        self.corpus_vectors.labels(corpus).set(vectors)

    def forget_corpus(self, corpus: str) -> None:
        """Drop a deleted corpus's series so its label does not linger."""
        for family in (self.corpus_entries, self.corpus_vectors, self.search_duration, self.rerank_duration):
            try:
                family.remove(corpus)
            except KeyError:
                pass
        for outcome in ("answer", "clarify", "no_match"):
            try:
                self.decisions.remove(corpus, outcome)
            except KeyError:
                pass

    def render(self) -> bytes:
        return generate_latest(self.registry)
