"""One writer per collection index, and one compactor: Redis locks when Redis is configured, file locks otherwise."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from app.settings import settings

log = logging.getLogger(__name__)
# A holder that dies (SIGKILL, lost machine) keeps a Redis lock until it expires, and every other writer of
# the collection waits that long; so the lock lives briefly and the holder renews it while it works
# (writing a large segment or compacting can take minutes). File locks vanish with the process.
LOCK_TTL_S = 10
LOCK_RENEW_S = 2
LOCK_WAIT_S = 600


class LockTimeout(Exception):
    """The collection lock could not be taken in time (transient: the task retries)."""


@contextmanager
def collection_lock(collection_id: int) -> Iterator[None]:
    """The collection's writer lock: every change of its manifest (a document's commit, a delete, the commit of
    a compaction) holds it; waits up to LOCK_WAIT_S, then raises LockTimeout."""
    with _lock(f"collection:{collection_id}", f"collection-{collection_id}", wait=True):
        yield


@contextmanager
def compaction_lock(collection_id: int, wait: bool = False) -> Iterator[bool]:
    """One compactor per collection (beside its writer lock, which a compactor takes only to commit): yields
    whether it was taken; with wait=False, at once (another compactor is at work), else within LOCK_WAIT_S
    (then LockTimeout). A compactor that dies releases it as the writer lock is (expiry, or its process)."""
    try:
        with _lock(f"compaction:{collection_id}", f"compaction-{collection_id}", wait=wait):
            yield True
            return
    except _Busy:
        pass
    yield False


class _Busy(Exception):
    """A lock taken without waiting was held by someone else."""


@contextmanager
def _lock(key: str, file_name: str, wait: bool) -> Iterator[None]:
    if settings.redis_url:
        import redis

        client = redis.Redis.from_url(settings.redis_url)
        lock = client.lock(
            f"{settings.broker_key_prefix}autoglm:lock:{key}",
            timeout=LOCK_TTL_S,
            blocking_timeout=LOCK_WAIT_S,
            thread_local=False,  # the renewing thread uses the holder's token
        )
        if not lock.acquire(blocking=wait):
            client.close()
            if not wait:
                raise _Busy(key)
            raise LockTimeout(f"{key.replace(':', ' ')} lock not acquired in {LOCK_WAIT_S} s")
        done = threading.Event()
        renewer = threading.Thread(target=_renew, args=(lock, done), name="lock-renew", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()
            try:
                lock.release()
            except redis.exceptions.LockError:
                pass  # expired while held; the manifest commit already decided who won
            client.close()
    else:
        from filelock import FileLock, Timeout

        lock_dir = settings.data_dir / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        file_lock = FileLock(str(lock_dir / f"{file_name}.lock"), timeout=LOCK_WAIT_S if wait else 0)
        try:
            file_lock.acquire()
        except Timeout as e:
            if not wait:
                raise _Busy(key) from e
            raise LockTimeout(f"{key.replace(':', ' ')} lock not acquired in {LOCK_WAIT_S} s") from e
        try:
            yield
        finally:
            file_lock.release()


def _renew(lock, done: threading.Event) -> None:
    """Reset the lock's TTL every LOCK_RENEW_S until `done` (a lock lost meanwhile is logged, not fatal)."""
    import redis

    while not done.wait(LOCK_RENEW_S):
        try:
            lock.reacquire()
        except (redis.exceptions.LockError, redis.exceptions.RedisError):
            log.warning("could not renew the collection lock %s", lock.name, exc_info=True)
