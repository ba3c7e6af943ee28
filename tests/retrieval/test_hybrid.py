"""Hybrid search with the real embedder, real FAISS/BM25 files and a tiny real cross-encoder built locally."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch

from retrieval.embeddings import DEFAULT_EMBEDDING_MODEL, get_embedder
from retrieval.hybrid import Budget, Source, hybrid_search, hybrid_search_sync
from retrieval.index import IndexCache, Manifest, add_segment, write_segment
from retrieval.lexical import LexicalCache
from retrieval.rerank import Reranker

DOCS = {
    101: "To sort a list in place call list.sort(); sorted() returns a new sorted list.",
    102: "The json module serializes Python objects to JSON text with json.dumps.",
    103: "Use subprocess.run to start an external program and capture its output.",
    104: "A virtual environment isolates installed packages; create one with python -m venv.",
    105: "Regular expressions are compiled with re.compile and matched with re.search.",
    106: "FAISS searches dense vectors; BM25 ranks documents by keyword statistics.",
    107: "zlib.crc32 computes a CRC-32 checksum of bytes.",
    108: "Threads share memory; processes do not, which avoids the global interpreter lock.",
}


@pytest.fixture(scope="module")
def emb():
    return get_embedder()


@pytest.fixture(scope="module")
def collection(tmp_path_factory, emb):
    cdir = tmp_path_factory.mktemp("coll")
    ids = np.array(sorted(DOCS), dtype=np.int64)
    half = len(ids) // 2
    m = Manifest()
    for part in (ids[:half], ids[half:]):  # two segments
        m = add_segment(m, write_segment(cdir, part, emb.embed([DOCS[int(i)] for i in part])))
    return [Source(cdir, m)]


def texts_for_ids(ids):
    return [DOCS[int(i)] for i in ids]


@pytest.fixture(scope="module")
def reranker(tmp_path_factory) -> Reranker:
    """A tiny random BERT cross-encoder (1 label) with the MiniLM tokenizer, saved locally."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("ce")
    tok = AutoTokenizer.from_pretrained(DEFAULT_EMBEDDING_MODEL)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    BertForSequenceClassification(cfg).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return Reranker(path)


def kw(emb, **extra):
    return {"embed_query": emb.embed_query, "texts_for_ids": texts_for_ids, "k": 5, **extra}


def test_hybrid_finds_by_meaning_and_by_keyword(collection, emb):
    big = Budget(deadline_ms=60_000, embed_ms=60_000, dense_ms=60_000, bm25_ms=60_000, rerank_ms=60_000)
    r = hybrid_search_sync("how do I order the items of a list", collection, **kw(emb, budget=big))
    assert r.hits[0].chunk_id == 101 and not r.degraded and r.timed_out == []
    assert set(r.timings_ms) == {"embed", "dense", "bm25", "total"}
    r = hybrid_search_sync("crc32 checksum", collection, **kw(emb, budget=big))
    assert r.hits[0].chunk_id == 107
    assert r.hits[0].dense_rank is not None and r.hits[0].bm25_rank == 1


def test_slow_embedding_is_abandoned_and_bm25_answers(collection, emb):
    # Warm the BM25 sidecars so only the embedding (a real model call, several ms) overruns its 0.5 ms.
    LexicalCache().warm(collection[0].collection_dir, collection[0].manifest, texts_for_ids)
    budget = Budget(deadline_ms=5_000, embed_ms=0.5, bm25_ms=5_000)
    r = hybrid_search_sync("crc32 checksum of bytes", collection, **kw(emb, budget=budget))
    assert r.degraded and r.timed_out == ["embed"] and r.skipped == ["dense"]
    assert r.hits[0].chunk_id == 107 and r.hits[0].dense_rank is None
    assert r.timings_ms["embed"] < 100


def test_slow_reranker_is_abandoned_within_the_deadline(collection, emb, reranker):
    def slow_texts(ids):  # the reranker's input fetch stands in for a slow database
        time.sleep(3.0)
        return texts_for_ids(ids)

    budget = Budget(deadline_ms=10_000, embed_ms=10_000, dense_ms=10_000, bm25_ms=10_000, rerank_ms=100)
    LexicalCache().warm(collection[0].collection_dir, collection[0].manifest, texts_for_ids)
    fused = hybrid_search_sync("sort a list", collection, **kw(emb, budget=budget))
    t0 = time.perf_counter()
    slow = hybrid_search_sync(
        "sort a list",
        collection,
        **{**kw(emb, budget=budget, reranker=reranker), "texts_for_ids": slow_texts},
    )
    assert time.perf_counter() - t0 < 2.0  # did not wait for the 3 s fetch
    assert slow.degraded and slow.timed_out == ["rerank"] and not slow.reranked
    assert 100 <= slow.timings_ms["rerank"] < 1000
    # The answer is the fused list, as if no reranker were configured.
    assert [h.chunk_id for h in slow.hits] == [h.chunk_id for h in fused.hits]
    assert all(h.rerank_score is None for h in slow.hits)


def test_reranker_reorders_deterministically(collection, emb, reranker):
    big = Budget(deadline_ms=60_000, embed_ms=60_000, dense_ms=60_000, bm25_ms=60_000, rerank_ms=60_000)
    args = kw(emb, budget=big, reranker=reranker, rerank_top=8)
    a = hybrid_search_sync("external program output", collection, **args)
    b = hybrid_search_sync("external program output", collection, **args)
    assert a.reranked and [h.chunk_id for h in a.hits] == [h.chunk_id for h in b.hits]
    scores = [h.rerank_score for h in a.hits]
    assert scores == sorted(scores, reverse=True)
    # The order is the cross-encoder's own: score the pairs directly with the model.
    direct = reranker.score("external program output", texts_for_ids([h.chunk_id for h in a.hits]))
    np.testing.assert_allclose(direct, scores, rtol=1e-5)


def test_async_search_does_not_block_the_event_loop(collection, emb):
    big = Budget(deadline_ms=60_000, embed_ms=60_000, dense_ms=60_000, bm25_ms=60_000)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    async def main():
        t = asyncio.create_task(ticker())
        r = await hybrid_search(
            "json serialization", collection, **kw(emb, budget=big, index_cache=IndexCache())
        )
        t.cancel()
        return r

    r = asyncio.run(main())
    assert r.hits[0].chunk_id == 102 and ticks >= 2
    with pytest.raises(RuntimeError, match="await hybrid_search"):

        async def inside():
            hybrid_search_sync("x", collection, **kw(emb))

        asyncio.run(inside())


def test_budget_rejects_nonsense():
    with pytest.raises(ValueError, match="rerank_ms must be positive"):
        Budget(rerank_ms=0)


def test_everything_over_budget_gives_an_empty_degraded_answer(tmp_path, emb):
    ids = np.array([101, 107], dtype=np.int64)
    m = add_segment(Manifest(), write_segment(tmp_path, ids, emb.embed(texts_for_ids(ids))))

    def slow_texts(ids):
        time.sleep(1.0)
        return texts_for_ids(ids)

    r = hybrid_search_sync(
        "crc32 checksum",
        [Source(tmp_path, m)],
        embed_query=lambda q: (time.sleep(1.0), emb.embed_query(q))[1],
        texts_for_ids=slow_texts,
        lexical_cache=LexicalCache(),  # no sidecar yet: BM25 must build it, through the slow fetch
        budget=Budget(deadline_ms=50),
    )
    assert r.hits == [] and r.degraded
    assert sorted(r.timed_out) == ["bm25", "embed"] and r.skipped == ["dense"]
    assert r.timings_ms["total"] < 500


# Chinese passages with made-up vectors: the "dense model" (a query vector pointing at 203) is sure of the
# wrong passage, as an English-only model can be on Chinese text; BM25 finds the right one (201).
ZH_DOCS = {
    201: "正式员工辞职，务必提前一个月通知所在部门和人事。",
    202: "每周三中午公司报销集体聚餐。",
    203: "员工辞职后，薪资在下一次发放日统一发放。",
    204: "出差期间的住宿标准为每晚不超过两百五十元。",
}


@pytest.fixture(scope="module")
def zh_collection(tmp_path_factory):
    cdir = tmp_path_factory.mktemp("zh")
    ids = np.array(sorted(ZH_DOCS), dtype=np.int64)
    vecs = np.eye(len(ids), 8, dtype=np.float32)  # passage i along axis i
    vecs[0] = -vecs[2]  # 201 as far from 203 as a vector can be
    return [Source(cdir, add_segment(Manifest(), write_segment(cdir, ids, vecs)))]


def zh_kw(**extra):
    big = Budget(deadline_ms=60_000, embed_ms=60_000, dense_ms=60_000, bm25_ms=60_000, rerank_ms=60_000)
    wrong = np.eye(1, 8, 2, dtype=np.float32)[0]  # nearest to 203

    def texts(ids):
        return [ZH_DOCS[int(i)] for i in ids]

    return {"embed_query": lambda q: wrong, "texts_for_ids": texts, "k": 4, "budget": big, **extra}


def test_untrusted_dense_model_does_not_pull_bm25s_ranking_down(zh_collection):
    q = "辞职要提前多久通知部门？"
    trusted = hybrid_search_sync(q, zh_collection, **zh_kw())
    assert trusted.hits[0].chunk_id == 203  # the dense model's certainty wins a fusion that trusts it
    r = hybrid_search_sync(q, zh_collection, **zh_kw(dense_trust=0.0))
    assert [h.chunk_id for h in r.hits][:2] == [201, 203] and r.hits[0].bm25_rank == 1
    # the dense list's other hits still follow, in its own order (BM25 matched neither)
    assert {h.chunk_id for h in r.hits[2:]} == {202, 204} and len(r.hits) == 4
    rrf = hybrid_search_sync(q, zh_collection, **zh_kw(dense_trust=0.0, fusion="rrf"))
    assert rrf.hits[0].chunk_id == 201


def test_untrusted_dense_model_decides_alone_when_bm25_has_nothing(zh_collection):
    r = hybrid_search_sync("完全无关的问题", zh_collection, **zh_kw(dense_trust=0.0))
    assert r.hits[0].chunk_id == 203 and r.hits[0].bm25_rank is None


def test_dense_trust_must_be_a_share(zh_collection):
    with pytest.raises(ValueError, match="dense_trust"):
        hybrid_search_sync("辞职", zh_collection, **zh_kw(dense_trust=1.5))
