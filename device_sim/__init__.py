"""Simulated kiosks that speak only `firmware_protocol` (never imports `server`)."""

from device_sim.credentials import KioskCredential, read_credentials
from device_sim.faults import FaultProfile, KioskFaults
from device_sim.fleet import Fleet, FleetStats, KioskHandle, default_fill
from device_sim.kiosk import LEAVE, TAKE, Kiosk, RiderAction, take_after

__all__ = [
    "LEAVE",
    "TAKE",
    "FaultProfile",
    "Fleet",
    "FleetStats",
    "Kiosk",
    "KioskCredential",
    "KioskFaults",
    "KioskHandle",
    "RiderAction",
    "default_fill",
    "read_credentials",
    "take_after",
]
