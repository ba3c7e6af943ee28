"""Users, groups and keys: /api/users, /api/groups, /api/me (admins manage; anyone sees themselves)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field
from sqlmodel import delete, select

from app import auth, security, sessions
from app.deps import AdminUser, CurrentUser, Id, SessionDep
from app.models import Group, GroupMembership, Name, Role, User, WebSession

router = APIRouter(prefix="/api", tags=["users"])


class GroupCreate(BaseModel):
    """POST /api/groups body."""

    name: Name


class GroupPublic(BaseModel):
    """A group."""

    id: int
    name: str


class UserCreate(BaseModel):
    """POST /api/users body."""

    name: Name
    role: Role = Role.member
    group_ids: list[Id] = []
    # For browser sign-in (argon2id-hashed); omitted = API key only.
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class PasswordSet(BaseModel):
    """PUT /api/users/{id}/password body."""

    password: str = Field(min_length=8, max_length=1024)


class PasswordChange(BaseModel):
    """PUT /api/me/password body: the current password (where one is set) and the new one."""

    current_password: str | None = Field(default=None, max_length=1024)
    password: str = Field(min_length=8, max_length=1024)


class UserPublic(BaseModel):
    """A user and their groups."""

    id: int
    name: str
    role: Role
    group_ids: list[int]


class Me(UserPublic):
    """GET /api/me: the caller with their groups' names."""

    groups: list[GroupPublic]


class UserWithKey(UserPublic):
    """The new user's API key is shown once."""

    api_key: str


def _groups_of(session, user_id: int) -> list[int]:
    return sorted(
        session.exec(select(GroupMembership.group_id).where(GroupMembership.user_id == user_id)).all()
    )


@router.post("/groups", status_code=status.HTTP_201_CREATED, response_model=GroupPublic)
def create_group(body: GroupCreate, session: SessionDep, _: AdminUser) -> Group:
    """Create a group."""
    if session.exec(select(Group).where(Group.name == body.name)).first() is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, "Group name already exists")
    g = Group(name=body.name)
    session.add(g)
    session.commit()
    return g


@router.get("/groups", response_model=list[GroupPublic])
def list_groups(session: SessionDep, _: AdminUser) -> list[Group]:
    """All groups."""
    return session.exec(select(Group).order_by(Group.id)).all()


@router.delete("/groups/{group_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_group(group_id: Id, session: SessionDep, _: AdminUser) -> Response:
    """Delete a group: its members no longer read the collections it was granted (the collections stay)."""
    if session.get(Group, group_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Group not found")
    # Memberships and collection access rows go with it (ON DELETE CASCADE).
    session.exec(delete(Group).where(Group.id == group_id))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserWithKey)
def create_user(body: UserCreate, session: SessionDep, _: AdminUser) -> UserWithKey:
    """Create a user in some groups and return their first API key."""
    if session.exec(select(User).where(User.name == body.name)).first() is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, "User name already exists")
    for gid in set(body.group_ids):
        if session.get(Group, gid) is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"Group {gid} not found")
    user, key = auth.create_user(session, body.name, body.role, sorted(set(body.group_ids)))
    if body.password is not None:
        sessions.set_password(user, body.password)
    session.commit()
    return UserWithKey(
        id=user.id, name=user.name, role=user.role, group_ids=_groups_of(session, user.id), api_key=key
    )


@router.put("/users/{user_id}/password", status_code=status.HTTP_204_NO_CONTENT)
def set_user_password(user_id: Id, body: PasswordSet, session: SessionDep, _: AdminUser) -> Response:
    """Set a user's browser password (forgotten, or never set); their open browser sessions end."""
    user = session.get(User, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "User not found")
    sessions.set_password(user, body.password)
    session.add(user)
    # NOTE: a session opened with the old password (perhaps by whoever learnt it) must not outlive it
    session.exec(delete(WebSession).where(WebSession.user_id == user_id))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/me/password", status_code=status.HTTP_204_NO_CONTENT)
def change_my_password(
    body: PasswordChange, request: Request, session: SessionDep, user: CurrentUser
) -> Response:
    """Change one's own password (an admin chose the first one); one's other browser sessions end."""
    # wrong guesses count as failed sign-ins of the name from this address
    keys = sessions.login_keys(user.name, security.client_ip(request))
    if wait := sessions.login_limiter.retry_after(keys):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "Too many failed sign-ins; try again later",
            headers={"Retry-After": str(wait)},
        )
    if user.password_hash and sessions.authenticate(session, user.name, body.current_password or "") is None:
        sessions.login_limiter.failed(keys)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Current password is incorrect")
    sessions.login_limiter.succeeded(keys)
    row = session.get(User, user.id)
    sessions.set_password(row, body.password)
    session.add(row)
    # The session this came from goes on (not when it came with an API key); every other one ends.
    token = None if request.headers.get("authorization") else request.cookies.get(sessions.SESSION_COOKIE)
    keep = auth.hash_key(token) if token else ""
    session.exec(delete(WebSession).where(WebSession.user_id == user.id, WebSession.id != keep))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=Me)
def me(session: SessionDep, user: CurrentUser) -> Me:
    """The caller."""
    ids = _groups_of(session, user.id)
    groups = session.exec(select(Group).where(Group.id.in_(ids)).order_by(Group.id)).all()
    return Me(
        id=user.id,
        name=user.name,
        role=user.role,
        group_ids=ids,
        groups=[GroupPublic(id=g.id, name=g.name) for g in groups],
    )
