"""One writer per collection index: a Redis lock when Redis is configured, a file lock otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.settings import settings

# A holder that dies keeps a Redis lock until it expires; the critical section (write one segment, commit)
# takes seconds, so a few minutes is generous. File locks vanish with the process.
LOCK_TTL_S = 300
LOCK_WAIT_S = 600


class LockTimeout(Exception):
    """The collection lock could not be taken in time (transient: the task retries)."""


@contextmanager
def collection_lock(collection_id: int) -> Iterator[None]:
    if settings.redis_url:
        import redis

        client = redis.Redis.from_url(settings.redis_url)
        lock = client.lock(
            f"{settings.broker_key_prefix}autoglm:lock:collection:{collection_id}",
            timeout=LOCK_TTL_S,
            blocking_timeout=LOCK_WAIT_S,
        )
        if not lock.acquire():
            raise LockTimeout(f"collection {collection_id} lock not acquired in {LOCK_WAIT_S} s")
        try:
            yield
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                pass  # expired while held; the manifest commit already decided who won
            client.close()
    else:
        from filelock import FileLock, Timeout

        lock_dir = settings.data_dir / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(lock_dir / f"collection-{collection_id}.lock"), timeout=LOCK_WAIT_S):
                yield
        except Timeout as e:
            raise LockTimeout(f"collection {collection_id} lock not acquired in {LOCK_WAIT_S} s") from e
