"""SQLAlchemy 2 typed models, one file per aggregate. Importing this registers them all."""

from server.models.base import Base
from server.models.command import CommandRecord
from server.models.deposit import DepositPayment, DepositRefund, DepositStatus, RefundStatus
from server.models.kiosk import (
    Kiosk,
    KioskFault,
    KioskState,
    Slot,
    SlotDisagreement,
    SlotEventRecord,
    SlotStatus,
)
from server.models.ledger import (
    AccountType,
    EntryKind,
    JournalEntry,
    LedgerAccount,
    Posting,
)
from server.models.notification import Notification, NotificationStatus
from server.models.partner import Partner
from server.models.rental import (
    OPEN_STATUSES,
    AuditLog,
    Rental,
    RentalStatus,
    Umbrella,
    UmbrellaState,
)
from server.models.rider import Rider, RiderSession
from server.models.uplink import RejectedUplink, UplinkReceipt

__all__ = [
    "OPEN_STATUSES",
    "AccountType",
    "AuditLog",
    "Base",
    "CommandRecord",
    "DepositPayment",
    "DepositRefund",
    "DepositStatus",
    "EntryKind",
    "JournalEntry",
    "Kiosk",
    "KioskFault",
    "KioskState",
    "LedgerAccount",
    "Notification",
    "NotificationStatus",
    "Partner",
    "Posting",
    "RefundStatus",
    "RejectedUplink",
    "Rental",
    "RentalStatus",
    "Rider",
    "RiderSession",
    "Slot",
    "SlotDisagreement",
    "SlotEventRecord",
    "SlotStatus",
    "Umbrella",
    "UmbrellaState",
    "UplinkReceipt",
]
