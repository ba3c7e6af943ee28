"""Prometheus metrics of the API process (`GET /metrics`).

Request, retrieval and generation metrics are observed where they happen; engine gauges and ingestion
figures are read at scrape time (ingestion runs in worker processes, so its figures come from the
database, which every process shares).
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)
registry = CollectorRegistry()

REQUEST_SECONDS = Histogram(
    "autoglm_http_request_duration_seconds",
    "HTTP request latency by route template (streams: until the last byte).",
    ["method", "route", "status"],
    registry=registry,
)
RETRIEVAL_STAGE_SECONDS = Histogram(
    "autoglm_retrieval_stage_seconds",
    "Time spent per retrieval stage (embed, dense, bm25, rerank, total).",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0),
    registry=registry,
)
RETRIEVAL_TIMEOUTS = Counter(
    "autoglm_retrieval_timeouts_total",
    "Retrieval stages abandoned at the deadline.",
    ["stage"],
    registry=registry,
)
TTFT_SECONDS = Histogram(
    "autoglm_generation_ttft_seconds",
    "Time from request submission to the first generated token.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
    registry=registry,
)
TOKENS_PER_SECOND = Histogram(
    "autoglm_generation_tokens_per_second",
    "Decode speed per answer.",
    buckets=(1, 5, 10, 20, 40, 80, 160, 320, 640, 1280),
    registry=registry,
)
ANSWERS = Counter(
    "autoglm_answers_total",
    "Answers by mode (generated, extractive) and outcome.",
    ["mode", "outcome"],
    registry=registry,
)


class _ScrapeTimeCollector(Collector):
    """Engine queue and prefix-cache figures, ingestion durations and failures, read when scraped."""

    def collect(self):
        from app.engine_service import service

        depth = GaugeMetricFamily("autoglm_engine_queue_depth", "Requests in the engine.", labels=["state"])
        hit = GaugeMetricFamily(
            "autoglm_engine_prefix_hit_rate", "Prompt tokens served from the prefix cache."
        )
        hit_tokens = CounterMetricFamily(
            "autoglm_engine_prefix_hit_tokens", "Prompt tokens reused from cache."
        )
        prompt_tokens = CounterMetricFamily("autoglm_engine_prompt_tokens", "Prompt tokens submitted.")
        stats = service.stats()
        if stats is not None:
            depth.add_metric(["waiting"], stats["waiting"])
            depth.add_metric(["running"], stats["running"])
            hit.add_metric([], stats["prefix_hit_rate"])
            hit_tokens.add_metric([], stats["prefix_hit_tokens"])
            prompt_tokens.add_metric([], stats["prompt_tokens"])
        yield from (depth, hit, hit_tokens, prompt_tokens)
        yield from _ingestion_metrics()


def _ingestion_metrics():
    from sqlalchemy import func
    from sqlmodel import select

    from app.db import session_scope
    from app.models import DocStatus, Document

    docs = GaugeMetricFamily("autoglm_ingestion_documents", "Documents by status.", labels=["status"])
    failed = CounterMetricFamily("autoglm_ingestion_failures", "Documents whose ingestion failed.")
    took = GaugeMetricFamily(
        "autoglm_ingestion_duration_seconds",
        "Upload-to-ready time of ready documents: mean and max.",
        labels=["stat"],
    )
    try:
        with session_scope() as s:
            counts = dict(
                s.exec(select(Document.status, func.count(Document.id)).group_by(Document.status)).all()
            )
            rows = s.exec(
                select(Document.created_at, Document.updated_at).where(Document.status == DocStatus.ready)
            ).all()
    except Exception:  # a scrape must not fail because the database is briefly away (/readyz says so)
        log.warning("ingestion metrics unavailable", exc_info=True)
        return
    for st in DocStatus:
        docs.add_metric([st.value], counts.get(st.value, 0))
    failed.add_metric([], counts.get(DocStatus.failed.value, 0))
    durations = [(u - c).total_seconds() for c, u in rows if c is not None and u is not None]
    took.add_metric(["mean"], sum(durations) / len(durations) if durations else 0.0)
    took.add_metric(["max"], max(durations, default=0.0))
    yield from (docs, failed, took)


registry.register(_ScrapeTimeCollector())


def render() -> bytes:
    return generate_latest(registry)
