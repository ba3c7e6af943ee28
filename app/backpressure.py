"""Back-pressure: bounded concurrency per work class, a short bounded wait queue, then 503 + Retry-After.

Work classes: `search` (POST /api/search, POST /v1/embeddings), `ask` (POST /api/ask, POST
/v1/chat/completions, POST /v1/completions) and `upload` (POST /api/collections/{id}/documents). A request of a class runs when
fewer than its limit are running; otherwise it waits in a FIFO queue of bounded length for at most
`busy_queue_timeout_s`; when the queue is full, or the wait runs out, it gets 503 with `Retry-After` and a
JSON body ({"detail"}, or OpenAI's {"error"} under /v1/). So an overload costs callers a fast refusal instead of growing latency, threads
and memory without bound. A slot is held until the response is fully sent (a streamed answer holds it
to the last event). Search and ask take their slot before the body is read; an upload takes it once its
body has arrived (spooled to disk meanwhile), so a large file on a slow link holds no slot while it is
sent and the slot bounds only the files being read into memory and stored. Other routes are not gated.

A pure ASGI middleware on the event loop: the gates need no locks.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass

from fastapi import HTTPException
from prometheus_client import Counter, Gauge

from app.asgi import openai_path
from app.metrics import registry
from app.settings import settings

_ROUTES = (
    ("search", re.compile(r"^/api/search/?$")),
    ("search", re.compile(r"^/v1/embeddings/?$")),
    ("ask", re.compile(r"^/api/ask/?$")),
    ("ask", re.compile(r"^/v1/(chat/)?completions/?$")),
    ("upload", re.compile(r"^/api/collections/[^/]+/documents/?$")),
)
MAX_RETRY_AFTER_S = 30

IN_FLIGHT = Gauge(
    "autoglm_backpressure_in_flight", "Requests running per work class.", ["cls"], registry=registry
)
QUEUED = Gauge(
    "autoglm_backpressure_queued", "Requests waiting for a slot per work class.", ["cls"], registry=registry
)
REJECTED = Counter(
    "autoglm_backpressure_rejected",
    "Requests refused with 503 per work class and reason (queue_full, wait_timeout).",
    ["cls", "reason"],
    registry=registry,
)


def work_class(method: str, path: str) -> str | None:
    """The gated class of a request, or None for requests that are not gated."""
    if method != "POST":
        return None
    return next((name for name, pattern in _ROUTES if pattern.match(path)), None)


def busy_detail(cls: str) -> str:
    return f"Server busy: too many {cls} requests at once; retry after the Retry-After delay"


class Gate:
    """At most `limit` holders; up to `queue` callers wait (FIFO, each at most `timeout_s`); the rest are
    refused. A released slot passes straight to the oldest waiter. Event-loop only (not thread-safe)."""

    def __init__(self, name: str, limit: int, queue: int, timeout_s: float) -> None:
        if limit < 1 or queue < 0 or timeout_s < 0:
            raise ValueError(f"gate {name}: need limit >= 1, queue >= 0, timeout >= 0; got {limit=} {queue=}")
        self.name, self.limit, self.queue, self.timeout_s = name, limit, queue, timeout_s
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._service_s = 1.0  # running mean of how long a slot is held (for Retry-After)

    @property
    def waiting(self) -> int:
        return sum(not f.done() for f in self._waiters)

    async def acquire(self) -> str | None:
        """None once a slot is held (the caller must release it), else why not: queue_full, wait_timeout."""
        if self.active < self.limit and not self.waiting:
            self.active += 1
            self._publish()
            return None
        if self.waiting >= self.queue:
            return "queue_full"
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._publish()
        try:
            await asyncio.wait_for(fut, self.timeout_s)
        except BaseException as e:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as the wait ended: pass it on
            with suppress(ValueError):
                self._waiters.remove(fut)
            self._publish()
            if isinstance(e, TimeoutError):
                return "wait_timeout"
            raise
        self._publish()
        return None

    def release(self, held_s: float | None = None) -> None:
        if held_s is not None:
            self._service_s += 0.2 * (held_s - self._service_s)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes to this waiter; `active` is unchanged
                self._publish()
                return
        self.active -= 1
        assert self.active >= 0, f"{self.active=}"
        self._publish()

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free: the queue ahead drained at `limit` slots of mean hold time."""
        est = self._service_s * (self.waiting + 1) / self.limit
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(est)))

    def _publish(self) -> None:
        IN_FLIGHT.labels(self.name).set(self.active)
        QUEUED.labels(self.name).set(self.waiting)


@dataclass
class Gates:
    """The gates of one app, built from settings when the app starts serving."""

    by_class: dict[str, Gate]

    @classmethod
    def from_settings(cls) -> Gates:
        t = settings.busy_queue_timeout_s
        return cls(
            {
                "search": Gate("search", settings.max_concurrent_search, settings.max_queued_search, t),
                "ask": Gate("ask", settings.max_concurrent_ask, settings.max_queued_ask, t),
                "upload": Gate("upload", settings.max_concurrent_upload, settings.max_queued_upload, t),
            }
        )


_current: Gates | None = None  # the serving app's gates (one app per process outside tests)


def retry_after_s(cls: str) -> int:
    """Retry-After for a refusal of this class made outside the middleware (a full engine queue)."""
    return _current.by_class[cls].retry_after_s() if _current is not None else 1


async def busy_response(scope, send, cls: str, retry_after: int) -> None:
    """503 with Retry-After; {"detail"} under /api, OpenAI's error shape under /v1/."""
    detail = busy_detail(cls)
    if openai_path(scope["path"]):
        body = {"error": {"message": detail, "type": "server_error", "param": None, "code": "server_busy"}}
    else:
        body = {"detail": detail}
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"retry-after", str(retry_after).encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Busy(HTTPException):
    """A refusal raised from inside the request (an upload whose body has arrived): the app's handler
    turns it into the same 503."""

    def __init__(self, cls: str, retry_after: int) -> None:
        super().__init__(503, busy_detail(cls), headers={"Retry-After": str(retry_after)})


class BackpressureMiddleware:
    """Gates the work classes (see the module docstring); everything else passes straight through."""

    def __init__(self, app) -> None:
        global _current
        self.app = app
        self.gates = _current = Gates.from_settings()

    async def __call__(self, scope, receive, send) -> None:
        cls = work_class(scope.get("method", ""), scope["path"]) if scope["type"] == "http" else None
        if cls is None:
            await self.app(scope, receive, send)
            return
        gate = self.gates.by_class[cls]
        if cls == "upload":
            await self._after_body(gate, scope, receive, send)
            return
        refused = await gate.acquire()
        if refused is not None:
            REJECTED.labels(cls, refused).inc()
            await busy_response(scope, send, cls, gate.retry_after_s())
            return
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            gate.release(time.perf_counter() - t0)

    async def _after_body(self, gate: Gate, scope, receive, send) -> None:
        """Run the request, taking the slot when the last body message arrives (refused: Busy)."""
        held: float | None = None  # when the slot was taken

        async def gated_receive():
            nonlocal held
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body") and held is None:
                refused = await gate.acquire()
                if refused is not None:
                    REJECTED.labels(gate.name, refused).inc()
                    raise Busy(gate.name, gate.retry_after_s())
                held = time.perf_counter()
            return message

        try:
            await self.app(scope, gated_receive, send)
        finally:
            if held is not None:
                gate.release(time.perf_counter() - held)
