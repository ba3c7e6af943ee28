"""Browser sign-in (/api/auth/login, /api/auth/logout) and the web UI pages and static files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StringConstraints
from sqlmodel import select

from app import security, sessions
from app.deps import SessionDep
from app.models import User
from app.settings import settings

router = APIRouter(tags=["auth"])
NO_ONE_CAN_SIGN_IN = (
    "No user has a password yet: create the first administrator on the server with "
    ".venv/bin/autoglm create-admin --password, then sign in as admin."
)


class LoginRequest(BaseModel):
    """POST /api/auth/login body."""

    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    password: str = Field(min_length=1, max_length=1024)


class LoginUser(BaseModel):
    """The signed-in user."""

    id: int
    name: str
    role: str


class LoginResponse(BaseModel):
    """The CSRF token is also set as the readable `autoglm_csrf` cookie."""

    user: LoginUser
    csrf_token: str


def web_dir() -> Path:
    return Path(settings.web_dir) if settings.web_dir else Path(__file__).resolve().parents[2] / "web"


@router.post("/api/auth/login", response_model=LoginResponse)
def login(body: LoginRequest, request: Request, response: Response, session: SessionDep) -> LoginResponse:
    """Sign in with name and password; sets the session and CSRF cookies."""
    keys = sessions.login_keys(body.username, security.client_ip(request))
    wait = sessions.login_limiter.retry_after(keys)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "Too many failed sign-ins; try again later",
            headers={"Retry-After": str(wait)},
        )
    user = sessions.authenticate(session, body.username, body.password)
    if user is None:
        sessions.login_limiter.failed(keys)
        if session.exec(select(User.id).where(User.password_hash.is_not(None)).limit(1)).first() is None:
            # a fresh install: nobody can sign in, so saying so tells no one anything (no name, no count);
            # "Invalid username or password" sent a newcomer guessing admin/admin
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, NO_ONE_CAN_SIGN_IN)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid username or password")
    sessions.login_limiter.succeeded(keys)
    token, csrf, _ = sessions.create_session(session, user)
    max_age = int(settings.session_ttl_hours * 3600)
    secure = security.is_https(request)
    response.set_cookie(
        sessions.SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="lax", secure=secure
    )
    response.set_cookie(
        sessions.CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="lax", secure=secure
    )
    return LoginResponse(user=LoginUser(id=user.id, name=user.name, role=user.role), csrf_token=csrf)


@router.post("/api/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, session: SessionDep) -> Response:
    """End the browser session and clear both cookies. A live session must echo its CSRF token (403
    otherwise), so another site cannot sign the user out; without one there is nothing to end."""
    token = request.cookies.get(sessions.SESSION_COOKIE)
    row = sessions.lookup_session(session, token)[0] if token else None
    if row is not None:
        if not sessions.csrf_ok(row.csrf_token, request.headers.get(sessions.CSRF_HEADER)):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "CSRF token missing or invalid")
        sessions.end_session(session, token)
    secure = security.is_https(request)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(sessions.SESSION_COOKIE, httponly=True, samesite="lax", secure=secure)
    response.delete_cookie(sessions.CSRF_COOKIE, samesite="lax", secure=secure)
    return response


def _signed_in(request: Request, session) -> User | None:
    token = request.cookies.get(sessions.SESSION_COOKIE)
    row = sessions.lookup_session(session, token)[0] if token else None
    return session.get(User, row.user_id) if row is not None else None


def _page(name: str) -> FileResponse:
    path = web_dir() / name
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    return FileResponse(path, headers={"Cache-Control": "no-cache"})


@router.get("/", include_in_schema=False)
def ask_page(request: Request, session: SessionDep):
    """The ask page (sign-in first)."""
    if _signed_in(request, session) is None:
        return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    return _page("ask.html")


@router.get("/admin", include_in_schema=False)
def admin_page(request: Request, session: SessionDep):
    """The admin page (sign-in first; the API itself enforces the admin role)."""
    if _signed_in(request, session) is None:
        return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    return _page("admin.html")


@router.get("/login", include_in_schema=False)
def login_page():
    """The sign-in page."""
    return _page("login.html")


@router.get("/favicon.ico", include_in_schema=False)
def favicon():
    """The site icon, where browsers look for it without a <link> (every page links it too; a missing one was a
    404 in the console on every visit)."""
    path = web_dir() / "favicon.ico"
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    return FileResponse(path, media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"})


def mount_static(api: FastAPI) -> None:
    # check_dir=False: web/ may be written after the app is created (and is optional for API-only use).
    api.mount("/static", StaticFiles(directory=web_dir(), check_dir=False), name="static")
