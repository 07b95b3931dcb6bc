"""Access records: who obtained which bytes of which file (and tag), and used single-use links.

A record aggregates every delivery of one file's copy for one tag to one client, the client being
its address and user agent. It keeps the union of the byte spans sent (`sent_spans`), so
`percentage_obtained` counts each byte once however the client split, repeated or resumed its
requests, and an aborted transfer counts only what was sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leaktrace.ids import now_ms
from leaktrace.spans import Span, covered, union
from leaktrace.store.db import Database
from leaktrace.store.models import AccessRecord, ConsumedLink

UNTAGGED = ""  # the record's tag for files delivered without one (plain outputs, uploads)
MAX_USER_AGENT_CHARS = 1000
MAX_ACCEPT_LANGUAGE_CHARS = 200
PERCENT = 100.0


@dataclass(frozen=True)
class Delivery:
    """One response's worth of bytes sent to one client (a download, a range, a resumed range)."""

    user_id: str
    application_id: str | None
    job_id: str | None
    file_id: str
    tag: str | None
    file_size: int
    spans: tuple[Span, ...]  # the byte spans actually sent, [start, end)
    at_ms: int
    ip_address: str | None
    user_agent: str | None
    accept_language: str | None
    highest_resolution: int | None  # frame height of what was sent, pixels
    streaming_only: bool = False
    ip_country: str | None = None
    ip_type: str | None = None

    @property
    def client(self) -> tuple[str, str, str | None, str | None]:
        """What makes deliveries one record: file, tag, address, user agent."""
        return (self.file_id, self.tag or UNTAGGED, self.ip_address, _clip(self.user_agent, MAX_USER_AGENT_CHARS))


def _clip(text: str | None, limit: int) -> str | None:
    return text[:limit] if text else None


def _matching(delivery: Delivery) -> Sequence[AccessRecord]:
    file_id, tag, ip_address, user_agent = delivery.client
    stmt = select(AccessRecord).where(AccessRecord.file_id == file_id, AccessRecord.tag == tag)
    stmt = stmt.where(AccessRecord.ip_address.is_(None) if ip_address is None else AccessRecord.ip_address == ip_address)
    stmt = stmt.where(AccessRecord.user_agent.is_(None) if user_agent is None else AccessRecord.user_agent == user_agent)
    return stmt.order_by(AccessRecord.first_accessed_at, AccessRecord.id).with_for_update()


def _merge(session: Session, delivery: Delivery) -> None:
    record = session.scalars(_matching(delivery)).first()
    sent = sum(end - start for start, end in delivery.spans)
    if record is None:
        file_id, tag, ip_address, user_agent = delivery.client
        record = AccessRecord(
            user_id=delivery.user_id, application_id=delivery.application_id, job_id=delivery.job_id,
            file_id=file_id, tag=tag, ip_address=ip_address, user_agent=user_agent,
            ip_country=delivery.ip_country, ip_type=delivery.ip_type,
            first_accessed_at=delivery.at_ms, last_accessed_at=delivery.at_ms, bytes_sent=0, sent_spans=[],
            streaming_only=delivery.streaming_only,
        )  # fmt: skip
        session.add(record)
    spans = union([tuple(span) for span in record.sent_spans or []] + list(delivery.spans))
    record.sent_spans = [list(span) for span in spans]
    record.bytes_sent = (record.bytes_sent or 0) + sent
    record.percentage_obtained = PERCENT * covered(spans) / delivery.file_size if delivery.file_size else PERCENT
    record.first_accessed_at = min(record.first_accessed_at, delivery.at_ms)
    record.last_accessed_at = max(record.last_accessed_at, delivery.at_ms)
    record.accept_language = _clip(delivery.accept_language, MAX_ACCEPT_LANGUAGE_CHARS) or record.accept_language
    record.application_id = record.application_id or delivery.application_id
    record.ip_country = record.ip_country or delivery.ip_country
    record.ip_type = record.ip_type or delivery.ip_type
    if delivery.highest_resolution is not None:
        record.highest_resolution = max(record.highest_resolution or 0, delivery.highest_resolution)
    record.streaming_only = record.streaming_only and delivery.streaming_only
    session.flush()


def record(db: Database, deliveries: Sequence[Delivery]) -> None:
    """Add a batch of deliveries to their clients' records, in one transaction."""
    if not deliveries:
        return
    with db.write() as session:
        for delivery in deliveries:
            _merge(session, delivery)


def records_of(db: Database, *, file_id: str) -> list[AccessRecord]:
    """Every access record of a file, oldest first."""
    with db.read() as session:
        stmt = select(AccessRecord).where(AccessRecord.file_id == file_id)
        return list(session.scalars(stmt.order_by(AccessRecord.first_accessed_at, AccessRecord.id)))


def consume_link(db: Database, *, signature: str, expires_at_ms: int) -> bool:
    """Mark a single-use link used; False when it already was (whoever raced for it lost).

    The signature is the primary key, so of two transactions inserting it at once exactly one
    commits. Rows of links that have expired go in the same transaction: expired links are refused
    before they get here.
    """
    try:
        with db.write() as session:
            session.execute(delete(ConsumedLink).where(ConsumedLink.expires_at < now_ms()))
            session.add(ConsumedLink(signature=signature, expires_at=expires_at_ms))
    except IntegrityError:
        return False
    return True
