"""Browser sign-in: argon2id passwords, server-side sessions with CSRF tokens, a failed-login limiter.

The cookie `autoglm_session` carries 256 random bits; the table keeps only their sha256, so a copy of
the database cannot be replayed as cookies. `autoglm_csrf` is readable by scripts (double submit): a
cookie-authenticated request that changes state must echo it in `X-CSRF-Token`; the table keeps its
sha256 too (so neither token ever appears in the database or in SQL logged with parameters).
"""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, delete, select

from app.auth import hash_key
from app.models import User, WebSession
from app.settings import settings
from app.windows import SlidingWindows

SESSION_COOKIE = "autoglm_session"
CSRF_COOKIE = "autoglm_csrf"
CSRF_HEADER = "X-CSRF-Token"
_hasher = PasswordHasher()  # argon2id with the library's current defaults (RFC 9106 low-memory profile)
# Verified against when the user does not exist, so a wrong name costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")
    return _hasher.hash(password)


def set_password(user: User, password: str) -> None:
    """The caller commits."""
    user.password_hash = hash_password(password)


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The user if name and password match, else None (constant work either way)."""
    user = session.exec(select(User).where(User.name == name)).first()
    stored = user.password_hash if user is not None and user.password_hash else None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if stored is None:
        return None
    if _hasher.check_needs_rehash(stored):
        user.password_hash = _hasher.hash(password)
        session.add(user)
        session.commit()
    return user


def create_session(session: Session, user: User) -> tuple[str, str, datetime]:
    """(cookie token, csrf token, expiry); commits."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(hours=settings.session_ttl_hours)
    session.add(
        WebSession(id=hash_key(token), user_id=user.id, csrf_token=hash_key(csrf), expires_at=expires)
    )
    session.commit()
    return token, csrf, expires


def lookup_session(session: Session, token: str) -> tuple[WebSession | None, bool]:
    """(row, expired). An expired row is deleted; (None, False) = no such session."""
    row = session.get(WebSession, hash_key(token))
    if row is None:
        return None, False
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)  # SQLite
    if expires <= datetime.now(UTC):
        session.delete(row)
        session.commit()
        return None, True
    return row, False


def end_session(session: Session, token: str) -> None:
    session.exec(delete(WebSession).where(WebSession.id == hash_key(token)))
    session.commit()


def csrf_ok(expected_hash: str, sent: str | None) -> bool:
    """The sent token matches the session's (stored as its sha256)."""
    return bool(sent) and secrets.compare_digest(expected_hash.encode(), hash_key(sent).encode())


def login_keys(name: str, address: str) -> tuple[tuple[str, int], ...]:
    """The sign-in limiter's (key, failures allowed) for a name tried from an address: that name from that
    address (a person mistyping), then that address whatever the name (spraying one password over many names),
    then that name whatever the address (guessing from many addresses), the last two with much higher limits."""
    name = name.lower()
    return (
        (f"user:{name}|ip:{address}", settings.login_max_failures),
        (f"ip:{address}", settings.login_max_failures_per_address),
        (f"user:{name}", settings.login_max_failures_per_account),
    )


class LoginLimiter:
    """Failed sign-ins per key (``login_keys``) in a sliding window, shared by every API replica through Redis
    when one is configured (app/windows.py), else in this process's memory."""

    def __init__(self) -> None:
        self._windows = SlidingWindows("login")

    def retry_after(self, keys: tuple[tuple[str, int], ...]) -> int:
        """Seconds until another attempt is allowed; 0 = allowed now."""
        waits = []
        for k, limit in keys:
            n, wait = self._windows.count(k, settings.login_window_s)
            if n >= limit:
                waits.append(max(1, math.ceil(wait)))
        return max(waits, default=0)

    def failed(self, keys: tuple[tuple[str, int], ...]) -> None:
        for k, _ in keys:
            self._windows.add(k, settings.login_window_s)

    def succeeded(self, keys: tuple[tuple[str, int], ...]) -> None:
        """The name signed in from the address: its count there starts again (not the address's nor the name's
        overall: an attacker with one valid account must not reset either)."""
        self._windows.clear(keys[0][0])

    def reset(self) -> None:
        """Forget this process's counts (tests)."""
        self._windows.clear()


login_limiter = LoginLimiter()
