"""Registry rows the integration tests need before a bridge can accept a kiosk's uplinks."""

from __future__ import annotations

from server.core.clock import clock
from server.core.db import Database
from server.core.money import DEPOSIT
from server.ledger import service as ledger
from server.models import DepositPayment, DepositStatus, EntryKind, Kiosk, Partner, Rider


def add_kiosks(db: Database, *kiosk_ids: str, slot_count: int = 22) -> None:
    """One partner (named after the first kiosk) owning the given kiosks."""
    now = clock.now()
    with db.transaction() as s:
        partner = Partner(name=f"partner-{kiosk_ids[0]}", region="Hangzhou", created_at=now)
        s.add(partner)
        s.flush()
        for k in kiosk_ids:
            s.add(
                Kiosk(
                    id=k,
                    name=k,
                    partner_id=partner.id,
                    lat=30.27,
                    lon=120.15,
                    address="West Lake metro exit B",
                    venue_type="1.101",
                    slot_count=slot_count,
                    mqtt_password_hash="$7$unused",
                    created_at=now,
                )
            )


def add_rider_with_deposit(db: Database, openid: str) -> int:
    """A rider whose 30-yuan deposit WeChat Pay confirmed (held, ledger entry posted), the
    way `deposits.service.settle_paid_order` leaves it; returns the rider id."""
    now = clock.now()
    with db.transaction() as s:
        rider = Rider(openid=openid, created_at=now)
        s.add(rider)
        s.flush()
        payment = DepositPayment(
            rider_id=rider.id,
            out_trade_no=f"DEP{rider.id:08d}{openid[-8:]}"[:32],
            idempotency_key=f"deposit-{openid}",
            prepay_id=f"wx{rider.id}",
            amount_fen=DEPOSIT,
            status=DepositStatus.HELD,
            transaction_id=f"4200{rider.id:012d}",
            paid_at=now,
            created_at=now,
        )
        s.add(payment)
        s.flush()
        ledger.post(
            s,
            EntryKind.DEPOSIT_RECEIVED,
            rider_id=str(rider.id),
            amount=DEPOSIT,
            idempotency_key=payment.transaction_id or "",
            reference=f"payment:{payment.out_trade_no}",
        )
        return rider.id
