"""The simulated kiosk as a state machine: no broker, a fake clock, a list as outbox."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable

import pytest

from device_sim.faults import KioskFaults
from device_sim.kiosk import FAULT_JAM, LEAVE, Kiosk, OfflineBuffer, take_after
from firmware_protocol import decode_uplink, encode, topic_for
from firmware_protocol.messages import (
    Boot,
    CmdOp,
    CmdResult,
    CmdStatus,
    Command,
    Config,
    Fault,
    Heartbeat,
    Online,
    Play,
    Playlist,
    PlaylistBlock,
    PlaylistSpot,
    SlotEvent,
    SlotEventKind,
    SlotState,
    UplinkMessage,
)

T0 = 1_760_000_000_000
TAG = b"\x01\x02\x03\x04\x05\x06\x07\x08"


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeRuntime:
    """Time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = T0
        self._timers: list[tuple[int, int, FakeTimer, Callable[[], None]]] = []
        self._n = itertools.count()

    def wall_ms(self) -> int:
        return self.now

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer()
        heapq.heappush(self._timers, (self.now + int(delay_s * 1000), next(self._n), timer, fn))
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + int(seconds * 1000)
        while self._timers and self._timers[0][0] <= end:
            when, _, timer, fn = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                fn()
        self.now = end


class ListOutbox:
    def __init__(self) -> None:
        self.sent: list[UplinkMessage] = []

    def send(self, msg: UplinkMessage) -> None:
        self.sent.append(msg)

    def of(self, kind: type) -> list[UplinkMessage]:
        return [m for m in self.sent if isinstance(m, kind)]


def make_kiosk(**kw: object) -> tuple[Kiosk, FakeRuntime, ListOutbox]:
    rt = FakeRuntime()
    kw.setdefault("slots", {1: TAG, 2: b"\x02" * 8, 5: b"\x05" * 8})
    kw.setdefault("heartbeat_s", 60)
    kw.setdefault("unlock_window_s", 30)
    kiosk = Kiosk("K0001", rt, **kw)  # type: ignore[arg-type]
    kiosk.power_on()
    out = ListOutbox()
    kiosk.prepare_connect()
    kiosk.on_connected(out)
    return kiosk, rt, out


def unlock(slot: int | None, cmd_id: str = "c1", expires_in_ms: int = 30_000) -> Command:
    return Command("K0001", 0, T0, cmd_id, CmdOp.UNLOCK, T0 + expires_in_ms, slot)


def results(out: ListOutbox) -> list[CmdResult]:
    return [m for m in out.sent if isinstance(m, CmdResult)]


def test_connect_sends_online_then_boot_then_heartbeat_with_conn_matching_the_will() -> None:
    rt = FakeRuntime()
    kiosk = Kiosk("K0001", rt, slots={3: TAG})
    kiosk.power_on()
    will = kiosk.prepare_connect()
    out = ListOutbox()
    kiosk.on_connected(out)
    assert [type(m) for m in out.sent] == [Online, Boot, Heartbeat]
    online, boot, hb = out.sent
    assert isinstance(online, Online)
    assert isinstance(boot, Boot)
    assert isinstance(hb, Heartbeat)
    assert will.conn == online.conn == boot.conn == 1
    assert (online.seq, boot.seq, hb.seq) == (0, 1, 2)
    assert boot.slot_count == 22
    for msg in [will, *out.sent]:  # everything is valid on the wire
        assert decode_uplink(topic_for(msg), encode(msg)) == msg


def test_heartbeat_snapshot_shows_tags_empty_slots_and_jams() -> None:
    kiosk, rt, out = make_kiosk(slots={1: TAG, 4: b"\x04" * 8})
    kiosk.jam(4)
    rt.advance(60)
    hb = out.of(Heartbeat)[-1]
    assert isinstance(hb, Heartbeat)
    assert len(hb.slots) == 22
    assert hb.slots[0] == SlotState(tag=TAG)
    assert hb.slots[1] == SlotState()
    assert hb.slots[3] == SlotState(tag=b"\x04" * 8, fault=FAULT_JAM)
    assert -150 <= hb.signal_dbm <= 0
    assert hb.playlist_version is None


def test_heartbeats_repeat_every_heartbeat_interval() -> None:
    _kiosk, rt, out = make_kiosk()
    before = len(out.of(Heartbeat))
    rt.advance(60 * 5 + 1)
    assert len(out.of(Heartbeat)) == before + 5


def test_unlock_taken_emits_removed_event_then_taken_result() -> None:
    kiosk, rt, out = make_kiosk()
    kiosk.handle_downlink(unlock(1))
    assert not results(out)
    rt.advance(2)
    removed = [m for m in out.sent if isinstance(m, SlotEvent)]
    assert len(removed) == 1
    ev = removed[0]
    assert (ev.slot, ev.kind, ev.tag, ev.cmd_id) == (1, SlotEventKind.REMOVED, TAG, "c1")
    [res] = results(out)
    assert (res.cmd_id, res.status, res.slot, res.tag) == ("c1", CmdStatus.TAKEN, 1, TAG)
    assert res.seq == ev.seq + 1
    assert kiosk.snapshot()[0] == SlotState()
    assert kiosk.slots[0].locked


def test_unlock_not_taken_relocks_after_the_window() -> None:
    kiosk, rt, out = make_kiosk()
    kiosk.riders.append(LEAVE)
    kiosk.handle_downlink(unlock(1))
    assert not kiosk.slots[0].locked
    rt.advance(29)
    assert not results(out)
    rt.advance(2)
    [res] = results(out)
    assert (res.status, res.slot, res.tag) == (CmdStatus.NOT_TAKEN, 1, TAG)
    assert kiosk.slots[0].locked
    assert kiosk.slots[0].tag == TAG


def test_rider_slower_than_the_window_does_not_get_the_umbrella() -> None:
    kiosk, rt, out = make_kiosk()
    kiosk.riders.append(take_after(45))
    kiosk.handle_downlink(unlock(1))
    rt.advance(60)
    assert [r.status for r in results(out)] == [CmdStatus.NOT_TAKEN]


def test_manual_removal_during_an_unlock_is_the_rider_taking_it() -> None:
    kiosk, rt, out = make_kiosk()
    kiosk.riders.append(LEAVE)
    kiosk.handle_downlink(unlock(2))
    rt.advance(3)
    assert kiosk.remove_umbrella(2) == b"\x02" * 8
    [res] = results(out)
    assert res.status is CmdStatus.TAKEN
    rt.advance(60)
    assert len(results(out)) == 1  # the window timer was cancelled


@pytest.mark.parametrize(
    ("cmd", "status"),
    [
        (unlock(1, expires_in_ms=-1), CmdStatus.EXPIRED),
        (unlock(23), CmdStatus.BAD_SLOT),
        (unlock(3), CmdStatus.EMPTY),
    ],
)
def test_unlock_refusals(cmd: Command, status: CmdStatus) -> None:
    kiosk, _, out = make_kiosk()
    kiosk.handle_downlink(cmd)
    [res] = results(out)
    assert (res.cmd_id, res.status) == ("c1", status)


def test_jammed_slot_answers_jammed_and_stays_locked() -> None:
    kiosk, rt, out = make_kiosk()
    kiosk.jam(5)
    [fault] = out.of(Fault)
    assert isinstance(fault, Fault)
    assert (fault.code, fault.active, fault.slot) == (1, True, 5)
    kiosk.handle_downlink(unlock(5))
    rt.advance(60)
    [res] = results(out)
    assert (res.status, res.slot) == (CmdStatus.JAMMED, 5)
    assert kiosk.slots[4].locked
    assert kiosk.slots[4].tag == b"\x05" * 8
    kiosk.clear_jam(5)
    assert isinstance(out.sent[-1], Fault)
    assert not out.sent[-1].active


def test_skewed_clock_expires_a_command_that_is_still_valid() -> None:
    kiosk, _, out = make_kiosk(faults=KioskFaults(clock_skew_ms=60_000))
    kiosk.handle_downlink(unlock(1, expires_in_ms=30_000))
    [res] = results(out)
    assert res.status is CmdStatus.EXPIRED
    assert res.ts_ms == T0 + 60_000


def test_redelivered_command_is_not_executed_twice() -> None:
    kiosk, rt, out = make_kiosk()
    kiosk.handle_downlink(unlock(1))
    kiosk.handle_downlink(unlock(1))  # QoS 1 redelivery while running: ignored
    rt.advance(5)
    kiosk.handle_downlink(unlock(1))  # after: same answer again, no second unlock
    assert [r.status for r in results(out)] == [CmdStatus.TAKEN, CmdStatus.TAKEN]
    assert len([m for m in out.sent if isinstance(m, SlotEvent)]) == 1


def test_ping_playlist_and_config_are_answered_ok_with_their_cmd_id() -> None:
    kiosk, rt, out = make_kiosk()
    kiosk.handle_downlink(Command("K0001", 0, T0, "p1", CmdOp.PING, T0 + 1000))
    kiosk.handle_downlink(Playlist("K0001", 0, T0, "pl1", 7, ()))
    kiosk.handle_downlink(Config("K0001", 0, T0, "cf1", 10, 15))
    assert [(r.cmd_id, r.status) for r in results(out)] == [
        ("p1", CmdStatus.OK),
        ("pl1", CmdStatus.OK),
        ("cf1", CmdStatus.OK),
    ]
    assert kiosk.unlock_window_s == 15
    n = len(out.of(Heartbeat))
    rt.advance(31)
    hbs = out.of(Heartbeat)
    assert len(hbs) == n + 3
    assert isinstance(hbs[-1], Heartbeat)
    assert hbs[-1].playlist_version == 7


def test_lost_results_are_never_sent_but_the_slot_event_is() -> None:
    kiosk, rt, out = make_kiosk(faults=KioskFaults(lose_results=1.0))
    kiosk.handle_downlink(unlock(1))
    rt.advance(60)
    assert not results(out)
    assert [m.kind for m in out.sent if isinstance(m, SlotEvent)] == [SlotEventKind.REMOVED]


def test_slow_results_arrive_late() -> None:
    kiosk, rt, out = make_kiosk(faults=KioskFaults(slow_results=1.0, slow_result_s=20))
    kiosk.handle_downlink(Command("K0001", 0, T0, "p1", CmdOp.PING, T0 + 1000))
    rt.advance(19)
    assert not results(out)
    rt.advance(2)
    assert [r.status for r in results(out)] == [CmdStatus.OK]


def test_insert_and_manual_removal_emit_slot_events() -> None:
    kiosk, _, out = make_kiosk()
    ev = kiosk.insert_umbrella(3, b"\x33" * 8)
    assert (ev.slot, ev.kind, ev.tag, ev.cmd_id) == (3, SlotEventKind.INSERTED, b"\x33" * 8, None)
    with pytest.raises(ValueError, match="already holds"):
        kiosk.insert_umbrella(3, b"\x44" * 8)
    assert kiosk.remove_umbrella(3) == b"\x33" * 8
    last = out.sent[-1]
    assert isinstance(last, SlotEvent)
    assert last.kind is SlotEventKind.REMOVED
    assert last.cmd_id is None
    with pytest.raises(ValueError, match="empty"):
        kiosk.remove_umbrella(3)


def test_seq_increments_and_persists_across_reconnect_while_conn_counts_connections() -> None:
    kiosk, _rt, out = make_kiosk()
    seqs = [m.seq for m in out.sent if not isinstance(m, Online)]
    for s in seqs:
        kiosk.on_acked(s)
    kiosk.on_disconnected()
    kiosk.insert_umbrella(3, b"\x33" * 8)
    will = kiosk.prepare_connect()
    out2 = ListOutbox()
    kiosk.on_connected(out2)
    assert will.conn == 2
    new = [m.seq for m in out2.sent if not isinstance(m, Online)]
    assert new == [max(seqs) + 1, max(seqs) + 2]  # the offline insert, then a heartbeat
    assert not out2.of(Boot)  # a reconnect is not a power-on


def test_offline_uplinks_are_replayed_in_order_with_original_seq_and_ts() -> None:
    kiosk, rt, out = make_kiosk()
    for m in out.sent:
        if m.seq:
            kiosk.on_acked(m.seq)
    kiosk.on_disconnected()
    kiosk.insert_umbrella(3, b"\x33" * 8)
    rt.advance(61)  # a heartbeat while offline
    kiosk.remove_umbrella(1)
    offline = list(kiosk.history)[-3:]
    assert len(kiosk.buffer) == 3
    kiosk.prepare_connect()
    out2 = ListOutbox()
    kiosk.on_connected(out2)
    assert isinstance(out2.sent[0], Online)
    assert out2.sent[1:4] == offline  # same objects: same seq, same ts
    assert isinstance(out2.sent[4], Heartbeat)  # then a live one
    assert out2.sent[4].seq > offline[-1].seq


def test_unacked_messages_are_replayed_again_after_a_drop_mid_replay() -> None:
    kiosk, _rt, _out = make_kiosk()
    kiosk.on_disconnected()
    kiosk.insert_umbrella(3, b"\x33" * 8)
    kiosk.prepare_connect()
    kiosk.on_connected(ListOutbox())  # replayed, but never acked
    kiosk.on_disconnected()
    kiosk.prepare_connect()
    out3 = ListOutbox()
    kiosk.on_connected(out3)
    events = out3.of(SlotEvent)
    assert len(events) == 1
    assert isinstance(events[0], SlotEvent)
    assert events[0].slot == 3


def test_offline_buffer_drops_oldest_heartbeat_first_and_never_events() -> None:
    buf = OfflineBuffer(limit=3)
    hb = [Heartbeat("K", s, T0, -70, (SlotState(),)) for s in (1, 3)]
    ev = SlotEvent("K", 2, T0, 1, SlotEventKind.INSERTED, TAG)
    buf.add(hb[0])
    buf.add(ev)
    buf.add(hb[1])
    buf.add(SlotEvent("K", 4, T0, 2, SlotEventKind.INSERTED, TAG))
    assert [m.seq for m in buf] == [2, 3, 4]
    buf.add(SlotEvent("K", 5, T0, 3, SlotEventKind.INSERTED, TAG))
    buf.add(SlotEvent("K", 6, T0, 4, SlotEventKind.INSERTED, TAG))
    assert [m.seq for m in buf] == [2, 4, 5, 6]  # no heartbeat left: grows, never loses events
    assert buf.dropped == 2
    assert buf.overflow == 1


def test_a_long_outage_keeps_the_buffer_bounded_and_every_slot_event() -> None:
    kiosk, rt, _out = make_kiosk(heartbeat_s=1, buffer_limit=100)
    kiosk.on_disconnected()
    kiosk.insert_umbrella(3, b"\x33" * 8)
    rt.advance(500)
    assert len(kiosk.buffer) == 100
    assert any(isinstance(m, SlotEvent) for m in kiosk.buffer)


def test_screen_plays_the_playlist_in_a_loop_and_reports_each_play() -> None:
    rt = FakeRuntime()
    kiosk = Kiosk("K0001", rt, screen=True, rng=random.Random(1))
    kiosk.power_on()
    kiosk.prepare_connect()
    out = ListOutbox()
    kiosk.on_connected(out)
    rt.advance(30)
    assert not out.of(Play)  # house content is not reported
    spots = (
        PlaylistSpot("cr-a", 10_000, "https://x/a.mp4", b"\0" * 32),
        PlaylistSpot("cr-b", 10_000, "https://x/b.mp4", b"\1" * 32),
    )
    block = PlaylistBlock(T0, T0 + 3_600_000, spots)
    kiosk.handle_downlink(Playlist("K0001", 0, T0, "pl1", 3, (block,)))
    rt.advance(61)
    plays = [m for m in out.sent if isinstance(m, Play)]
    assert [p.creative_id for p in plays[:4]] == ["cr-a", "cr-b", "cr-a", "cr-b"]
    assert all(p.playlist_version == 3 and p.duration_ms == 10_000 for p in plays)
    assert len({p.play_id for p in plays}) == len(plays)
    assert all(len(p.play_id) == 16 for p in plays)
    for p in plays:
        assert decode_uplink(topic_for(p), encode(p)) == p


def test_power_cycle_forgets_pending_unlocks_and_boots_again() -> None:
    kiosk, rt, out = make_kiosk()
    for m in out.sent:
        kiosk.on_acked(m.seq)
    kiosk.riders.append(LEAVE)
    kiosk.handle_downlink(unlock(1))
    kiosk.power_off()
    rt.advance(60)
    assert not results(out)
    assert kiosk.slots[0].locked
    assert kiosk.slots[0].tag == TAG
    kiosk.power_on()
    kiosk.prepare_connect()
    out2 = ListOutbox()
    kiosk.on_connected(out2)
    boots = out2.of(Boot)
    assert len(boots) == 1
    assert isinstance(boots[0], Boot)
    assert boots[0].conn == 2
