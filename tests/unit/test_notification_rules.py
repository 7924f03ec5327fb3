"""What riders are told, rendered for WeChat subscribe message templates (pure, no I/O).

Every rendering is also checked against the WeChat stand-in's own reading of WeChat's value
rules (`subscribe_value_problem`), written separately from the renderer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.config import Settings
from server.core.money import Fen
from server.notifications import rules, templates
from server.notifications.templates import RenderError, TemplateSet
from server.wechat.standin import subscribe_value_problem

QUEUED = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)

#: The payloads the producers write today (rentals/service.py, rentals/jobs.py, deposits/).
PAYLOADS: dict[str, dict[str, Any]] = {
    rules.RENTAL_STARTED: {
        "rental_id": 42,
        "kiosk_id": "K000123",
        "started_at": "2026-11-19T06:05:00+00:00",
        "deadline_at": "2026-11-26T06:05:00+00:00",
    },
    rules.RENTAL_RETURNED: {
        "rental_id": 42,
        "kiosk_id": "K000124",
        "returned_at": "2026-11-21T13:30:00+00:00",
    },
    rules.DEADLINE_DAY5: {"rental_id": 42, "deadline_at": "2026-11-26T06:05:00+00:00"},
    rules.DEADLINE_DAY6: {"rental_id": 42, "deadline_at": "2026-11-26T06:05:00+00:00"},
    rules.DEPOSIT_RECEIVED: {"amount_fen": 3000, "paid_at": "2026-11-19T06:00:00Z"},
    rules.DEPOSIT_REFUNDED: {"amount_fen": 3000, "refunded_at": "2026-11-22T02:00:00+00:00"},
    rules.DEPOSIT_FORFEITED: {
        "rental_id": 42,
        "amount_fen": 3000,
        "deadline_at": "2026-11-26T06:05:00+00:00",
    },
    rules.FORFEITURE_REVERSED: {
        "rental_id": 42,
        "amount_fen": 3000,
        "returned_at": "2026-11-26T06:00:00+00:00",
    },
    rules.RENTAL_ENDED_BY_OPERATOR: {"rental_id": 42, "reason": "umbrella reported broken"},
}


def test_every_kind_has_a_template_and_a_sample_payload() -> None:
    assert set(PAYLOADS) == rules.KINDS
    for kind in rules.KINDS:
        assert templates.template_for(kind) in templates.TEMPLATES


@pytest.mark.parametrize("kind", sorted(rules.KINDS))
def test_each_kind_renders_its_templates_keys_within_wechats_value_rules(kind: str) -> None:
    rendered = templates.render(kind, PAYLOADS[kind], QUEUED)
    assert tuple(rendered.data) == rendered.template.keys
    for key, value in rendered.data.items():
        assert subscribe_value_problem(key, value) is None, (key, value)


@pytest.mark.parametrize(
    ("fen", "shown"),
    [(3000, "30.00元"), (5, "0.05元"), (0, "0.00元"), (123456, "1234.56元")],
)
def test_amounts_are_rendered_from_integer_fen_as_yuan(fen: int, shown: str) -> None:
    assert templates.amount(Fen(fen)) == shown
    assert subscribe_value_problem("amount2", shown) is None


def test_a_negative_amount_or_a_float_cannot_be_rendered() -> None:
    with pytest.raises(RenderError):
        templates.amount(Fen(-1))
    payload = {**PAYLOADS[rules.DEPOSIT_REFUNDED], "amount_fen": 30.0}
    with pytest.raises(RenderError, match="amount_fen"):
        templates.render(rules.DEPOSIT_REFUNDED, payload, QUEUED)


def test_times_are_shown_in_china_standard_time_to_the_minute() -> None:
    assert templates.local_time(datetime(2026, 11, 26, 6, 5, 59, tzinfo=UTC)) == (
        "2026-11-26 14:05"
    )
    # 17:30 UTC is already the next day in Shanghai.
    assert templates.local_time(datetime(2026, 11, 26, 17, 30, tzinfo=UTC)) == ("2026-11-27 01:30")
    with pytest.raises(RenderError):
        templates.local_time(datetime(2026, 11, 26, 6, 5))  # naive


def test_a_rental_started_message_names_the_kiosk_the_start_and_the_deadline() -> None:
    payload = {**PAYLOADS[rules.RENTAL_STARTED], "kiosk_name": "西湖文化广场地铁站B出口"}
    rendered = templates.render(rules.RENTAL_STARTED, payload, QUEUED)
    assert rendered.template is templates.RENTAL_STARTED
    assert rendered.data == {
        "thing1": "西湖文化广场地铁站B出口",
        "time2": "2026-11-19 14:05",
        "time3": "2026-11-26 14:05",
        "thing4": "7天内归还任意站点免费",
    }


def test_without_a_kiosk_name_the_kiosk_id_is_shown() -> None:
    rendered = templates.render(rules.RENTAL_RETURNED, PAYLOADS[rules.RENTAL_RETURNED], QUEUED)
    assert rendered.data["thing1"] == "K000124"
    assert rendered.data["time2"] == "2026-11-21 21:30"


def test_the_day5_and_day6_reminders_count_the_days_left_and_the_deposit_at_stake() -> None:
    day5 = templates.render(rules.DEADLINE_DAY5, PAYLOADS[rules.DEADLINE_DAY5], QUEUED)
    day6 = templates.render(rules.DEADLINE_DAY6, PAYLOADS[rules.DEADLINE_DAY6], QUEUED)
    assert day5.template is day6.template is templates.DUE_REMINDER
    assert day5.data["thing1"] == "雨伞免费期还剩2天"
    assert day6.data["thing1"] == "雨伞免费期还剩1天"
    assert day5.data["time2"] == "2026-11-26 14:05"
    assert day5.data["amount3"] == "30.00元"  # the 30-yuan deposit when the payload has none
    with_amount = {**PAYLOADS[rules.DEADLINE_DAY5], "amount_fen": 2500}
    assert templates.render(rules.DEADLINE_DAY5, with_amount, QUEUED).data["amount3"] == ("25.00元")


def test_every_deposit_movement_shares_one_template_and_says_what_moved() -> None:
    said = {}
    for kind in (
        rules.DEPOSIT_RECEIVED,
        rules.DEPOSIT_REFUNDED,
        rules.DEPOSIT_FORFEITED,
        rules.FORFEITURE_REVERSED,
    ):
        rendered = templates.render(kind, PAYLOADS[kind], QUEUED)
        assert rendered.template is templates.DEPOSIT_CHANGED
        assert rendered.data["amount2"] == "30.00元"
        said[kind] = rendered.data["thing1"]
    assert len(set(said.values())) == 4
    received = templates.render(rules.DEPOSIT_RECEIVED, PAYLOADS[rules.DEPOSIT_RECEIVED], QUEUED)
    assert received.data["time3"] == "2026-11-19 14:00"
    reversed_ = templates.render(
        rules.FORFEITURE_REVERSED, PAYLOADS[rules.FORFEITURE_REVERSED], QUEUED
    )
    assert reversed_.data["time3"] == "2026-11-26 14:00"  # the return the kiosk saw


def test_a_money_message_never_guesses_the_amount() -> None:
    payload = {k: v for k, v in PAYLOADS[rules.DEPOSIT_REFUNDED].items() if k != "amount_fen"}
    with pytest.raises(RenderError, match="amount_fen"):
        templates.render(rules.DEPOSIT_REFUNDED, payload, QUEUED)


def test_an_event_time_missing_from_the_payload_is_the_time_it_was_queued() -> None:
    forfeited = templates.render(rules.DEPOSIT_FORFEITED, PAYLOADS[rules.DEPOSIT_FORFEITED], QUEUED)
    assert forfeited.data["time3"] == "2026-11-20 14:00"
    ended = templates.render(
        rules.RENTAL_ENDED_BY_OPERATOR, PAYLOADS[rules.RENTAL_ENDED_BY_OPERATOR], QUEUED
    )
    assert ended.data["time2"] == "2026-11-20 14:00"


def test_free_text_is_cut_to_twenty_characters_on_one_line() -> None:
    assert templates.thing("a" * 20) == "a" * 20
    cut = templates.thing("伞" * 25)
    assert len(cut) == 20
    assert cut.endswith("…")
    assert templates.thing("broken\nhandle\t ") == "broken handle"
    with pytest.raises(RenderError):
        templates.thing(" \n")
    reason = {"reason": "Umbrella handle broken, replaced by the station operator on site"}
    ended = templates.render(rules.RENTAL_ENDED_BY_OPERATOR, reason, QUEUED)
    assert len(ended.data["thing1"]) == 20
    assert subscribe_value_problem("thing1", ended.data["thing1"]) is None


def test_a_payload_missing_what_the_template_needs_cannot_be_rendered() -> None:
    with pytest.raises(RenderError, match="deadline_at"):
        templates.render(rules.DEADLINE_DAY5, {"rental_id": 1}, QUEUED)
    with pytest.raises(RenderError, match="kiosk"):
        templates.render(rules.RENTAL_RETURNED, {"returned_at": "2026-11-21T13:30:00Z"}, QUEUED)
    with pytest.raises(RenderError, match="ISO 8601"):
        templates.render(rules.DEADLINE_DAY6, {"deadline_at": "next tuesday"}, QUEUED)
    with pytest.raises(RenderError, match="no template"):
        templates.render("birthday_greeting", {}, QUEUED)


def test_template_ids_page_and_version_come_from_settings() -> None:
    settings = Settings(
        wechat_tpl_due_reminder="tplDue123",
        wechat_tpl_rental_ended="",
        wechat_subscribe_page="pages/me/rentals",
        wechat_miniprogram_state="trial",
    )
    tpl = TemplateSet.from_settings(settings)
    assert tpl.id_of(templates.DUE_REMINDER) == "tplDue123"
    assert tpl.id_of(templates.RENTAL_ENDED) == ""
    assert tpl.miniprogram_state == "trial"
    catalog = tpl.catalog()
    assert catalog["tplDue123"] == ("thing1", "time2", "amount3", "thing4")
    assert len(catalog) == len(templates.TEMPLATES) - 1  # an empty id is switched off
    assert templates.page_for(tpl, {"rental_id": 42}) == "pages/me/rentals?rental_id=42"
    assert templates.page_for(tpl, {"amount_fen": 3000}) == "pages/me/rentals"


def test_retries_back_off_and_stop_after_a_day() -> None:
    delays = [rules.retry_delay(n) for n in range(1, 7)]
    assert delays[0] == timedelta(seconds=15)
    assert delays == sorted(delays)
    assert delays[-1] == delays[-2] == timedelta(minutes=30)
    assert not rules.gives_up(QUEUED, QUEUED + timedelta(hours=23, minutes=59))
    assert rules.gives_up(QUEUED, QUEUED + timedelta(hours=24))


def test_a_reminder_that_would_arrive_after_its_deadline_is_stale() -> None:
    payload = PAYLOADS[rules.DEADLINE_DAY6]
    deadline = datetime(2026, 11, 26, 6, 5, tzinfo=UTC)
    assert rules.stale_reason(rules.DEADLINE_DAY6, payload, deadline - timedelta(seconds=1)) is None
    assert rules.stale_reason(rules.DEADLINE_DAY6, payload, deadline) is not None
    # Money messages are never stale: the rider is told even late.
    forfeited = PAYLOADS[rules.DEPOSIT_FORFEITED]
    assert (
        rules.stale_reason(rules.DEPOSIT_FORFEITED, forfeited, deadline + timedelta(days=1)) is None
    )
