"""Property-based API fuzzing with schemathesis: every operation of the OpenAPI schema, in-process (ASGI),
with schema-valid and schema-violating inputs, as an anonymous caller and as an admin (API key). No response
may be a server error, and every 4xx must be JSON that says what was wrong.

Examples per operation and mode: AUTOGLM_FUZZ_EXAMPLES (default 12; derandomized, so CI runs are
repeatable). Failures are collected over all operations, then reported together."""

from __future__ import annotations

import os
import time

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the fuzz test needs `schemathesis` (dev extra)")
from hypothesis import HealthCheck, Phase, given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from tests.security.test_access_matrix import build_world  # noqa: E402

EXAMPLES = int(os.environ.get("AUTOGLM_FUZZ_EXAMPLES", "12"))
pytestmark = pytest.mark.slow


def _message(response) -> str | None:
    """The human-readable message of an error body ({"detail"} or OpenAI's {"error": {"message"}})."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    detail = body.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail and all(isinstance(e, dict) and e.get("msg") for e in detail):
        return "; ".join(e["msg"] for e in detail)
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        return error["message"]
    return None


def _fuzz_operation(operation, mode, headers: dict[str, str], failures: list[str]) -> int:
    """Up to EXAMPLES requests for one operation in one mode; returns how many were made."""
    calls = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: every failure is listed as found
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        nonlocal calls
        where = f"{case.method} {case.formatted_path} ({mode.value})"
        calls += 1
        try:
            response = case.call(headers=headers)
        except Exception as e:  # the app raised: the server would have answered 500
            failures.append(f"{where}: raised {type(e).__name__}: {e} body={case.body!r:.200}")
            return
        if response.status_code >= 500:
            failures.append(f"{where}: {response.status_code} {response.text[:300]}")
        elif response.status_code >= 400 and _message(response) is None:
            failures.append(f"{where}: {response.status_code} without a message: {response.text[:300]}")

    try:
        run()
    except Unsatisfiable:  # nothing to break (an operation without parameters has no negative cases)
        pass
    return calls


def _fuzz(schema, headers: dict[str, str], failures: list[str]) -> int:
    """Every operation in both generation modes; returns the number of requests made."""
    return sum(
        _fuzz_operation(result.ok(), mode, headers, failures)
        for result in schema.get_all_operations()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    )


def test_no_server_errors_and_clear_client_errors(app_client):
    client = app_client(AUTOGLM_ASK_RATE_PER_MINUTE="100000")
    world = build_world(client.app)
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = sum(1 for _ in schema.get_all_operations())
    failures: list[str] = []
    t0 = time.perf_counter()
    anonymous = _fuzz(schema, {}, failures)
    admin = _fuzz(schema, world.keys["admin"], failures)
    took = time.perf_counter() - t0
    print(
        f"schemathesis: {operations} operations x 2 modes x up to {EXAMPLES} examples; "
        f"{anonymous} anonymous + {admin} admin requests in {took:.1f} s; {len(failures)} failures"
    )
    assert operations >= 35
    assert not failures, "\n".join(dict.fromkeys(failures))  # each distinct failure once
