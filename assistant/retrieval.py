"""Hybrid retrieval: dense (Chroma) and BM25 candidates fused with reciprocal rank fusion, filtered by the catalog
(active versions by default, a date's version with `as_of` or those of the period the question names, chosen
documents); the fused top `rerank_depth` are then reordered by the cross-encoder reranker when one is configured
(assistant/rerank.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from assistant.rerank import Reranker, load_reranker
from assistant.types import Retrieved
from assistant.when import Period, named_period
from ingest.pipeline import Library
from ingest.settings import Settings

MODES = ("hybrid", "dense", "bm25")


@dataclass
class RetrievalFilter:
    """Which document versions a query may see."""

    document_ids: list[str] | None = None
    as_of: str | None = None
    include_superseded: bool = False
    since: str | None = None  # with as_of: every version in force at some time from `since` to `as_of`
    named: Period | None = None  # the period the question named, when that is where as_of/since came from


def dated_filter(question: str, flt: RetrievalFilter | None = None) -> RetrievalFilter:
    """The filter, with the period the question names for its documents ("the policy in force in 2023") when no
    date or version choice was given: the versions in force then are searched instead of today's."""
    flt = flt or RetrievalFilter()
    if flt.as_of or flt.include_superseded:
        return flt
    period = named_period(question)
    if period is None:
        return flt
    return replace(flt, as_of=period.end, since=period.start, named=period)


class Retriever:
    """Retrieves chunks from a Library; `mode` picks hybrid (default), dense or bm25 alone."""

    def __init__(self, library: Library, mode: str = "hybrid", reranker: Reranker | None | bool = True,
                 settings: Settings | None = None):
        """`reranker`: True loads the one the settings name (None when reranking is off), False never reranks.
        `settings`: the query-time ones (top_k, candidates, rrf_k, rerank and its model) when they are not the
        library's own, e.g. an evaluation of another configuration over a shared library."""
        if mode not in MODES:
            raise ValueError(f"retrieval mode must be one of {', '.join(MODES)}, not '{mode}'")
        self.library = library
        self.settings = settings or library.settings
        self.mode = mode
        self.reranker = load_reranker(self.settings) if reranker is True else (reranker or None)

    def retrieve(self, query: str, k: int | None = None, flt: RetrievalFilter | None = None,
                 mode: str | None = None, rerank: bool = True) -> list[Retrieved]:
        """Top-k chunks for a query, best first, with fused and per-retriever scores; with a reranker (and
        `rerank`), the fused top `rerank_depth` reordered by its scores."""
        mode = mode or self.mode
        k = k or self.settings.top_k
        reranker = self.reranker if rerank else None
        if reranker is not None:
            return self._reranked(query, k, flt, mode, reranker)
        flt = dated_filter(query, flt)
        keys = self.library.catalog.searchable_keys(as_of=flt.as_of, include_superseded=flt.include_superseded,
                                                    document_ids=flt.document_ids, since=flt.since)
        if not keys or not query.strip():
            return []
        n = max(self.settings.candidates, k)
        # Chroma's metadata filter is slow; skip it when every indexed version is allowed anyway.
        everything = self.library.catalog.searchable_keys(include_superseded=True)
        index_keys = None if keys == everything else keys
        dense = bm25 = []
        if mode in ("hybrid", "dense"):
            dense = self._dense(query, n, index_keys)
        if mode in ("hybrid", "bm25"):
            bm25 = self.library.bm25.query(query, n, index_keys)
        fused = fuse(dense, bm25, self.settings.rrf_k)[:k]
        chunks = self.library.catalog.chunks(cid for cid, _ in fused)
        dense_rank = {cid: (i + 1, s) for i, (cid, s) in enumerate(dense)}
        bm25_rank = {cid: (i + 1, s) for i, (cid, s) in enumerate(bm25)}
        out = []
        for cid, score in fused:
            if cid not in chunks:  # deleted between the query and now
                continue
            d, b = dense_rank.get(cid), bm25_rank.get(cid)
            out.append(Retrieved(chunk=chunks[cid], score=score, dense_rank=d[0] if d else None,
                                 dense_score=d[1] if d else None, bm25_rank=b[0] if b else None,
                                 bm25_score=b[1] if b else None))
        return out

    def _reranked(self, query: str, k: int, flt: RetrievalFilter | None, mode: str,
                  reranker: Reranker) -> list[Retrieved]:
        depth = self.settings.rerank_depth
        fused = self.retrieve(query, max(k, depth), flt, mode, rerank=False)
        for rank, r in enumerate(fused, start=1):
            r.fused_rank = rank
        # only the top `depth` are reranked; any asked for beyond them follow in fused order, so the top k of a
        # query is the same whatever k (the assistant's sources are a prefix of a longer list)
        head, tail = fused[:depth], fused[depth:]
        scores = reranker.score(query, [r.chunk.text for r in head])
        for r, s in zip(head, scores, strict=True):
            r.rerank_score = s
        order = blend(scores, self.settings.rerank_weight)  # k 60: rerank_weight was chosen with it
        return ([head[i] for i in order] + tail)[:k]

    def _dense(self, query: str, n: int, keys) -> list[tuple[str, float]]:
        """The dense candidates; asked again once when the index was switched to a new generation (a re-embedding
        in another thread or process) between finding the collection and querying it."""
        served = self.library.vectors.collection.name
        try:
            return self.library.vectors.query(self.library.embedder.encode_query(query), n, keys)
        except Exception:
            if self.library.vectors.collection.name == served:
                raise
            return self.library.vectors.query(self.library.embedder.encode_query(query), n, keys)

    def relevance(self, query: str, results: list[Retrieved]) -> float:
        """How well the best result matches the query: cosine similarity of query and chunk embeddings (0..1),
        comparable across queries unlike fused ranks. Always in the configured embedding_model's space (the
        confidence gate is calibrated on it): when a fine-tuned embedder serves the index, its dense scores are
        not used here."""
        if not results:
            return 0.0
        scored = [r.dense_score for r in results if r.dense_score is not None]
        if scored and self.library.pointer.name is None:
            return max(scored)
        embedder = self.library.base_embedder()
        vector = embedder.encode_query(query)
        chunk_vectors = embedder.encode([r.chunk.text for r in results[:5]])
        return float((chunk_vectors @ vector).max())


def blend(scores: list[float], weight: float, k: int = 60) -> list[int]:
    """Candidates (given in fused order) reordered after reranking: by weight / (k + rank by score) + (1 - weight) /
    (k + fused rank); weight 1 is the scores' order (ties keep the fused order)."""
    by_score = sorted(range(len(scores)), key=lambda i: -scores[i])
    if weight >= 1.0:
        return by_score
    rank = {i: r for r, i in enumerate(by_score, start=1)}
    return sorted(range(len(scores)), key=lambda i: -(weight / (k + rank[i]) + (1 - weight) / (k + i + 1)))


def fuse(dense: list[tuple[str, float]], bm25: list[tuple[str, float]], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(d) = sum over lists of 1 / (k + rank). Lists may be empty."""
    scores: dict[str, float] = {}
    for ranked in (dense, bm25):
        for rank, (cid, _) in enumerate(ranked, start=1):
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
