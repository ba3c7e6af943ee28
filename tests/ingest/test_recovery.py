"""ingest.recovery on the embedded broker (kombu's SQLAlchemy transport on SQLite, no worker consuming):
the outbox sends again exactly the queued documents the broker does not hold, once; stuck documents are
claimed once; cancelled ones are left alone."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from app.db import session_scope
from app.models import Collection, Document, utcnow
from app.settings import settings
from ingest.recovery import broker_document_ids, recover_stuck, resend_queued
from ingest.tasks import enqueue_document
from tests.app.support import env  # noqa: F401


def _docs(**fields) -> list[int]:
    """Two documents with `fields`, last touched an hour ago (past both thresholds)."""
    with session_scope() as s:
        coll = s.exec(select(Collection)).first() or Collection(name="c")
        s.add(coll)
        s.flush()
        rows = [
            Document(
                collection_id=coll.id,
                filename=f"{i}.txt",
                sha256="0" * 64,
                updated_at=utcnow() - timedelta(hours=1),
                **fields,
            )  # fmt: skip
            for i in range(2)
        ]
        s.add_all(rows)
        s.commit()
        return [r.id for r in rows]


def test_outbox_sends_only_what_the_broker_lacks(env):  # noqa: F811
    assert settings.embedded_broker
    held, lost = _docs(status="queued")
    assert enqueue_document(held)
    assert broker_document_ids() == {held}
    assert resend_queued() == [lost]
    assert broker_document_ids() == {held, lost}
    assert resend_queued() == []  # both are in the broker now (and just sent)


def test_stuck_check_skips_cancelled_and_claims_once(env):  # noqa: F811
    stuck, _ = _docs(status="processing", attempts=1)
    cancelled, _ = _docs(status="cancelled", attempts=1)
    with session_scope() as s:  # the second processing document still has a fresh heartbeat
        fresh = s.exec(select(Document).where(Document.status == "processing", Document.id != stuck)).one()
        fresh.updated_at = utcnow()
        s.add(fresh)
        s.commit()
    assert recover_stuck() == ([stuck], [])
    assert recover_stuck() == ([], [])
    assert broker_document_ids() == {stuck}
    with session_scope() as s:
        assert s.get(Document, stuck).status == "queued"
        assert s.get(Document, cancelled).status == "cancelled"
        assert s.get(Document, fresh.id).status == "processing"
