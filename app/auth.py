"""API keys (stored as sha256), users, roles and which collections a user may read."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, select

from app.models import ApiKey, Collection, CollectionAccess, GroupMembership, Role, User

KEY_PREFIX = "agk_"


def hash_key(key: str) -> str:
    # NOTE: keys carry 256 random bits, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def issue_key(session: Session, user: User) -> str:
    """Create a key for the user; the caller commits. The plain key is returned once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(user_id=user.id, key_hash=hash_key(key), prefix=key[:12]))
    return key


def user_for_key(session: Session, key: str) -> User | None:
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
    return session.get(User, row.user_id) if row is not None else None


def create_user(session: Session, name: str, role: Role, group_ids: list[int] = ()) -> tuple[User, str]:
    """New user with one API key; the caller commits."""
    user = User(name=name, role=role)
    session.add(user)
    session.flush()
    for gid in group_ids:
        session.add(GroupMembership(user_id=user.id, group_id=gid))
    return user, issue_key(session, user)


def readable_collection_ids(session: Session, user: User) -> set[int]:
    """Admins read everything; members read collections granted to one of their groups."""
    if user.role == Role.admin:
        return set(session.exec(select(Collection.id)).all())
    rows = session.exec(
        select(CollectionAccess.collection_id)
        .join(GroupMembership, GroupMembership.group_id == CollectionAccess.group_id)
        .where(GroupMembership.user_id == user.id)
    ).all()
    return set(rows)
