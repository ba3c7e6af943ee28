"""Hostile-input controls (SECURITY.md): security headers on every response, request body limits,
per-user question rate limits, the per-user upload quota and which proxies' forwarded headers to believe.

The two middlewares are pure ASGI, so streamed answers pass through untouched.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import re
from datetime import timedelta
from functools import lru_cache

from fastapi import FastAPI, HTTPException, Request, status
from sqlalchemy import func
from sqlmodel import Session, select

from app.asgi import HttpMiddleware, openai_path
from app.models import Document, User, utcnow
from app.settings import settings
from app.windows import SlidingWindows

# The product pages load scripts and styles from /static only: no inline script, style or eval.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc pages load their bundle from jsDelivr and boot it with an inline script;
# they show no stored data, so they get a looser policy of their own.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
_UPLOAD_PATH = re.compile(r"^/api/collections/[^/]+/documents/?$")


def _headers(path: str, https: bool) -> list[tuple[bytes, bytes]]:
    out = [
        (b"content-security-policy", (DOCS_CSP if path.startswith(DOCS_PATHS) else CSP).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    if https:
        out.append((b"strict-transport-security", b"max-age=31536000"))
    return out


# --- proxies, client address, HTTPS ----------------------------------------------------------------
@lru_cache(maxsize=8)
def _networks(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    """None = every peer is trusted ("*")."""
    if spec.strip() == "*":
        return None
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip())


def _trusted(host: str | None) -> bool:
    if not settings.trusted_proxies or not host:
        return False
    nets = _networks(settings.trusted_proxies)
    if nets is None:
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(addr in n for n in nets)


def client_ip(request: Request) -> str:
    """The caller's address: the peer, or (only when the peer is a trusted proxy) the nearest untrusted
    address in X-Forwarded-For, so a client cannot pick its own rate-limit key."""
    peer = request.client.host if request.client else "-"
    if not _trusted(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop):
            return hop
    return hops[0] if hops else peer


def is_https(request: Request) -> bool:
    """Served over HTTPS: the connection itself, or X-Forwarded-Proto from a trusted proxy."""
    if request.url.scheme == "https":
        return True
    if not _trusted(request.client.host if request.client else None):
        return False
    return request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() == "https"


# --- middlewares -----------------------------------------------------------------------------------
class SecurityHeadersMiddleware(HttpMiddleware):
    """CSP, nosniff, frame denial, referrer policy (and HSTS over HTTPS) on every HTTP response.

    NOTE: an unhandled error's 500 too. Starlette answers it from its outermost middleware, outside this one
    and the request-id one, so it went out bare (no CSP, no nosniff, no X-Request-ID to find it in the log);
    here the app's own handler for Exception (main.py) answers it inside them, and the error is raised on,
    so that the server still logs it."""

    async def handle(self, scope, receive, send) -> None:
        https = is_https(Request(scope))
        started = False

        async def send_with_headers(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _headers(scope["path"], https) if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            handler = getattr(scope.get("app"), "exception_handlers", {}).get(Exception)
            if not started and handler is not None:
                response = handler(Request(scope, receive), exc)
                response = await response if inspect.isawaitable(response) else response
                await response(scope, receive, send_with_headers)
            raise


def body_limit(method: str, path: str) -> int:
    """Bytes a request body may carry: uploads have their own (larger) limit."""
    if method == "POST" and _UPLOAD_PATH.match(path):
        return settings.max_upload_request_bytes
    return settings.max_body_bytes


def human_bytes(n: int) -> str:
    """A size as people read it, in the units the web UI shows (1 KB = 1024 bytes): "100 MB", "1.5 GB",
    "976.6 KB", "150 bytes". For limits and quotas in messages: 104857600 bytes meant nothing at a glance."""
    if n < 1024:
        return f"{n} byte" if n == 1 else f"{n} bytes"
    value, units = n / 1024, ["KB", "MB", "GB", "TB"]
    while value >= 1024 and len(units) > 1:
        value /= 1024
        units.pop(0)
    return f"{value:.1f}".removesuffix(".0") + f" {units[0]}"


def too_large_detail(limit: int) -> str:
    return f"Request body too large: the limit is {human_bytes(limit)}"


class BodyTooLarge(HTTPException):
    """Raised from the wrapped `receive` once a streamed body passes the limit."""

    code = "request_too_large"  # OpenAI's error code under /v1, whichever of the two ways the 413 is answered

    def __init__(self, limit: int) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, too_large_detail(limit))


class BodyLimitMiddleware(HttpMiddleware):
    """413 for a body over the limit: at once from Content-Length, else as soon as the streamed body
    passes it (chunked uploads, lying lengths); the rest is never read."""

    async def handle(self, scope, receive, send) -> None:
        limit = body_limit(scope["method"], scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _error(scope, send, status.HTTP_400_BAD_REQUEST, "Invalid Content-Length header")
                return
            if size > limit:
                await _error(scope, send, status.HTTP_413_CONTENT_TOO_LARGE, too_large_detail(limit))
                return
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as e:  # read outside a route's parser (which turns it into the 413 itself)
            if started:
                raise
            await _error(scope, send, e.status_code, e.detail)


async def _error(scope, send, code: int, detail: str) -> None:
    """A JSON error in the API's shape ({"detail"}; OpenAI's {"error"} under /v1)."""
    if openai_path(scope["path"]):
        kind = "invalid_request_error"
        why = BodyTooLarge.code if code == status.HTTP_413_CONTENT_TOO_LARGE else "invalid_request"
        body = {"error": {"message": detail, "type": kind, "param": None, "code": why}}
    else:
        body = {"detail": detail}
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if code == status.HTTP_413_CONTENT_TOO_LARGE:
        headers.append((b"connection", b"close"))  # the unread rest of the body is not worth reading
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


# --- rate limits -----------------------------------------------------------------------------------
class RateLimiter:
    """At most `limit()` events per key in any `window_s` seconds (a sliding window shared by every API
    replica through Redis when one is configured; see app/windows.py)."""

    def __init__(self, limit, window_s: float, name: str = "ask") -> None:
        self._limit = limit  # a callable, so a changed setting applies at once
        self._window = window_s
        self._windows = SlidingWindows(name)

    def hit(self, key: str) -> int:
        """Record an event and return 0, or return the seconds to wait (nothing recorded)."""
        return self._windows.record(key, self._window, self._limit())

    def reset(self) -> None:
        """Forget this process's counts (tests)."""
        self._windows.clear()


def count_question(request: Request, user: User) -> None:
    """Count a question against the caller's minute; 429 with Retry-After when none is left.

    NOTE: called first thing in the route's body, not as a dependency: FastAPI runs dependencies before it
    refuses a malformed body (422), so a request that asked nothing took a question of the user's minute."""
    wait = request.app.state.ask_limiter.hit(f"user:{user.id}")
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"Too many questions: the limit is {settings.ask_rate_per_minute} per minute; "
            f"try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def install(api: FastAPI) -> None:
    """The app's question limiter and the two middlewares (added before the request-id middleware, so
    that one wraps them and logs their refusals)."""
    api.state.ask_limiter = RateLimiter(lambda: settings.ask_rate_per_minute, 60.0)
    api.add_middleware(BodyLimitMiddleware)
    api.add_middleware(SecurityHeadersMiddleware)  # outside the body limit: its 413s get the headers too


# --- upload quota ----------------------------------------------------------------------------------
def uploaded_last_day(session: Session, user_id: int) -> int:
    """Bytes of the documents this user created in the last 24 hours (pending rows of this session too)."""
    since = utcnow() - timedelta(days=1)
    total = session.exec(
        select(func.coalesce(func.sum(Document.size_bytes), 0)).where(
            Document.uploaded_by == user_id, Document.created_at >= since
        )
    ).one()
    return int(total)
