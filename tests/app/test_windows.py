"""The limiters' sliding windows: in memory without Redis; in Redis, one count shared by every API replica
(two limiter objects stand for two replicas); back to memory while Redis is unreachable."""

from __future__ import annotations

import time
import uuid

import pytest

from app.security import RateLimiter
from app.sessions import LoginLimiter, login_keys
from app.settings import settings
from app.windows import SlidingWindows
from tests.app.support import REDIS_URL, redis_or_skip


@pytest.fixture
def shared_redis(monkeypatch):
    redis_or_skip()
    monkeypatch.setattr(settings, "redis_url", REDIS_URL)
    monkeypatch.setattr(settings, "broker_key_prefix", f"autoglm-test-{uuid.uuid4().hex[:8]}:")


def test_memory_window_limits_then_frees_a_slot_when_the_oldest_event_leaves(monkeypatch):
    monkeypatch.setattr(settings, "redis_url", "")
    w = SlidingWindows("t")
    assert [w.record("u", 0.6, 2) for _ in range(2)] == [0, 0]
    assert w.record("u", 0.6, 2) == 1  # refused: at most a second to wait (rounded up)
    assert w.record("other", 0.6, 2) == 0  # keys are independent
    time.sleep(0.7)
    assert w.record("u", 0.6, 2) == 0 and w.count("u", 0.6)[0] == 1


def test_two_replicas_share_one_question_budget_through_redis(shared_redis):
    a, b = RateLimiter(lambda: 3, 60.0), RateLimiter(lambda: 3, 60.0)  # two API processes
    assert [a.hit("user:1"), b.hit("user:1"), a.hit("user:1")] == [0, 0, 0]
    wait = b.hit("user:1")
    assert 55 <= wait <= 60  # the oldest of the three leaves the minute in ~60 s
    assert a.hit("user:1") > 0 and a.hit("user:2") == 0
    a.reset()  # memory only: the shared count stays
    assert b.hit("user:1") > 0


def test_two_replicas_share_failed_sign_ins_through_redis(shared_redis, monkeypatch):
    monkeypatch.setattr(settings, "login_max_failures", 3)
    monkeypatch.setattr(settings, "login_max_failures_per_account", 5)
    a, b = LoginLimiter(), LoginLimiter()
    ada = login_keys("ada", "10.0.0.1")
    a.failed(ada)
    b.failed(ada)
    assert a.retry_after(ada) == 0
    a.failed(ada)
    assert b.retry_after(ada) > 0  # the third failure was seen by the other replica
    assert b.retry_after(login_keys("bob", "10.0.0.1")) == 0  # another name at the same address signs in
    b.succeeded(ada)
    assert a.retry_after(ada) == 0
    # A name's failures from many addresses add up across replicas too.
    for i in range(5):
        limiter = (a, b)[i % 2]
        assert limiter.retry_after(login_keys("cy", f"10.0.1.{i}")) == 0
        limiter.failed(login_keys("cy", f"10.0.1.{i}"))
    assert a.retry_after(login_keys("cy", "10.0.1.99")) > 0


def test_unreachable_redis_falls_back_to_this_process(monkeypatch, caplog):
    monkeypatch.setattr(settings, "redis_url", "redis://127.0.0.1:1/0")
    limiter = RateLimiter(lambda: 2, 60.0)
    assert [limiter.hit("user:1"), limiter.hit("user:1")] == [0, 0]
    assert limiter.hit("user:1") > 0  # still limited, per process
    assert sum("counting in this process" in r.getMessage() for r in caplog.records) == 1  # logged once
