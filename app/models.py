"""SQLModel tables and API shapes. A leaf module (imports nothing of app/), so ingest/ can use it.

NOTE: ids are never reused, so every table with an id of its own uses AUTOINCREMENT on SQLite (`_NEVER_REUSED`;
migration 0003), as PostgreSQL's sequences do: a plain rowid hands the highest id, once deleted, to the next row.
An old link or citation to /documents/<id> then showed another document; `chunks.id` is the FAISS vector id and
deleted ids live on as tombstones until compaction.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, StringConstraints, model_validator
from sqlalchemy import JSON, Column, DateTime, ForeignKey, Index, Integer, Text, TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _one_line(name: str) -> str:
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise ValueError("a name may not contain control characters (tabs, line breaks, NUL)")
    return name


# A collection, group or user name as a person types and reads it: blanks around it are not part of it
# ("handbook " was a second collection beside "handbook"; "carol " could not sign in from the browser, which
# trims), and it shows something on one line.
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_one_line)
]


class UTCDateTime(TypeDecorator):
    """A moment in UTC, stored and read back with its zone on every database.

    NOTE: SQLite has no time zones: SQLAlchemy stores the UTC clock reading and reads it back naive, which the
    API then sent without an offset ("2026-12-06T21:31:11") and a browser took for local time. A naive value
    read here is UTC (nothing else is ever written); an aware one is converted to UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_NEVER_REUSED = {"sqlite_autoincrement": True}


def _ts(**kw) -> Field:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kw)


class Role(enum.StrEnum):
    admin = "admin"
    member = "member"


class DocStatus(enum.StrEnum):
    queued = "queued"
    processing = "processing"
    ready = "ready"
    failed = "failed"
    deleting = "deleting"
    cancelled = "cancelled"  # an admin stopped its ingestion; nothing of it is indexed; re-index restarts it


# --- users, groups, keys -------------------------------------------------------------------------
class User(SQLModel, table=True):
    """A person or tool; admins manage collections, members read what their groups may read."""

    __tablename__ = "users"
    __table_args__ = _NEVER_REUSED
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    role: str = Field(default=Role.member, max_length=16)
    # argon2id hash for browser sign-in; None = API keys only.
    password_hash: str | None = Field(default=None, max_length=256)
    created_at: datetime = _ts()


class ApiKey(SQLModel, table=True):
    """An API key, stored as the sha256 of the key (keys are 256-bit random, so a fast hash suffices)."""

    __tablename__ = "api_keys"
    __table_args__ = _NEVER_REUSED
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    key_hash: str = Field(index=True, unique=True, max_length=64)
    prefix: str = Field(max_length=16)  # first characters, to tell keys apart in listings
    name: str = Field(default="", max_length=200)
    created_at: datetime = _ts()


class Group(SQLModel, table=True):
    """A set of users that may read some collections."""

    __tablename__ = "groups"
    __table_args__ = _NEVER_REUSED
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    created_at: datetime = _ts()


class GroupMembership(SQLModel, table=True):
    """user <-> group."""

    __tablename__ = "group_memberships"
    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    )
    group_id: int = Field(
        sa_column=Column(Integer, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    )


class CollectionAccess(SQLModel, table=True):
    """group may read collection."""

    __tablename__ = "collection_access"
    collection_id: int = Field(
        sa_column=Column(Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True)
    )
    group_id: int = Field(
        sa_column=Column(Integer, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    )


# --- collections ---------------------------------------------------------------------------------
class CollectionBase(SQLModel):
    """Fields a client sets."""

    name: str = Field(index=True, unique=True, min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)


class CollectionCreate(CollectionBase):
    """POST /api/collections body: groups that may read it (admins always can)."""

    name: Name
    group_ids: list[int] = []


class Collection(CollectionBase, table=True):
    """A set of documents with its own index."""

    __tablename__ = "collections"
    __table_args__ = _NEVER_REUSED
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _ts()


class CollectionPublic(CollectionBase):
    """What the API returns."""

    id: int
    created_at: datetime
    document_count: int = 0
    group_ids: list[int] = []


class IndexManifest(SQLModel, table=True):
    """Durable copy of a collection's retrieval.index.Manifest (segments + tombstones) as JSON."""

    __tablename__ = "index_manifests"
    collection_id: int = Field(
        sa_column=Column(Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True)
    )
    version: int = 0
    body: str = Field(default="", sa_column=Column(Text, nullable=False))
    # the embedding space of the collection's vectors, as the last writer recorded it (JSON of
    # retrieval.embeddings.Embedder.space: model, id, dim, document prompt); null: not recorded yet (no writer
    # since migration 0007)
    embedding: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: datetime = _ts()


# --- documents and chunks ------------------------------------------------------------------------
def title_from_filename(filename: str) -> str:
    """A readable title for a document whose file holds none (plain text, CSV): the file name without folder or
    extension, underscores (and, in a name without spaces, hyphens between words) read as spaces, so
    "hr/quarterly_report-2024.txt" is "quarterly report 2024" and "2024-05-01 minutes.txt" keeps its date."""
    name = re.split(r"[/\\]", filename)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    words = stem.replace("_", " ")
    if " " not in stem:
        words = re.sub(r"(?<!\d)-|-(?!\d)", " ", words)
    return " ".join(words.split()) or name


class DocumentBase(SQLModel):
    """Fields shared by the table and the API shape."""

    filename: str = Field(max_length=512)
    title: str | None = None
    sha256: str = Field(max_length=64)
    size_bytes: int = 0
    detected_type: str | None = Field(default=None, max_length=16)
    pages: int | None = None
    status: str = Field(default=DocStatus.queued, max_length=16)
    stage: str = Field(default="queued", max_length=16)  # queued/parsing/chunking/embedding/indexing/done
    progress: float = 0.0  # 0..1
    chunks_total: int = 0
    chunks_embedded: int = 0
    chunk_count: int = 0
    error: str | None = None  # a sentence a person can read
    # failed: whether processing the same file again may succeed (the worker stopped, timed out or ran out of
    # memory: Re-index) or not (the file is damaged, cut short, encrypted or unsupported: replace it); None
    # while not failed, and for a document that failed before this was recorded
    retryable: bool | None = None
    # what of a ready document's file could not be read ("Pages 3, 7-9 of 12 have no text layer ..."), a short
    # sentence each, from its last ingestion; [] where nothing was left out (and for documents ingested before)
    notices: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    attempts: int = 0


class Document(DocumentBase, table=True):
    """An uploaded file; its bytes live in the blob store under its sha256."""

    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_collection_sha", "collection_id", "sha256"),
        Index("ix_documents_collection_filename", "collection_id", "filename"),
        _NEVER_REUSED,
    )
    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("collections.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    # The older document with the same file name that this one replaces once it is ready.
    replaces_id: int | None = None
    uploaded_by: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    )
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class DocumentPublic(DocumentBase):
    """What the API returns; a document without a title (none in its file, or not yet parsed) is titled after its
    file name, also one stored before ingestion did so."""

    id: int
    collection_id: int
    # the ready document this one replaces once it is ready (a re-index or a changed file under the same name)
    replaces_id: int | None = None
    uploaded_by: int | None
    created_at: datetime
    updated_at: datetime

    @model_validator(mode="after")
    def _title_or_filename(self) -> DocumentPublic:
        if not self.title:
            self.title = title_from_filename(self.filename)
        return self


class DocumentText(SQLModel, table=True):
    """The whole extracted text (chunk offsets point into it), apart so listings do not load it."""

    __tablename__ = "document_texts"
    document_id: int = Field(
        sa_column=Column(Integer, ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    )
    text: str = Field(sa_column=Column(Text, nullable=False))


class Chunk(SQLModel, table=True):
    """A passage of a document; its id is its vector id in the collection's FAISS segments."""

    __tablename__ = "chunks"
    __table_args__ = _NEVER_REUSED
    id: int | None = Field(default=None, primary_key=True)
    document_id: int = Field(
        sa_column=Column(Integer, ForeignKey("documents.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    ordinal: int
    text: str = Field(sa_column=Column(Text, nullable=False))
    heading_path: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    page: int | None = None
    # what page counts ("page", "slide"); None for a chunk stored before it was recorded: a page
    page_kind: str | None = Field(default=None, max_length=16)
    char_start: int
    char_end: int
    token_count: int


# --- browser sessions, conversations, feedback ---------------------------------------------------
class WebSession(SQLModel, table=True):
    """A signed-in browser; the cookie holds a random token, the table its sha256."""

    __tablename__ = "web_sessions"
    id: str = Field(primary_key=True, max_length=64)  # sha256 of the cookie value
    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    csrf_token: str = Field(max_length=64)
    created_at: datetime = _ts()
    expires_at: datetime = Field(sa_type=UTCDateTime)


class Conversation(SQLModel, table=True):
    """A user's thread of questions and answers."""

    __tablename__ = "conversations"
    __table_args__ = _NEVER_REUSED
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    title: str = Field(default="", max_length=200)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Message(SQLModel, table=True):
    """One turn; an assistant turn keeps its sources and answer metadata (cited, usage, timings)."""

    __tablename__ = "messages"
    __table_args__ = _NEVER_REUSED
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    role: str = Field(max_length=16)  # user | assistant
    content: str = Field(sa_column=Column(Text, nullable=False))
    sources: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    meta: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = _ts()


class Feedback(SQLModel, table=True):
    """Thumbs up/down on an answer, one per message (a new rating replaces the old)."""

    __tablename__ = "feedback"
    message_id: int = Field(
        sa_column=Column(Integer, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    )
    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    rating: str = Field(max_length=8)  # up | down
    comment: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts()
