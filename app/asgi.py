"""A base for the app's pure ASGI middlewares (pure ASGI so streamed answers pass through untouched), and which
paths answer errors in OpenAI's shape."""

from __future__ import annotations


def openai_path(path: str) -> bool:
    """Whether ``path`` is under the OpenAI-compatible API (/v1), whose errors are {"error": {...}}, not {"detail"}."""
    return path == "/v1" or path.startswith("/v1/")


class HttpMiddleware:
    """Non-HTTP scopes (lifespan, websockets) go straight to the wrapped app; HTTP requests to `handle`."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send) -> None:
        raise NotImplementedError
