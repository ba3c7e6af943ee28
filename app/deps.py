"""FastAPI dependencies as Annotated aliases: SessionDep, CurrentUser, AdminUser; Id for row ids."""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Le
from fastapi import Depends, Header, HTTPException, Request, status
from pydantic import StringConstraints
from sqlmodel import Session

from app import auth, sessions
from app.db import get_session, release_connection
from app.models import Role, User

SessionDep = Annotated[Session, Depends(get_session)]
# A row id in a path or body: out of the database's INTEGER range is a 422, never a driver error (500).
MAX_ID = 2**31 - 1
Id = Annotated[int, Ge(1), Le(MAX_ID)]
# A question or search query: blanks around it are not part of it, so "   " is as empty as "" (it was a 500)
Query = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# An explicit [] searched nothing and answered nothing, silently; leaving the field out means "all readable".
EMPTY_COLLECTIONS = "collection_ids is empty: leave it out to search every collection you may read"


def refuse_empty_collections(collection_ids: list[int] | None) -> None:
    """422 for `"collection_ids": []`; None (the field left out) is every collection the caller may read."""
    if collection_ids is not None and not collection_ids:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, EMPTY_COLLECTIONS)


def current_user(
    request: Request, session: SessionDep, authorization: Annotated[str | None, Header()] = None
) -> User:
    """An API key (`Authorization: Bearer`) or the browser session cookie; cookie-authenticated requests
    that change state must echo the CSRF cookie in X-CSRF-Token (API-key requests need not)."""
    if authorization:
        scheme, _, key = authorization.partition(" ")
        user = auth.user_for_key(session, key.strip()) if scheme.lower() == "bearer" and key.strip() else None
        if user is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "Invalid API key", headers={"WWW-Authenticate": "Bearer"}
            )
        release_connection(session)
        return user
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Not authenticated", headers={"WWW-Authenticate": "Bearer"}
        )
    row, expired = sessions.lookup_session(session, token)
    if row is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Session expired" if expired else "Not authenticated"
        )
    if request.method not in SAFE_METHODS and not sessions.csrf_ok(
        row.csrf_token, request.headers.get(sessions.CSRF_HEADER)
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "CSRF token missing or invalid")
    user = session.get(User, row.user_id)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated")
    release_connection(session)
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def admin_user(user: CurrentUser) -> User:
    if user.role != Role.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Admin role required")
    return user


AdminUser = Annotated[User, Depends(admin_user)]
