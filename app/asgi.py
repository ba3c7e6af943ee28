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


class ApiCorsMiddleware(HttpMiddleware):
    """Starlette's CORSMiddleware for /api and /v1 only (the product's pages and /metrics stay same-origin):
    `origins` may call them with an API key; preflights (OPTIONS with Access-Control-Request-*) answered here.

    NOTE: without credentials: a listed site's page must not ride a signed-in user's session cookie."""

    def __init__(self, app, origins: list[str]) -> None:
        from starlette.middleware.cors import CORSMiddleware

        super().__init__(app)
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["*"],  # the openai JS client adds its own (x-stainless-*) to Authorization
            expose_headers=["Retry-After", "X-Request-ID"],
            max_age=600,
        )

    async def handle(self, scope, receive, send) -> None:
        path = scope["path"]
        api = path.startswith("/api/") or openai_path(path)
        await (self.cors if api else self.app)(scope, receive, send)
