"""POST /api/search: passages from the collections the caller may read, and nothing else."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from app import auth
from app.db import release_connection
from app.deps import CurrentUser, Query, SessionDep, refuse_empty_collections
from app.search import SearchHit, search_with_meta

router = APIRouter(prefix="/api", tags=["search"])


class SearchRequest(BaseModel):
    """Omitted collection_ids = every collection the caller may read; an empty list is a 422."""

    query: Query
    collection_ids: list[int] | None = None
    k: int = Field(default=10, ge=1, le=100)


class SearchResponse(BaseModel):
    """Hits, best first; `degraded` when a retrieval stage overran the deadline (named in `timed_out`)."""

    hits: list[SearchHit]
    degraded: bool = False
    timed_out: list[str] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)


@router.post("/search", response_model=SearchResponse)
def search_route(body: SearchRequest, session: SessionDep, user: CurrentUser) -> SearchResponse:
    """Semantic search over readable collections."""
    refuse_empty_collections(body.collection_ids)
    readable = auth.readable_collection_ids(session, user)
    if body.collection_ids is None:
        ids = sorted(readable)
    else:
        ids = sorted(set(body.collection_ids))
        if any(i not in readable for i in ids):
            # Same answer for "forbidden" and "absent": a member learns nothing about other collections.
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Collection not found")
    release_connection(session)
    hits, meta = search_with_meta(body.query, ids, body.k)
    if meta is None:
        return SearchResponse(hits=hits)
    return SearchResponse(
        hits=hits, degraded=meta.degraded, timed_out=meta.timed_out, timings_ms=meta.timings_ms
    )
