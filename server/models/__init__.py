"""SQLAlchemy 2 typed models, one file per aggregate. Importing this registers them all."""

from server.models.base import Base
from server.models.command import CommandRecord
from server.models.deposit import DepositPayment, DepositStatus
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
from server.models.partner import Partner
from server.models.rider import Rider, RiderSession
from server.models.uplink import RejectedUplink, UplinkReceipt

__all__ = [
    "AccountType",
    "Base",
    "CommandRecord",
    "DepositPayment",
    "DepositStatus",
    "EntryKind",
    "JournalEntry",
    "Kiosk",
    "KioskFault",
    "KioskState",
    "LedgerAccount",
    "Partner",
    "Posting",
    "RejectedUplink",
    "Rider",
    "RiderSession",
    "Slot",
    "SlotDisagreement",
    "SlotEventRecord",
    "SlotStatus",
    "UplinkReceipt",
]
