"""A base for the app's pure ASGI middlewares (pure ASGI so streamed answers pass through untouched)."""

from __future__ import annotations


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
