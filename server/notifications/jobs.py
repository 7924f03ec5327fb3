"""The sender: drains the notification outbox through WeChat subscribe messages.

Scheduled every `notification_send_interval_s` (10 s) as

    send_pending(db, client, TemplateSet.from_settings(settings), clock.now(),
                 limit=settings.notification_batch_max)

from any number of scheduler processes at once.
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from server.core.db import Database
from server.models import Notification, NotificationStatus
from server.notifications import repository as repo
from server.notifications import rules, templates
from server.notifications.templates import RenderError, TemplateSet
from server.wechat.miniprogram import MiniProgramClient, SubscribeMessage, WeChatError

log = logging.getLogger(__name__)

_ERROR_MAX = 500  # Notification.last_error's length


class Outcome(enum.StrEnum):
    SENT = "sent"
    #: Failed for now; pending again at `next_attempt_at`.
    RETRY = "retry"
    UNDELIVERABLE = "undeliverable"


@dataclass
class SendCounts:
    sent: int = 0
    retry: int = 0
    undeliverable: int = 0

    def add(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)

    @property
    def total(self) -> int:
        return self.sent + self.retry + self.undeliverable


def send_pending(
    db: Database,
    client: MiniProgramClient,
    tpl: TemplateSet,
    now: datetime,
    *,
    limit: int = 200,
) -> SendCounts:
    """Send up to `limit` notifications due at `now`, each in its own transaction.

    **One transaction per notification, and the send inside it.** The row is locked
    (`SELECT ... FOR UPDATE SKIP LOCKED`), sent to WeChat, marked, and only then committed.
    While one sender holds a row, every other sender skips it; once it commits, the row is no
    longer pending. So two scheduler processes never send one notification twice, and a run
    holds one row lock (and one connection) at a time rather than a batch's worth while it
    waits on WeChat. This departs from "one transaction per job run" on purpose: a send is a
    side effect outside the database, and a batch transaction would widen the window below
    from one message to the whole batch.

    **At least once, not exactly once.** WeChat's subscribeMessage.send has no idempotency
    key, so nothing can make the send and our commit atomic. If the process dies, the
    connection drops, or the commit fails after WeChat accepted the message (or WeChat
    delivered it but the answer timed out, which the client reports as `WeChatBusy`), the row
    is still pending and the rider gets that one message again at the next attempt. The
    window is one HTTP round trip per message; a duplicate "your deposit was refunded" is the
    price of never losing one.

    On SQLite the attempt counter is written before the send, so the transaction holds the
    database's write lock from then on (SQLite cannot upgrade a read transaction once another
    writer committed); other writers wait for at most one WeChat round trip.
    """
    counts = SendCounts()
    for _ in range(limit):
        with db.transaction(immediate=True) as session:
            outcome = send_next(session, client, tpl, now)
        if outcome is None:
            break
        counts.add(outcome)
    if counts.total:
        log.info(
            "notifications: %d sent, %d to retry, %d undeliverable",
            counts.sent,
            counts.retry,
            counts.undeliverable,
        )
    return counts


def send_next(
    session: Session, client: MiniProgramClient, tpl: TemplateSet, now: datetime
) -> Outcome | None:
    """Lock, send and mark the next due notification; None when none is due. The caller
    commits (see `send_pending` for why one notification per transaction)."""
    picked = repo.lock_next_due(session, now)
    if picked is None:
        return None
    note, openid = picked
    note.attempts += 1
    session.flush()

    try:
        payload = json.loads(note.payload)
        if not isinstance(payload, dict):
            raise RenderError("payload is not a JSON object")
    except ValueError as exc:
        return _undeliverable(note, f"bad payload: {exc}")
    stale = rules.stale_reason(note.kind, payload, now)
    if stale is not None:
        return _undeliverable(note, f"not sent: {stale}")
    try:
        message = build_message(session, tpl, note, openid, payload)
    except RenderError as exc:
        return _undeliverable(note, f"bad payload: {exc}")
    if not message.template_id:
        return _undeliverable(note, "no template id configured for this kind")

    try:
        msgid = client.send_subscribe_message(message)
    except WeChatError as exc:
        if exc.permanent:
            return _undeliverable(note, str(exc))
        return _retry(note, now, str(exc))
    except Exception as exc:  # a bug must not wedge the outbox: back off like any failure
        log.exception("sending notification %s failed", note.id)
        return _retry(note, now, f"{type(exc).__name__}: {exc}")

    note.status = NotificationStatus.SENT
    note.sent_at = now
    note.last_error = None
    log.debug("notification %s sent (msgid %s)", note.id, msgid)
    return Outcome.SENT


def build_message(
    session: Session,
    tpl: TemplateSet,
    note: Notification,
    openid: str,
    payload: dict[str, Any],
) -> SubscribeMessage:
    """The subscribe message for one notification (the kiosk's name looked up by id)."""
    kiosk_id = payload.get("kiosk_id")
    if isinstance(kiosk_id, str) and "kiosk_name" not in payload:
        name = repo.kiosk_names(session, [kiosk_id]).get(kiosk_id)
        if name:
            payload = {**payload, "kiosk_name": name}
    rendered = templates.render(note.kind, payload, note.created_at)
    return SubscribeMessage(
        touser=openid,
        template_id=tpl.id_of(rendered.template),
        data=rendered.data,
        page=templates.page_for(tpl, payload),
        miniprogram_state=tpl.miniprogram_state,
    )


def _undeliverable(note: Notification, error: str) -> Outcome:
    note.status = NotificationStatus.UNDELIVERABLE
    note.last_error = error[:_ERROR_MAX]
    log.info("notification %s (%s) undeliverable: %s", note.id, note.kind, error)
    return Outcome.UNDELIVERABLE


def _retry(note: Notification, now: datetime, error: str) -> Outcome:
    if rules.gives_up(note.created_at, now):
        return _undeliverable(note, f"gave up after {note.attempts} attempts: {error}")
    note.next_attempt_at = now + rules.retry_delay(note.attempts)
    note.last_error = error[:_ERROR_MAX]
    log.warning(
        "notification %s (%s) attempt %d failed, next at %s: %s",
        note.id,
        note.kind,
        note.attempts,
        note.next_attempt_at.isoformat(),
        error,
    )
    return Outcome.RETRY
