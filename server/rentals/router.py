"""HTTP only: the rider's /api/v1/rentals and the operators' /api/v1/ops/rentals."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from server.accounts.router import OperatorDep, current_operator
from server.core.errors import NotFound, Unavailable
from server.core.http import SessionDep, services
from server.models import Rental
from server.rentals import repository as repo
from server.rentals import service
from server.rentals.schemas import (
    AuditOut,
    ForceEndIn,
    OpsRentalOut,
    RentalOut,
    RentalPage,
    RentIn,
    StuckRentalsOut,
    UmbrellaOut,
)
from server.riders.router import RiderDep, current_rider_own_tx

router = APIRouter(tags=["rentals"])
ops = APIRouter(prefix="/api/v1/ops", tags=["operations"], dependencies=[Depends(current_operator)])


@router.post(
    "/api/v1/rentals",
    status_code=status.HTTP_201_CREATED,
    summary="Rent an umbrella at a kiosk (its QR code); answers once the umbrella is out",
    responses={
        200: {"description": "The rental of an earlier request with the same key"},
        404: {"description": "unknown_kiosk"},
        409: {
            "description": "kiosk_offline, no_umbrella_available, slots_jammed, "
            "umbrella_not_taken, deposit_required, rental_open: nothing charged"
        },
        504: {"description": "kiosk_timeout: the kiosk did not answer; nothing charged"},
    },
)
def rent(
    body: RentIn,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128)],
    authorization: Annotated[str | None, Header()] = None,
) -> RentalOut:
    """The rental is active only once the kiosk reports the umbrella left its slot (SPEC §2);
    every failure says why and leaves nothing open. Not a SessionDep endpoint: the reservation
    commits before the unlock is sent, and the answer is settled in its own transaction. The
    rider is authenticated here (`current_rider_own_tx`), in the endpoint's worker thread,
    not by a dependency, which would take a thread of its own: one hop between the event
    loop and the thread pool fewer on the rider's critical path."""
    rider = current_rider_own_tx(request, authorization)
    svc = services(request)
    if svc.commands is None:
        raise Unavailable("no MQTT command channel in this process")
    settings = svc.settings
    result = service.rent(
        svc.db,
        svc.commands,
        rider.id,
        body.kiosk_id,
        idempotency_key,
        answer_wait_s=settings.rental_answer_wait_s,
        command_expiry_s=settings.rental_command_expiry_s,
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return RentalOut.model_validate(result.rental)


@router.get("/api/v1/rentals/current", summary="The rider's open rental, or null")
def current(rider: RiderDep, session: SessionDep) -> RentalOut | None:
    rental = service.current_rental(session, rider.id)
    return None if rental is None else RentalOut.model_validate(rental)


@router.get("/api/v1/rentals", summary="The rider's rentals, newest first")
def history(
    rider: RiderDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before_id: int | None = None,
) -> RentalPage:
    found = service.history(session, rider.id, limit=limit, before_id=before_id)
    return RentalPage(
        items=[RentalOut.model_validate(r) for r in found],
        next_before_id=found[-1].id if len(found) == limit else None,
    )


@router.get("/api/v1/rentals/{rental_id}", summary="One of the rider's rentals")
def get_rental(rental_id: int, rider: RiderDep, session: SessionDep) -> RentalOut:
    return RentalOut.model_validate(service.get_for_rider(session, rider.id, rental_id))


def _ops_out(session: SessionDep, rental: Rental, *, audit: bool = False) -> OpsRentalOut:
    out = OpsRentalOut.model_validate(rental)
    if audit:
        out.audit = [
            AuditOut.model_validate(a) for a in repo.audit_for(session, f"rental:{rental.id}")
        ]
    return out


@ops.get("/rentals/stuck", summary="Rentals stuck in a state, for operators")
def stuck(
    session: SessionDep,
    ejecting_for_s: Annotated[int, Query(ge=0)] = 120,
    overdue_for_s: Annotated[int, Query(ge=0)] = 600,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> StuckRentalsOut:
    found = service.stuck_rentals(
        session,
        ejecting_for=timedelta(seconds=ejecting_for_s),
        overdue_for=timedelta(seconds=overdue_for_s),
        limit=limit,
    )
    return StuckRentalsOut(
        ejecting=[_ops_out(session, r) for r in found["ejecting"]],
        overdue=[_ops_out(session, r) for r in found["overdue"]],
        in_slot_but_on_rent=[_ops_out(session, r) for r in found["in_slot_but_on_rent"]],
        counts_by_status=repo.count_by_status(session),
    )


@ops.get("/rentals/{rental_id}", summary="One rental with its audit log")
def ops_rental(rental_id: int, session: SessionDep) -> OpsRentalOut:
    rental = repo.by_id(session, rental_id)
    if rental is None:
        raise NotFound(f"no rental {rental_id}", rental_id=rental_id)
    return _ops_out(session, rental, audit=True)


@ops.post("/rentals/{rental_id}/end", summary="Force-end a stuck rental (audited)")
def force_end(
    rental_id: int,
    body: ForceEndIn,
    session: SessionDep,
    operator: OperatorDep,
    actor: Annotated[str, Header(alias="X-Operator", min_length=1, max_length=64)] = "operator",
) -> OpsRentalOut:
    """The audit log names the logged-in operator; with the shared operator token (no user),
    the `X-Operator` header says who acted."""
    who = actor if operator.user_id is None else operator.login
    rental = service.force_end(session, rental_id, reason=body.reason, actor=who)
    return _ops_out(session, rental, audit=True)


@ops.get("/umbrellas/{tag}", summary="Where an umbrella is: in a slot, on rent, forfeited, lost")
def umbrella(tag: str, session: SessionDep) -> UmbrellaOut:
    found = repo.umbrella(session, tag.strip().upper())
    if found is None:
        raise NotFound(f"no umbrella with tag {tag!r}", tag=tag)
    return UmbrellaOut.model_validate(found)
