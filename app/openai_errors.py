"""OpenAI's error shape for everything under /v1: {"error": {"message", "type", "param", "code"}}.

`OpenAIError` is the HTTPException the /v1 routes raise; `openai_error_handler` (installed by app.main for /v1
paths) words the app's HTTP errors, the router's 404 and 405, validation errors and unhandled ones (500) the
way OpenAI's API does; `error_body` is the body (a failed stream's last event too; the middlewares' 413 and
503 build the same).
"""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
          404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 503: "server_error"}  # fmt: skip
# OpenAI's codes for the errors raised without one (the app's own HTTPExceptions: auth, rate limit, body size)
_CODES = {401: "invalid_api_key", 403: "forbidden", 404: "not_found", 413: "request_too_large",
          429: "rate_limit_exceeded"}  # fmt: skip
SERVER_ERROR = "The server had an error while processing your request."


class OpenAIError(HTTPException):
    """An HTTP error with OpenAI's `type` and `code`."""

    def __init__(
        self,
        status_code: int,
        message: str,
        code: str | None = None,
        type_: str | None = None,
        param: str | None = None,
    ):
        super().__init__(status_code, message)
        self.code = code
        self.type = type_ or _TYPES.get(status_code, "server_error")
        self.param = param


def error_body(
    status_code: int, message: str, code: str | None, type_: str | None = None, param: str | None = None
) -> dict:
    return {"error": {"message": message, "type": type_ or _TYPES.get(status_code, "server_error"),
                      "param": param, "code": code}}  # fmt: skip


# pydantic's names for the members of a union ("str", "list[str]", "dict[str,any]"): in an error's loc they
# follow the field, which is what a client sent and what OpenAI's `param` names
_SCALAR_TAGS = {"str", "int", "float", "bool", "bytes", "none", "any"}


def _field_path(loc) -> tuple:
    return tuple(p for p in loc[1:] if not (isinstance(p, str) and ("[" in p or p in _SCALAR_TAGS)))


def _first_invalid(errors: list[dict]) -> tuple[tuple, str]:
    """(field path, message) of the first invalid field. A field of several types fails once per type: the
    deepest failure is the type the value's shape chose ("input": [1] fails at input.0), and failures at the
    same depth are one message naming each type ("Input should be a valid string or a valid list")."""
    if not errors:
        return (), "invalid"
    base = _field_path(errors[0].get("loc", ()))
    same = [
        (p, e.get("msg", "invalid"))
        for e in errors
        if (p := _field_path(e.get("loc", ())))[: len(base)] == base
    ]
    path = max((p for p, _ in same), key=len) if base else base
    msgs = list(dict.fromkeys(m for p, m in same if p == path)) or [errors[0].get("msg", "invalid")]
    return path, " or ".join([msgs[0], *(m.removeprefix("Input should be ") for m in msgs[1:])])


def openai_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Used for /v1 paths: HTTP errors (the app's, and the router's 404 and 405 for a path or method that does
    not exist, worded as OpenAI's API words them), validation errors and unhandled ones (500) in OpenAI's
    error shape."""
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":  # its loc is the character where parsing stopped, no field
            at = first.get("loc", ("body", "?"))[-1]
            message = f"Invalid request: the body is not valid JSON ({first.get('msg', 'invalid')} at character {at})."
            return JSONResponse(error_body(400, message, "invalid_request"), 400)
        path, message = _first_invalid(exc.errors())
        if not path:  # the body itself: not an object, or not read as JSON at all (curl -d sends a form type)
            kind = request.headers.get("content-type", "")
            sent = "" if "json" in kind else f" (it came as {kind.split(';')[0] or 'no type'!r})"
            message = f"Invalid request: the body must be a JSON object, sent as Content-Type: application/json{sent}."
            return JSONResponse(error_body(400, message, "invalid_request"), 400)
        where = ".".join(str(p) for p in path)
        body = error_body(400, f"Invalid request: {where}: {message}", "invalid_request", param=where or None)
        return JSONResponse(body, 400)
    if not isinstance(exc, StarletteHTTPException):
        return JSONResponse(error_body(500, SERVER_ERROR, None, "server_error"), 500)
    headers = getattr(exc, "headers", None)
    if type(exc) is StarletteHTTPException and exc.status_code in (404, 405):  # the router's: no such route
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            return JSONResponse(error_body(404, f"Invalid URL ({where})", None), 404, headers=headers)
        allow = [m.strip() for m in (headers or {}).get("Allow", "").split(",") if m.strip()]
        allow = [m for m in allow if m != "HEAD" or "GET" not in allow]
        message = f"Invalid method for URL ({where}): use {' or '.join(allow)}"
        return JSONResponse(error_body(405, message, None), 405, headers=headers)
    code = getattr(exc, "code", None) or _CODES.get(exc.status_code)
    body = error_body(
        exc.status_code, str(exc.detail), code, getattr(exc, "type", None), getattr(exc, "param", None)
    )
    return JSONResponse(body, exc.status_code, headers=headers)


def no_model(name: str) -> OpenAIError:
    return OpenAIError(
        404, f"The model `{name}` does not exist or you do not have access to it.", "model_not_found"
    )
