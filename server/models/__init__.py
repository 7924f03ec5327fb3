"""SQLAlchemy 2 typed models, one file per aggregate. Importing this registers them all."""

# Proof of play, make-goods, credits and invoices (issue 4) register when imported:
from server.models import billing as billing
from server.models import delivery as delivery
from server.models import operations as operations
from server.models import revenue as revenue
from server.models.account import Advertiser, BillingMode, LostSpotPolicy, Role, User, UserSession
from server.models.base import Base
from server.models.booking import (
    Booking,
    BookingCreative,
    BookingKiosk,
    BookingStatus,
    LoopHour,
    Reservation,
    VenuePrice,
)
from server.models.command import CommandRecord
from server.models.creative import Creative, CreativeKind, CreativeStatus
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
from server.models.playlist import PlaylistVersion
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
    "Advertiser",
    "AuditLog",
    "Base",
    "BillingMode",
    "Booking",
    "BookingCreative",
    "BookingKiosk",
    "BookingStatus",
    "CommandRecord",
    "Creative",
    "CreativeKind",
    "CreativeStatus",
    "DepositPayment",
    "DepositRefund",
    "DepositStatus",
    "EntryKind",
    "JournalEntry",
    "Kiosk",
    "KioskFault",
    "KioskState",
    "LedgerAccount",
    "LoopHour",
    "LostSpotPolicy",
    "Notification",
    "NotificationStatus",
    "Partner",
    "PlaylistVersion",
    "Posting",
    "RefundStatus",
    "RejectedUplink",
    "Rental",
    "RentalStatus",
    "Reservation",
    "Rider",
    "RiderSession",
    "Role",
    "Slot",
    "SlotDisagreement",
    "SlotEventRecord",
    "SlotStatus",
    "Umbrella",
    "UmbrellaState",
    "UplinkReceipt",
    "User",
    "UserSession",
    "VenuePrice",
]
