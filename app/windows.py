"""Sliding-window event counts per key, for the question rate limit and the sign-in limiter.

With `AUTOGLM_REDIS_URL` set (the production shape: several API replicas behind a load balancer) the
events live in Redis, one sorted set per key scored by wall-clock time, so every replica counts the
same events and a user gets the configured rate however the balancer spreads the requests. Without it
(the embedded default: one API process) they live in this process's memory. While Redis fails, each
process falls back to its own memory (logged once per outage): limits loosen to per replica, they do
not disappear, and no request fails because a limiter could not be reached.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque

from app.settings import settings

log = logging.getLogger(__name__)

# KEYS[1] the key; ARGV now, window_s, limit (0 = only count), add (1/0), member.
# Returns {events in the window (after adding), seconds until the oldest leaves it (0 if none)}; with a
# limit, a key already at it gets nothing added. One script: check and add are atomic across replicas.
_SCRIPT = """
local key, now, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, add = tonumber(ARGV[3]), ARGV[4] == "1"
redis.call("ZREMRANGEBYSCORE", key, "-inf", now - window)
local n = redis.call("ZCARD", key)
if add and (limit == 0 or n < limit) then
  redis.call("ZADD", key, now, ARGV[5])
  redis.call("PEXPIRE", key, math.ceil(window * 1000))
  n = n + 1
  if limit > 0 then return {n, "0"} end
end
local oldest = redis.call("ZRANGE", key, 0, 0, "WITHSCORES")
if oldest[2] == nil then return {n, "0"} end
return {n, tostring(tonumber(oldest[2]) + window - now)}
"""


class SlidingWindows:
    """Contract: `record(key, window_s, limit)` adds an event unless `limit` are already in the window and
    returns the whole seconds to wait (0 = recorded); `count(key, window_s)` -> (events, seconds until the
    oldest leaves); `add(key, window_s)` adds one unconditionally; `clear(key)` forgets the key."""

    def __init__(self, name: str) -> None:
        self.name = name  # part of the Redis key: limiters with the same keys stay apart
        self._memory: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._client = None
        self._client_url = ""
        self._script = None
        self._down_since: float | None = None

    # --- Redis ------------------------------------------------------------------------------------
    def _redis(self):
        """The Redis client for the configured URL, or None (not configured)."""
        url = settings.redis_url
        if not url:
            return None
        if self._client is None or self._client_url != url:
            import redis

            self._client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
            self._client_url = url
            self._script = self._client.register_script(_SCRIPT)
        return self._client

    def _run(self, key: str, window_s: float, limit: int, add: bool) -> tuple[int, float] | None:
        """(events, seconds until the oldest leaves) from Redis, or None to use memory instead."""
        client = self._redis()
        if client is None:
            return None
        import redis

        rkey = f"{settings.broker_key_prefix}autoglm:window:{self.name}:{key}"
        try:
            n, wait = self._script(
                keys=[rkey], args=[time.time(), window_s, limit, int(add), uuid.uuid4().hex], client=client
            )
        except redis.exceptions.RedisError as e:
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning(
                    "%s limiter: Redis failed (%s); counting in this process until it is back", self.name, e
                )
            return None
        if self._down_since is not None:
            log.info("%s limiter: Redis is back after %.0f s", self.name, time.monotonic() - self._down_since)
            self._down_since = None
        return int(n), float(wait)

    # --- memory -----------------------------------------------------------------------------------
    def _local(self, key: str, window_s: float, limit: int, add: bool) -> tuple[int, float]:
        now = time.monotonic()
        with self._lock:
            q = self._memory.setdefault(key, deque())
            while q and q[0] <= now - window_s:
                q.popleft()
            if add and (limit == 0 or len(q) < limit):
                q.append(now)
                if limit:
                    return len(q), 0.0
            n = len(q)
            if not q:
                self._memory.pop(key, None)
            return n, (q[0] + window_s - now) if q else 0.0

    def _events(self, key: str, window_s: float, limit: int, add: bool) -> tuple[int, float]:
        got = self._run(key, window_s, limit, add)
        return got if got is not None else self._local(key, window_s, limit, add)

    # --- the contract ---------------------------------------------------------------------------
    def record(self, key: str, window_s: float, limit: int) -> int:
        n, wait = self._events(key, window_s, max(limit, 1), True)
        return 0 if wait <= 0 else max(1, math.ceil(wait))

    def count(self, key: str, window_s: float) -> tuple[int, float]:
        return self._events(key, window_s, 0, False)

    def add(self, key: str, window_s: float) -> None:
        self._events(key, window_s, 0, True)

    def clear(self, key: str | None = None) -> None:
        """Forget a key (None: every key this process holds in memory; Redis keys expire by themselves)."""
        with self._lock:
            if key is None:
                self._memory.clear()
            else:
                self._memory.pop(key, None)
        if key is not None and (client := self._redis()) is not None:
            import redis

            try:
                client.delete(f"{settings.broker_key_prefix}autoglm:window:{self.name}:{key}")
            except redis.exceptions.RedisError:
                pass  # the key expires after its window
