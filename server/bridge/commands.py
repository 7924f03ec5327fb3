"""Downlink commands with a synchronous answer (SPEC §1: unlock with a command id and expiry).

The sender may be any process (an API worker); the kiosk's answer arrives on the uplink
shared subscription and may land on ANY bridge process. That bridge pushes the encoded
`CmdResult` to the shared state twice: under `answer:<cmd_id>` as soon as it has decoded
it, and under `cmd:<cmd_id>` once its batch has committed it. The sender blocks on the key
it needs: the committed one by default (an operator's command: the answer is then in the
command's record), the early one for a rent, which settles the answer itself under the
rental's row lock. The result is a list entry, not a pub/sub message, so a kiosk that
answers before the sender starts waiting is not missed.

`send` is an entry point of its own: it commits the command record before publishing
(the bridge must find the record when the answer comes back, possibly within
milliseconds), and commits the timeout separately. A caller that commits a transaction
right before sending anyway (a rent commits its reservation) records the command in that
transaction with `prepare` and publishes it with `send_prepared`: one
transaction and commit fewer on the rider's critical path (measured in
bench/rental_roundtrip).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from firmware_protocol import decode_uplink, encode, msg_type, topics
from firmware_protocol.messages import (
    CmdOp,
    CmdResult,
    Command,
    Config,
    MsgType,
    Playlist,
)
from server.bridge.dispatch import answer_key, result_key
from server.core.clock import clock, to_ms
from server.core.db import Database
from server.core.errors import NotFound
from server.core.shared_state import SharedState
from server.kiosk_state import repository as repo
from server.models import CommandRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PreparedCommand:
    """A command whose record is written in the caller's transaction (`prepare`); publish it
    with `CommandChannel.send_prepared` only after that transaction committed."""

    cmd_id: str
    kiosk_id: str
    op: CmdOp
    slot: int | None
    created_at: datetime
    expires_at: datetime
    #: The kiosk's known clock skew (ms) when prepared: the expiry is sent in kiosk time.
    skew_ms: int | None


def prepare(
    session: Session,
    kiosk_id: str,
    op: CmdOp,
    slot: int | None = None,
    *,
    expires_in_s: float,
    skew_ms: int | None,
    cmd_id: str | None = None,
) -> PreparedCommand:
    """Record a command (status `sent`) in the caller's transaction. The caller has checked
    that the kiosk is registered and read its clock skew (`kiosk_clock_skew`)."""
    now = clock.now()
    prepared = PreparedCommand(
        cmd_id=cmd_id or uuid.uuid4().hex,
        kiosk_id=kiosk_id,
        op=op,
        slot=slot,
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in_s),
        skew_ms=skew_ms,
    )
    repo.add_command(
        session,
        CommandRecord(
            id=prepared.cmd_id,
            kiosk_id=kiosk_id,
            op=op.value,
            slot_no=slot,
            created_at=now,
            expires_at=prepared.expires_at,
            status="sent",
        ),
    )
    return prepared


class Publisher(Protocol):
    def publish_and_wait(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        timeout_s: float = 5.0,
    ) -> None: ...


class CommandChannel:
    def __init__(self, publisher: Publisher, shared_state: SharedState, db: Database) -> None:
        self.publisher = publisher
        self.shared_state = shared_state
        self.db = db

    def send(
        self,
        kiosk_id: str,
        op: CmdOp,
        slot: int | None = None,
        *,
        timeout_s: float = 10.0,
        expires_in_s: float = 30.0,
    ) -> CmdResult | None:
        """Record a command in a transaction of its own, publish it (QoS 1, waiting for
        PUBACK) and wait for the kiosk's answer.

        None when no answer came within `timeout_s` (the record is marked `timeout`; a late
        answer still overwrites that, since the kiosk's word is the truth). Raises NotFound
        for an unregistered kiosk, PublishFailed when the broker did not take the command.
        """
        with self.db.transaction(immediate=True) as session:
            registered, skew_ms = repo.kiosk_clock_skew(session, kiosk_id)
            if not registered:
                raise NotFound(f"kiosk {kiosk_id} is not registered", kiosk_id=kiosk_id)
            prepared = prepare(
                session, kiosk_id, op, slot, expires_in_s=expires_in_s, skew_ms=skew_ms
            )
        return self.send_prepared(prepared, timeout_s=timeout_s)

    def send_prepared(
        self, prepared: PreparedCommand, *, timeout_s: float = 10.0, applied: bool = True
    ) -> CmdResult | None:
        """`send` for a command the caller recorded (`prepare`) and committed already.

        With `applied=False` the kiosk's answer is returned as soon as a bridge has decoded
        it, before the bridge's transaction records it (the command row, the slots): for a
        caller that settles the answer itself under its own lock, as a rent does."""
        kiosk_id, op, slot, cmd_id = prepared.kiosk_id, prepared.op, prepared.slot, prepared.cmd_id
        # The kiosk compares the expiry with its own clock: express it in kiosk time.
        command = Command(
            kiosk_id=kiosk_id,
            seq=0,
            ts_ms=to_ms(prepared.created_at),
            cmd_id=cmd_id,
            op=op,
            expires_ms=max(0, to_ms(prepared.expires_at) - (prepared.skew_ms or 0)),
            slot=slot,
        )
        try:
            self.publisher.publish_and_wait(
                topics.downlink(kiosk_id, MsgType.COMMAND), encode(command), qos=1
            )
        except Exception:
            self._finish(cmd_id, "send_failed")
            raise
        key = result_key(cmd_id) if applied else answer_key(cmd_id)
        raw = self.shared_state.wait_result(key, timeout_s)
        if raw is None:
            self._finish(cmd_id, "timeout")
            log.info(
                "command %s %s to kiosk %s: no answer in %.1f s", cmd_id, op, kiosk_id, timeout_s
            )
            return None
        # The topic pins the type: decode_uplink rejects anything but a CmdResult on it.
        result = decode_uplink(topics.uplink(kiosk_id, MsgType.CMD_RESULT), raw)
        if not isinstance(result, CmdResult):  # pragma: no cover - guaranteed by the codec
            raise TypeError(f"expected a CmdResult, got {type(result).__name__}")
        return result

    def _finish(self, cmd_id: str, status: str) -> None:
        with self.db.transaction(immediate=True) as session:
            repo.finish_command_if_pending(session, cmd_id, status, clock.now())

    def publish_retained(self, kiosk_id: str, message: Playlist | Config) -> None:
        """Playlists and configuration are retained: a kiosk that (re)connects gets the
        current one at once, without the cloud having to notice the reconnect."""
        if message.kiosk_id != kiosk_id:
            raise ValueError(f"message for {message.kiosk_id} published to {kiosk_id}")
        self.publisher.publish_and_wait(
            topics.downlink(kiosk_id, msg_type(message)), encode(message), qos=1, retain=True
        )
