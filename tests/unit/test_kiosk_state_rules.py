"""Presence ordering and slot reconciliation, without a database."""

from __future__ import annotations

from firmware_protocol.messages import SlotEventKind, SlotState
from server.kiosk_state import rules
from server.kiosk_state.rules import PresenceView, SlotView
from server.models import SlotStatus

T = 1_700_000_000_000  # some server time, ms
FRESH = PresenceView(
    online=False, conn=0, changed_ms=None, skew_ms=None, max_seq=0, last_seen_ms=None
)
TAG = bytes.fromhex("a1b2c3d4")
TAG2 = bytes.fromhex("0badf00d")


def online(conn: int, at: int = T) -> PresenceView:
    view = rules.apply_online(FRESH, conn, at, at)
    assert view is not None
    return view


# ---------------------------------------------------------------- presence


def test_first_online_marks_kiosk_online_and_measures_clock_skew() -> None:
    view = rules.apply_online(FRESH, 3, ts_ms=T - 250, received_ms=T)
    assert view is not None
    assert (view.online, view.conn, view.skew_ms, view.changed_ms) == (True, 3, 250, T)


def test_online_of_a_newer_connection_applies() -> None:
    after = rules.apply_offline(online(3), 3, T + 10)
    assert after is not None
    view = rules.apply_online(after, 4, T + 20, T + 20)
    assert view is not None
    assert view.online
    assert view.conn == 4


def test_offline_of_the_current_connection_marks_kiosk_offline() -> None:
    view = rules.apply_offline(online(3), 3, T + 1000)
    assert view is not None
    assert (view.online, view.conn, view.changed_ms) == (False, 3, T + 1000)


def test_stale_offline_after_a_newer_online_is_ignored() -> None:
    assert rules.apply_offline(online(5), 4, T + 1000) is None


def test_online_after_the_last_will_of_the_same_connection_is_stale() -> None:
    after_will = rules.apply_offline(online(5), 5, T + 1000)
    assert after_will is not None
    assert rules.apply_online(after_will, 5, T + 10, T + 2000) is None


def test_last_will_arriving_before_its_online_still_wins() -> None:
    after_will = rules.apply_offline(FRESH, 7, T)
    assert after_will is not None
    assert not after_will.online
    assert rules.apply_online(after_will, 7, T - 5000, T + 10) is None


def test_repeated_online_changes_nothing() -> None:
    assert rules.apply_online(online(5), 5, T + 5, T + 5) is None


def test_live_heartbeat_marks_an_offline_kiosk_online_again() -> None:
    will = rules.apply_offline(online(5), 5, T + 1000)
    assert will is not None
    view = rules.apply_sequenced(will, 10, ts_ms=T + 60_000, received_ms=T + 60_050)
    assert view.online
    assert view.changed_ms == T + 60_050
    assert view.max_seq == 10


def test_message_produced_before_the_kiosk_went_offline_does_not_revive_it() -> None:
    will = rules.apply_offline(online(5), 5, T + 10_000)
    assert will is not None
    view = rules.apply_sequenced(will, 10, ts_ms=T + 5_000, received_ms=T + 11_000)
    assert not view.online
    assert view.max_seq == 10
    assert view.last_seen_ms == T + 11_000


def test_replayed_old_message_is_history_not_presence() -> None:
    view = rules.apply_sequenced(FRESH, 10, ts_ms=T - 3_600_000, received_ms=T)
    assert not view.online
    assert view.skew_ms is None  # a replay must not be taken for clock skew


def test_clock_skew_is_corrected_before_judging_liveness() -> None:
    skewed = rules.apply_online(FRESH, 1, ts_ms=T - 600_000, received_ms=T)  # clock 10 min late
    assert skewed is not None
    will = rules.apply_offline(skewed, 1, T + 1_000)
    assert will is not None
    view = rules.apply_sequenced(will, 2, ts_ms=T - 600_000 + 30_000, received_ms=T + 30_000)
    assert view.online


def test_boot_with_a_newer_connection_advances_conn() -> None:
    view = rules.apply_sequenced(online(2), 9, T + 5, T + 10, conn=3)
    assert view.conn == 3
    assert view.online


def test_silent_online_kiosk_is_detected() -> None:
    view = online(1)
    assert rules.is_silent(view, T + 181_000, 180_000)
    assert not rules.is_silent(view, T + 179_000, 180_000)


# ---------------------------------------------------------------- slots


def slot(status: SlotStatus, tag: str | None, seq: int, fault: int | None = None) -> SlotView:
    return SlotView(status, tag, fault, seq)


def test_tags_are_stored_as_uppercase_hex() -> None:
    assert rules.tag_hex(TAG) == "A1B2C3D4"
    assert rules.tag_hex(None) is None


def test_newer_insert_event_puts_the_umbrella_in_the_slot() -> None:
    got = rules.apply_slot_event(rules.UNKNOWN_SLOT, 5, SlotEventKind.INSERTED, "A1B2C3D4")
    assert got == slot(SlotStatus.UMBRELLA, "A1B2C3D4", 5)


def test_older_slot_event_does_not_overwrite_a_newer_state() -> None:
    current = slot(SlotStatus.EMPTY, None, 10)
    assert rules.apply_slot_event(current, 9, SlotEventKind.INSERTED, "A1B2C3D4") is None


def test_removal_empties_the_slot() -> None:
    current = slot(SlotStatus.UMBRELLA, "A1B2C3D4", 3)
    assert rules.apply_slot_event(current, 4, SlotEventKind.REMOVED, None) == slot(
        SlotStatus.EMPTY, None, 4
    )


def test_slot_event_keeps_an_active_fault() -> None:
    faulty = slot(SlotStatus.FAULT, None, 3, fault=2)
    got = rules.apply_slot_event(faulty, 4, SlotEventKind.INSERTED, "A1B2C3D4")
    assert got == slot(SlotStatus.FAULT, "A1B2C3D4", 4, fault=2)


def test_fault_then_clear_falls_back_to_what_the_tag_says() -> None:
    held = slot(SlotStatus.UMBRELLA, "A1B2C3D4", 3)
    faulty = rules.apply_fault(held, 4, code=2, active=True)
    assert faulty == slot(SlotStatus.FAULT, "A1B2C3D4", 4, fault=2)
    assert rules.apply_fault(faulty, 5, code=2, active=False) == slot(
        SlotStatus.UMBRELLA, "A1B2C3D4", 5
    )


def test_clearing_another_fault_code_leaves_the_slot_faulty() -> None:
    faulty = slot(SlotStatus.FAULT, None, 4, fault=2)
    assert rules.apply_fault(faulty, 5, code=9, active=False) is None


def test_snapshot_agreeing_with_belief_records_no_disagreement() -> None:
    out = rules.apply_snapshot(slot(SlotStatus.UMBRELLA, "A1B2C3D4", 3), 4, SlotState(tag=TAG))
    assert out.slot == slot(SlotStatus.UMBRELLA, "A1B2C3D4", 4)
    assert out.believed is None


def test_newer_snapshot_contradicting_belief_is_recorded_and_wins() -> None:
    believed = slot(SlotStatus.UMBRELLA, "A1B2C3D4", 3)
    out = rules.apply_snapshot(believed, 4, SlotState(tag=TAG2))
    assert out.believed == believed
    assert out.slot == slot(SlotStatus.UMBRELLA, "0BADF00D", 4)


def test_first_snapshot_of_an_unknown_slot_is_not_a_disagreement() -> None:
    out = rules.apply_snapshot(rules.UNKNOWN_SLOT, 1, SlotState(tag=TAG))
    assert out.slot is not None
    assert out.believed is None


def test_older_snapshot_changes_nothing() -> None:
    out = rules.apply_snapshot(slot(SlotStatus.EMPTY, None, 10), 9, SlotState(tag=TAG))
    assert out.slot is None
    assert out.believed is None


def test_snapshot_reports_a_jammed_slot_as_fault_with_its_tag() -> None:
    out = rules.apply_snapshot(rules.UNKNOWN_SLOT, 2, SlotState(tag=TAG, fault=3))
    assert out.slot == slot(SlotStatus.FAULT, "A1B2C3D4", 2, fault=3)


def test_kiosk_clock_stepped_forward_while_connected_is_adopted_at_once() -> None:
    slow = rules.apply_online(FRESH, 1, ts_ms=T - 600_000, received_ms=T)  # 10 min slow
    assert slow is not None
    synced = rules.apply_sequenced(slow, 2, ts_ms=T + 60_000, received_ms=T + 60_000)
    assert synced.skew_ms == 0
    assert synced.online


def test_kiosk_clock_stepped_back_is_adopted_once_the_estimate_is_older_than_the_window() -> None:
    fast = rules.apply_online(FRESH, 1, ts_ms=T + 600_000, received_ms=T)  # 10 min fast
    assert fast is not None
    window = rules.DEFAULT_LIVE_TOLERANCE_MS
    early = rules.apply_sequenced(fast, 2, ts_ms=T + 60_000, received_ms=T + 60_000)
    assert early.skew_ms == -600_000  # a higher sample may be a delayed message: keep
    later = rules.apply_sequenced(
        early, 3, ts_ms=T + window + 61_000, received_ms=T + window + 61_000
    )
    assert later.skew_ms == 0


def test_lowest_recent_sample_wins_over_a_delayed_message() -> None:
    view = rules.apply_online(FRESH, 1, ts_ms=T - 250, received_ms=T)
    assert view is not None
    delayed = rules.apply_sequenced(view, 2, ts_ms=T, received_ms=T + 40_000)
    assert delayed.skew_ms == 250
