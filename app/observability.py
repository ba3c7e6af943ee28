"""Request ids, structured (JSON) logs and per-route latency: one ASGI middleware and a log formatter.

Every log record made while a request is handled carries its `request_id` (a contextvar), taken from
the client's `X-Request-ID` when it is sane, else a fresh one; the response echoes it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid

from app import metrics
from app.asgi import HttpMiddleware

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger("app.access")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (so any formatter may use it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any `extra` fields."""

    converter = time.gmtime
    _skip = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "request_id"}

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
        }
        out.update({k: v for k, v in vars(record).items() if k not in self._skip and not k.startswith("_")})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Request ids on every record; JSON lines on the root handlers (adding one on stderr if there is
    none) unless json_lines is False. Idempotent."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
        root.setLevel(level)
    for h in root.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in h.filters):
            h.addFilter(RequestIdFilter())
        if json_lines and not isinstance(h.formatter, JsonFormatter):
            h.setFormatter(JsonFormatter())


class RequestContextMiddleware(HttpMiddleware):
    """Request id in, header out, access log, latency."""

    async def handle(self, scope, receive, send) -> None:
        sent = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = sent if _SANE_ID.match(sent) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        status_code = 500
        t0 = time.perf_counter()

        async def send_with_id(message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            took = time.perf_counter() - t0
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template.startswith("/static"):
                template = "/static"
            metrics.REQUEST_SECONDS.labels(scope["method"], template, str(status_code)).observe(took)
            log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status_code,
                extra={
                    "request_id": rid,
                    "route": template,
                    "status": status_code,
                    "duration_ms": round(took * 1000, 2),
                },
            )
            request_id_var.reset(token)
