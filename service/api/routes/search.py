"""POST /v1/corpora/{name}/search: FAQ retrieval with an answer / clarify / no_match decision per query."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request

from service.api.deps import CorporaDep, EngineDep, QueryKey, SettingsDep, StateDep, check_count, until_disconnect
from service.api.routes.paths import CorpusName
from service.api.schemas.common import ERROR_RESPONSES, Usage
from service.api.schemas.search import QueryResult, SearchCandidate, SearchRequest, SearchResponse
from service.corpus.decision import clarify_options, decide
from service.corpus.rerank import MATCH_PROBABILITY_THRESHOLD, rerank
from service.errors import InvalidInput

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/corpora/{name}/search", response_model=SearchResponse, responses=ERROR_RESPONSES,
             dependencies=[QueryKey])
async def search_corpus(name: CorpusName, body: SearchRequest, request: Request, engine: EngineDep,
                        corpora: CorporaDep, settings: SettingsDep, state: StateDep) -> SearchResponse:
    """Find the entries closest to each query. Each candidate is a distinct entry scored by its best-matching
    question or alternate. The decision uses the corpus's answer_threshold and clarify_margin. With the corpus's
    rerank enabled, the top rerank.top_k candidates are reordered by the model's match-head probability, and the
    decision reads those probabilities (answer threshold 0.5, the head's own decision point)."""
    queries = body.queries()
    check_count(len(queries), "queries", settings.limits)
    if body.top_k > settings.limits.max_top_k:
        raise InvalidInput(f"top_k={body.top_k}; the limit is {settings.limits.max_top_k} "
                           "(FLIPMATCH_LIMITS__MAX_TOP_K)", code="top_k_too_large")
    stored = corpora.info(name).record.config  # 404 before spending a forward pass
    reranker = state.reranker if stored.rerank_enabled else None
    embedded = await until_disconnect(request, engine.embed(queries))
    # Clarify compares top-1 with top-2, so fetch two even when one is asked for.
    k = max(body.top_k, 2, stored.rerank_top_k if reranker is not None else 0)
    config, found = await corpora.search(name, embedded.vectors, k)
    results = []
    for i, candidates in enumerate(found):
        scores, threshold, probabilities = [c.score for c in candidates], config.answer_threshold, {}
        if reranker is not None and config.rerank_enabled:
            started = time.perf_counter()
            pool = candidates[: config.rerank_top_k]
            ranked = rerank(pool, await asyncio.to_thread(
                reranker.probabilities, queries[i], [c.matched_question for c in pool]))
            state.metrics.rerank_duration.labels(name).observe(time.perf_counter() - started)
            candidates = [c for c, _ in ranked] + list(candidates[len(pool):])
            probabilities = {c.entry_id: p for c, p in ranked}
            scores, threshold = [p for _, p in ranked], MATCH_PROBABILITY_THRESHOLD
        outcome = decide(scores, answer_threshold=threshold, clarify_margin=config.clarify_margin)
        state.metrics.decisions.labels(name, outcome).inc()
        options = [c.entry_id for c in candidates[: clarify_options(scores, clarify_margin=config.clarify_margin)]]
        results.append(QueryResult(
            index=i,
            outcome=outcome,
            answer={"answer": candidates[0].answer if candidates else None, "no_match": config.default_answer,
                    "clarify": None}[outcome],
            entry_id=candidates[0].entry_id if outcome == "answer" else None,
            options=options if outcome == "clarify" else [],
            candidates=[SearchCandidate(id=c.entry_id, question=c.question, matched_question=c.matched_question,
                                        answer=c.answer, metadata=dict(c.metadata), score=c.score,
                                        match_probability=probabilities.get(c.entry_id))
                        for c in candidates[: body.top_k]],
        ))
    return SearchResponse(corpus=name, results=results, model=engine.info.model,
                          usage=Usage(prompt_tokens=embedded.prompt_tokens, total_tokens=embedded.prompt_tokens),
                          truncated=embedded.truncated)
