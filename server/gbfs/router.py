"""HTTP only: the public GBFS 3.0 feed under /gbfs/v3 (no authentication).

    GET /gbfs/v3/gbfs.json                   discovery: absolute URLs of the files below
    GET /gbfs/v3/system_information.json
    GET /gbfs/v3/station_information.json    every registered kiosk, capacity = slot count
    GET /gbfs/v3/station_status.json         umbrellas and free slots per kiosk
    GET /gbfs/v3/vehicle_types.json          the umbrella
    GET /gbfs/v3/system_pricing_plans.json   free for 7 days; the deposit in words

Any other name is a 404. Responses carry `Cache-Control: public, max-age=<ttl left>`, so an
HTTP cache in front keeps a document no longer than its `last_updated + ttl` either.
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from server.core.http import AppServices, services
from server.core.shared_state import MemorySharedState, SharedState
from server.gbfs.service import GbfsFeeds

router = APIRouter(prefix="/gbfs/v3", tags=["gbfs"])

_EXTRA_KEY = "gbfs.feeds"
_wiring = threading.Lock()


def gbfs_feeds(request: Request) -> GbfsFeeds:
    """The app's feed service, made on first use. Its cache is the app's shared state (Redis
    in production, shared by every API process); an app without one (tests, a bare
    `create_app`) gets an in-process cache of its own rather than the process-wide one, so
    two apps on different databases never serve each other's documents."""
    svc: AppServices = services(request)
    feeds = svc.extra.get(_EXTRA_KEY)
    if isinstance(feeds, GbfsFeeds):
        return feeds
    with _wiring:
        feeds = svc.extra.get(_EXTRA_KEY)
        if not isinstance(feeds, GbfsFeeds):
            cache: SharedState = (
                svc.shared_state if svc.shared_state is not None else MemorySharedState()
            )
            feeds = GbfsFeeds(svc.settings, svc.db, cache)
            svc.extra[_EXTRA_KEY] = feeds
        return feeds


FeedsDep = Annotated[GbfsFeeds, Depends(gbfs_feeds)]


@router.get(
    "/{name}.json",
    summary="A GBFS 3.0 file: gbfs, system_information, station_information, station_status, "
    "vehicle_types or system_pricing_plans",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}, 404: {"description": "No such feed"}},
)
def gbfs_file(name: str, feeds: FeedsDep) -> Response:
    served = feeds.serve(name)
    return Response(
        content=served.body,
        media_type="application/json",
        headers={"Cache-Control": f"public, max-age={served.max_age_s}"},
    )
