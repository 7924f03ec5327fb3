"""HTTP only: the creatives endpoints (advertiser-side under /api/v1/ads, operator-side under
/api/v1/ops) and the media files kiosks download (/api/v1/media)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, status
from fastapi.responses import FileResponse

from server.accounts.router import (
    AdvertiserDep,
    OperatorDep,
    current_advertiser,
    current_principal,
)
from server.accounts.rules import Principal
from server.core.errors import NotFound
from server.core.http import SessionDep, services
from server.creatives import service
from server.creatives.media import MediaStore, MediaTooLarge
from server.creatives.schemas import (
    ApproveIn,
    AuditOut,
    CreativeIn,
    CreativeOut,
    CreativePage,
    MediaOut,
    OpsCreativeOut,
    RejectIn,
)
from server.models import CreativeKind, CreativeStatus

router = APIRouter(prefix="/api/v1", tags=["creatives"])

Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{64}$")]


def media_store(request: Request) -> MediaStore:
    settings = services(request).settings
    return MediaStore(settings.media_dir, settings.media_url_base)


MediaStoreDep = Annotated[MediaStore, Depends(media_store)]


def current_advertiser_own_tx(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """`AdvertiserDep` in a short transaction of its own: an upload may stream for minutes
    and must not hold a request session (on SQLite, the write lock) meanwhile."""
    with services(request).db.transaction() as session:
        principal = current_principal(request, session, authorization)
    return current_advertiser(principal)


AdvertiserOwnTxDep = Annotated[Principal, Depends(current_advertiser_own_tx)]


def _advertiser_id(p: Principal) -> int:
    assert p.advertiser_id is not None  # guaranteed by current_advertiser
    return p.advertiser_id


def _input(body: CreativeIn) -> service.CreativeInput:
    return service.CreativeInput(
        kind=body.kind,
        duration_ms=body.duration_ms,
        title=body.title,
        body_text=body.body_text,
        declared_text=body.declared_text,
        sha256=body.sha256,
    )


@router.post(
    "/ads/media",
    status_code=status.HTTP_201_CREATED,
    summary="Upload a media file (the request body is the file); answers its SHA-256 and URL",
    responses={
        400: {"description": "empty_media, digest_mismatch: nothing stored"},
        413: {"description": "media_too_large"},
        415: {"description": "unsupported_media: not a PNG/JPEG/GIF/WebP/AVIF/MP4/MOV/WebM"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_media(
    request: Request,
    _: AdvertiserOwnTxDep,
    store: MediaStoreDep,
    expected_sha256: Annotated[
        str | None, Header(alias="X-Content-SHA256", pattern=r"^[0-9a-fA-F]{64}$")
    ] = None,
) -> MediaOut:
    """The type is read from the file itself. Optional `X-Content-SHA256`: the digest the
    client computed; a file that arrives different is refused."""
    max_bytes = services(request).settings.media_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise MediaTooLarge(f"media files are limited to {max_bytes} bytes", max_bytes=max_bytes)
    stored = await store.save(
        request.stream(),
        max_bytes=max_bytes,
        expected_sha256=expected_sha256,
    )
    return MediaOut(
        sha256=stored.sha256,
        url=store.url(stored.sha256),
        size=stored.size,
        media_type=stored.media_type.mime,
        kind=CreativeKind(stored.media_type.kind),
    )


@router.get(
    "/media/{sha256}",
    summary="Download a media file by its SHA-256 (kiosks; no credentials)",
    response_class=FileResponse,
)
def download_media(sha256: Sha256Path, store: MediaStoreDep) -> FileResponse:
    stored = store.lookup(sha256.lower())
    if stored is None:
        raise NotFound(f"no media {sha256.lower()}", sha256=sha256.lower())
    return FileResponse(
        stored.path,
        media_type=stored.media_type.mime,
        headers={
            "ETag": f'"{stored.sha256}"',
            "Cache-Control": "public, max-age=31536000, immutable",
        },
    )


@router.post(
    "/ads/creatives",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a creative; the price-advertising check runs at once",
    responses={
        400: {"description": "media_not_uploaded, kind_mismatch: nothing stored"},
    },
)
def submit(
    body: CreativeIn, session: SessionDep, advertiser: AdvertiserDep, store: MediaStoreDep
) -> CreativeOut:
    """Answers `rejected` with `check` (the rule that matched, the text it matched and why)
    when the text advertises a price, otherwise `pending` until an operator reviews it."""
    creative = service.submit(session, store, _advertiser_id(advertiser), _input(body))
    return CreativeOut.of(creative)


@router.get("/ads/creatives", summary="The advertiser's creatives, newest first")
def list_own(
    session: SessionDep,
    advertiser: AdvertiserDep,
    status: CreativeStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: int | None = None,
) -> CreativePage:
    found = service.list_own(
        session, _advertiser_id(advertiser), status=status, limit=limit, before_id=before_id
    )
    return CreativePage(
        items=[CreativeOut.of(c) for c in found],
        next_before_id=found[-1].id if len(found) == limit else None,
    )


@router.get("/ads/creatives/{creative_id}", summary="One of the advertiser's creatives")
def get_own(creative_id: int, session: SessionDep, advertiser: AdvertiserDep) -> CreativeOut:
    return CreativeOut.of(service.get_own(session, _advertiser_id(advertiser), creative_id))


@router.put(
    "/ads/creatives/{creative_id}",
    summary="Edit a pending or rejected creative and submit it again (the check runs again)",
    responses={409: {"description": "creative_approved: submit a new creative instead"}},
)
def resubmit(
    creative_id: int,
    body: CreativeIn,
    session: SessionDep,
    advertiser: AdvertiserDep,
    store: MediaStoreDep,
) -> CreativeOut:
    creative = service.resubmit(
        session, store, _advertiser_id(advertiser), creative_id, _input(body)
    )
    return CreativeOut.of(creative)


def _ops_out(session: SessionDep, creative_id: int) -> OpsCreativeOut:
    creative = service.get_any(session, creative_id)
    audit = [AuditOut.model_validate(a) for a in service.audit(session, creative_id)]
    name = service.advertiser_name(session, creative.advertiser_id)
    return OpsCreativeOut.of_ops(creative, name, audit)


@router.get(
    "/ops/creatives",
    summary="Creatives for review (operators): pending first, oldest first; then the rest",
)
def review_queue(
    session: SessionDep,
    _: OperatorDep,
    status: CreativeStatus | None = None,
    advertiser_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[OpsCreativeOut]:
    found = service.review_queue(session, status=status, advertiser_id=advertiser_id, limit=limit)
    return [OpsCreativeOut.of_ops(c, name) for c, name in found]


@router.get("/ops/creatives/{creative_id}", summary="One creative with its review history")
def ops_get(creative_id: int, session: SessionDep, _: OperatorDep) -> OpsCreativeOut:
    return _ops_out(session, creative_id)


@router.post(
    "/ops/creatives/{creative_id}/approve",
    summary="Approve a creative (a rejected one only with override and a note)",
    responses={409: {"description": "not_reviewable (already approved), override_required"}},
)
def approve(
    creative_id: int, body: ApproveIn, session: SessionDep, operator: OperatorDep
) -> OpsCreativeOut:
    service.approve(
        session, creative_id, actor=operator.login, note=body.note, override=body.override
    )
    return _ops_out(session, creative_id)


@router.post(
    "/ops/creatives/{creative_id}/reject",
    summary="Reject a pending creative, or pull an approved one off the screens",
    responses={409: {"description": "not_reviewable: already rejected"}},
)
def reject(
    creative_id: int, body: RejectIn, session: SessionDep, operator: OperatorDep
) -> OpsCreativeOut:
    service.reject(session, creative_id, actor=operator.login, note=body.note)
    return _ops_out(session, creative_id)
