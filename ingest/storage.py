"""Blob store: uploaded bytes under <data_dir>/blobs/<sha[:2]>/<sha>, written atomically, named by content."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from app.settings import settings


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_path(sha256: str) -> Path:
    assert len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256), f"{sha256=}"
    return settings.blob_dir / sha256[:2] / sha256


def put_blob(data: bytes) -> str:
    """Store bytes (once per content) and return their sha256."""
    sha = sha256_hex(data)
    path = blob_path(sha)
    if path.exists():
        return sha
    path.parent.mkdir(parents=True, exist_ok=True)
    # NOTE: unique per call, not per process: two request threads storing the same file shared one temporary
    # name, and the second rename found it gone
    tmp = path.with_name(f".{sha}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return sha


def read_blob(sha256: str) -> bytes | None:
    try:
        return blob_path(sha256).read_bytes()
    except FileNotFoundError:
        return None


def remove_blob(sha256: str) -> None:
    blob_path(sha256).unlink(missing_ok=True)
