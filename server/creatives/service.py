"""Creatives use cases (SPEC §4 Creatives): submit, edit and resubmit, review.

Lifecycle: a submitted creative goes through `rules.check`; a match makes it `rejected`
with `check_rule`/`check_match`, otherwise it is `pending` for a person. An operator
approves a pending creative, or rejects a pending or approved one (pulling an approved
creative off the screens). An advertiser may edit a pending or rejected creative, which
runs the check again and puts it back in the queue; an approved one is never edited (what
plays must be what was reviewed), the advertiser submits a new one instead.

Approving a rejected creative — a false positive of the check, or a colleague's rejection
being reversed — needs `override=True` and a note; the audit log records it as
`creative.approve_override`, and `check_rule`/`check_match` stay on the creative so the
decision can be read later.

Contract with the playlist compiler: every status change bumps `Booking.revision` and
`Booking.updated_at` of each booking that uses the creative (booking_creatives).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from server.core.clock import clock
from server.core.errors import Conflict, DomainError, NotFound
from server.creatives import repository as repo
from server.creatives import rules
from server.creatives.media import MediaStore
from server.models import AuditLog, Creative, CreativeKind, CreativeStatus


class MediaNotUploaded(DomainError):
    code = "media_not_uploaded"


class KindMismatch(DomainError):
    code = "kind_mismatch"


class NotReviewable(Conflict):
    code = "not_reviewable"


class OverrideRequired(Conflict):
    code = "override_required"


class CreativeLocked(Conflict):
    code = "creative_approved"


@dataclass(frozen=True, slots=True)
class CreativeInput:
    kind: CreativeKind
    duration_ms: int
    title: str
    body_text: str
    declared_text: str
    sha256: str


def approved_ids(session: Session, advertiser_id: int, creative_ids: Sequence[int]) -> set[int]:
    """Those of `creative_ids` that belong to the advertiser and are approved."""
    return repo.approved_ids(session, advertiser_id, creative_ids)


def _media_url(store: MediaStore, data: CreativeInput) -> str:
    media = store.lookup(data.sha256)
    if media is None:
        raise MediaNotUploaded(
            f"no media with SHA-256 {data.sha256}; upload the file to POST /api/v1/ads/media first",
            sha256=data.sha256,
        )
    if media.media_type.kind != data.kind.value:
        raise KindMismatch(
            f"the media is {media.media_type.mime}, not a {data.kind.value}",
            kind=data.kind.value,
            media_type=media.media_type.mime,
        )
    return store.url(data.sha256)


def _apply(creative: Creative, data: CreativeInput, media_url: str) -> rules.Verdict:
    verdict = rules.check(data.title, data.body_text, data.declared_text)
    creative.kind = data.kind
    creative.duration_ms = data.duration_ms
    creative.title = data.title
    creative.body_text = data.body_text
    creative.declared_text = data.declared_text
    creative.sha256 = data.sha256
    creative.media_url = media_url
    creative.status = CreativeStatus.PENDING if verdict.ok else CreativeStatus.REJECTED
    creative.check_rule = verdict.rule
    creative.check_match = verdict.match[:200] if verdict.match is not None else None
    creative.review_note = None
    creative.reviewed_by = None
    creative.reviewed_at = None
    return verdict


def submit(
    session: Session, store: MediaStore, advertiser_id: int, data: CreativeInput
) -> Creative:
    media_url = _media_url(store, data)
    now = clock.now()
    creative = Creative(advertiser_id=advertiser_id, created_at=now, updated_at=now)
    _apply(creative, data, media_url)
    repo.add(session, creative)
    return creative


def get_own(session: Session, advertiser_id: int, creative_id: int) -> Creative:
    """404 for another advertiser's creative as for a missing one, so ids do not leak."""
    creative = repo.owned(session, advertiser_id, creative_id)
    if creative is None:
        raise NotFound(f"no creative {creative_id}", creative_id=creative_id)
    return creative


def list_own(
    session: Session,
    advertiser_id: int,
    *,
    status: CreativeStatus | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Sequence[Creative]:
    return repo.for_advertiser(
        session, advertiser_id, status=status, limit=limit, before_id=before_id
    )


def resubmit(
    session: Session, store: MediaStore, advertiser_id: int, creative_id: int, data: CreativeInput
) -> Creative:
    creative = repo.owned(session, advertiser_id, creative_id, lock=True)
    if creative is None:
        raise NotFound(f"no creative {creative_id}", creative_id=creative_id)
    if creative.status is CreativeStatus.APPROVED:
        raise CreativeLocked(
            f"creative {creative_id} is approved and may be playing; submit a new creative "
            "instead of editing it",
            creative_id=creative_id,
        )
    media_url = _media_url(store, data)
    before = creative.status
    _apply(creative, data, media_url)
    now = clock.now()
    creative.updated_at = now
    if creative.status is not before:
        repo.touch_bookings_using(session, creative.id, now)
    session.flush()
    return creative


def review_queue(
    session: Session,
    *,
    status: CreativeStatus | None = None,
    advertiser_id: int | None = None,
    limit: int = 100,
) -> Sequence[tuple[Creative, str]]:
    return repo.review_queue(session, status=status, advertiser_id=advertiser_id, limit=limit)


def get_any(session: Session, creative_id: int) -> Creative:
    creative = repo.by_id(session, creative_id)
    if creative is None:
        raise NotFound(f"no creative {creative_id}", creative_id=creative_id)
    return creative


def _review(
    session: Session,
    creative: Creative,
    *,
    status: CreativeStatus,
    actor: str,
    action: str,
    note: str,
) -> None:
    now = clock.now()
    before = creative.status
    creative.status = status
    creative.review_note = note or None
    creative.reviewed_by = actor
    creative.reviewed_at = now
    creative.updated_at = now
    bookings = repo.touch_bookings_using(session, creative.id, now)
    check = f"; check {creative.check_rule}: {creative.check_match}" if creative.check_rule else ""
    repo.add_audit(
        session,
        AuditLog(
            actor=actor[:64],
            action=action,
            subject=f"creative:{creative.id}",
            reason=note[:500],
            detail=f"status {before.value} -> {status.value}{check}; bookings touched: "
            f"{','.join(map(str, bookings)) or 'none'}"[:2000],
            created_at=now,
        ),
    )


def approve(
    session: Session, creative_id: int, *, actor: str, note: str = "", override: bool = False
) -> Creative:
    creative = repo.by_id(session, creative_id, lock=True)
    if creative is None:
        raise NotFound(f"no creative {creative_id}", creative_id=creative_id)
    if creative.status is CreativeStatus.APPROVED:
        raise NotReviewable(f"creative {creative_id} is already approved", creative_id=creative_id)
    action = "creative.approve"
    if creative.status is CreativeStatus.REJECTED:
        if not (override and note.strip()):
            by = (
                f"the automatic check (rule {creative.check_rule}: “{creative.check_match}”)"
                if creative.check_rule and creative.reviewed_by is None
                else f"{creative.reviewed_by}"
            )
            raise OverrideRequired(
                f"creative {creative_id} was rejected by {by}; approving it needs "
                '"override": true and a note saying why',
                creative_id=creative_id,
                check_rule=creative.check_rule,
            )
        action = "creative.approve_override"
    _review(
        session, creative, status=CreativeStatus.APPROVED, actor=actor, action=action, note=note
    )
    return creative


def reject(session: Session, creative_id: int, *, actor: str, note: str) -> Creative:
    creative = repo.by_id(session, creative_id, lock=True)
    if creative is None:
        raise NotFound(f"no creative {creative_id}", creative_id=creative_id)
    if creative.status is CreativeStatus.REJECTED:
        raise NotReviewable(f"creative {creative_id} is already rejected", creative_id=creative_id)
    _review(
        session,
        creative,
        status=CreativeStatus.REJECTED,
        actor=actor,
        action="creative.reject",
        note=note,
    )
    return creative


def audit(session: Session, creative_id: int) -> Sequence[AuditLog]:
    return repo.audit_for(session, creative_id)


def advertiser_name(session: Session, advertiser_id: int) -> str:
    return repo.advertiser_name(session, advertiser_id)
