"""What each notification kind says in a WeChat subscribe message. Pure: no I/O, no clock.

A subscribe message fills a template the mini-program picked from WeChat's public library;
its keys are typed by prefix (`thing1`, `amount2`, `time3`...) and WeChat refuses values that
break the type's rule with 47003 (订阅消息参数值内容限制): `thing` at most 20 characters,
`amount` a currency sign or none plus at most 10 digits with an optional decimal part and
an optional trailing "元", `time` a 24-hour time with an optional date. So amounts are
rendered from integer fen as "30.00元", times in the rider's local time (China Standard
Time) as "2026-11-26 14:05", and free text is cut to 20 characters.

Five templates serve the nine kinds: the rider grants each template separately (one-time
subscriptions, at most three per `wx.requestSubscribeMessage`), so kinds that say the same
sort of thing share one (both reminders; every deposit movement).

What the templates read from a payload (amounts integer fen, times ISO 8601 with an
offset; every other key is kept for the rider API and ignored here):

- the place: `kiosk_name`, else `kiosk_id` (the sender fills `kiosk_name` from the registry);
- the event's time: the kind's own key (`started_at`, `returned_at`, `paid_at`,
  `refunded_at`, `forfeited_at`, `reversed_at`, `ended_at`) or `at`, else the time the
  notification was queued (the same transaction as the event);
- `deadline_at` for rental_started and the reminders;
- `amount_fen` for every deposit movement (required: a money message never guesses), and
  for the reminders the deposit at stake (30 yuan when absent);
- `reason` for rental_ended_by_operator (optional).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Final

from server.core.money import DEPOSIT, Fen, fen, yuan_str
from server.notifications import rules

if TYPE_CHECKING:
    from server.config import Settings

#: China Standard Time. A fixed offset rather than ZoneInfo("Asia/Shanghai"): China has had
#: no daylight saving since 1991, and a fixed offset needs no tz database (the embedded
#: default runs on a bare Python, Windows included).
CHINA_TIME: Final = timezone(timedelta(hours=8), "CST")
#: WeChat's limit for `thing` values (and our cap for anything free-form).
THING_MAX: Final = 20


class RenderError(ValueError):
    """The payload cannot fill the template (a key missing, a value of the wrong type). Our
    bug, not WeChat's: the notification is not retried."""


@dataclass(frozen=True)
class Template:
    """One template: the setting that holds its id, and its keys in order."""

    setting: str
    title: str
    keys: tuple[str, ...]


RENTAL_STARTED: Final = Template(
    "wechat_tpl_rental_started", "租借成功通知", ("thing1", "time2", "time3", "thing4")
)
RENTAL_RETURNED: Final = Template(
    "wechat_tpl_rental_returned", "归还成功通知", ("thing1", "time2", "thing3")
)
DUE_REMINDER: Final = Template(
    "wechat_tpl_due_reminder", "到期提醒", ("thing1", "time2", "amount3", "thing4")
)
DEPOSIT_CHANGED: Final = Template(
    "wechat_tpl_deposit_changed", "押金变动通知", ("thing1", "amount2", "time3", "thing4")
)
RENTAL_ENDED: Final = Template("wechat_tpl_rental_ended", "租借结束通知", ("thing1", "time2"))

TEMPLATES: Final = (RENTAL_STARTED, RENTAL_RETURNED, DUE_REMINDER, DEPOSIT_CHANGED, RENTAL_ENDED)


@dataclass(frozen=True)
class TemplateSet:
    """The template ids (by setting name), the page a card opens, and the mini-program
    version (`developer | trial | formal`)."""

    ids: Mapping[str, str]
    page: str = "pages/rentals/index"
    miniprogram_state: str = "formal"

    @classmethod
    def from_settings(cls, settings: Settings) -> TemplateSet:
        return cls(
            ids={t.setting: str(getattr(settings, t.setting)) for t in TEMPLATES},
            page=settings.wechat_subscribe_page,
            miniprogram_state=settings.wechat_miniprogram_state,
        )

    def id_of(self, template: Template) -> str:
        return self.ids.get(template.setting, "")

    def catalog(self) -> dict[str, tuple[str, ...]]:
        """template id -> its keys, for a WeChat stand-in that should know our templates."""
        return {self.id_of(t): t.keys for t in TEMPLATES if self.id_of(t)}


@dataclass(frozen=True)
class Rendered:
    template: Template
    data: dict[str, str]


# -- value formatting (WeChat's typed fields) ---------------------------------------------


def amount(value: Fen) -> str:
    """`amount` field: 3000 fen -> "30.00元"."""
    if value < 0:
        raise RenderError(f"an amount to show must not be negative, got {value} fen")
    return f"{yuan_str(value)}元"


def local_time(value: datetime) -> str:
    """`time` field: an aware datetime in China Standard Time, "2026-11-26 14:05"."""
    if value.tzinfo is None:
        raise RenderError("naive datetime in a notification payload")
    return value.astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M")


def thing(value: str) -> str:
    """`thing` field: at most 20 characters, no control characters, never empty."""
    text = " ".join(value.split())  # newlines and tabs are refused by WeChat
    if not text:
        raise RenderError("empty text for a thing field")
    if len(text) > THING_MAX:
        text = text[: THING_MAX - 1] + "…"
    return text


def _get(payload: Mapping[str, object], key: str) -> object:
    if key not in payload or payload[key] is None:
        raise RenderError(f"payload lacks {key!r}")
    return payload[key]


def _parse_time(key: str, value: object) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise RenderError(f"payload {key!r} is not an ISO 8601 time: {value!r}") from exc
    else:
        raise RenderError(f"payload {key!r} must be an ISO 8601 time, got {value!r}")
    if parsed.tzinfo is None:  # stored times are UTC (CONVENTIONS: Time and money)
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _time(payload: Mapping[str, object], key: str) -> str:
    return local_time(_parse_time(key, _get(payload, key)))


#: Where each kind keeps the time of its event (before the generic `at`).
_EVENT_TIME_KEYS: Final = {
    rules.RENTAL_STARTED: "started_at",
    rules.RENTAL_RETURNED: "returned_at",
    rules.DEPOSIT_RECEIVED: "paid_at",
    rules.DEPOSIT_REFUNDED: "refunded_at",
    rules.DEPOSIT_FORFEITED: "forfeited_at",
    rules.FORFEITURE_REVERSED: "reversed_at",
    rules.RENTAL_ENDED_BY_OPERATOR: "ended_at",
}


def _event_time(kind: str, payload: Mapping[str, object], queued_at: datetime) -> str:
    keys = [_EVENT_TIME_KEYS.get(kind, "at"), "at"]
    if kind == rules.FORFEITURE_REVERSED:
        keys.insert(1, "returned_at")  # undone by a return the kiosk saw before the deadline
    for key in keys:
        if payload.get(key) is not None:
            return local_time(_parse_time(key, payload[key]))
    return local_time(queued_at)


def _place(payload: Mapping[str, object]) -> str:
    for key in ("kiosk_name", "kiosk_id"):
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return thing(value)
    raise RenderError("payload lacks 'kiosk_name' and 'kiosk_id'")


def _amount(payload: Mapping[str, object], default: Fen | None = None) -> str:
    value = payload.get("amount_fen", default)
    if value is None:
        raise RenderError("payload lacks 'amount_fen'")
    try:
        return amount(fen(value))
    except TypeError as exc:
        raise RenderError(f"payload 'amount_fen': {exc}") from exc


# -- one renderer per kind ----------------------------------------------------------------

_DEPOSIT_WORDS: Final = {
    rules.DEPOSIT_RECEIVED: ("押金支付成功", "可扫码借伞,7天内归还免费"),
    rules.DEPOSIT_REFUNDED: ("押金已退回", "已原路退回微信支付"),
    rules.DEPOSIT_FORFEITED: ("押金已扣除", "超过7天未归还,雨伞归您所有"),
    rules.FORFEITURE_REVERSED: ("押金已恢复", "截止前已归还,扣除已撤销"),
}
_DAYS_LEFT: Final = {rules.DEADLINE_DAY5: 2, rules.DEADLINE_DAY6: 1}

_Renderer = Callable[[str, Mapping[str, object], datetime], dict[str, str]]


def _rental_started(kind: str, p: Mapping[str, object], queued_at: datetime) -> dict[str, str]:
    return {
        "thing1": _place(p),
        "time2": _event_time(kind, p, queued_at),
        "time3": _time(p, "deadline_at"),
        "thing4": thing("7天内归还任意站点免费"),
    }


def _rental_returned(kind: str, p: Mapping[str, object], queued_at: datetime) -> dict[str, str]:
    return {
        "thing1": _place(p),
        "time2": _event_time(kind, p, queued_at),
        "thing3": thing("本次租借已结束"),
    }


def _due_reminder(kind: str, p: Mapping[str, object], _: datetime) -> dict[str, str]:
    return {
        "thing1": thing(f"雨伞免费期还剩{_DAYS_LEFT[kind]}天"),
        "time2": _time(p, "deadline_at"),
        "amount3": _amount(p, default=DEPOSIT),
        "thing4": thing("到期未归还将扣除押金"),
    }


def _deposit_changed(kind: str, p: Mapping[str, object], queued_at: datetime) -> dict[str, str]:
    what, note = _DEPOSIT_WORDS[kind]
    return {
        "thing1": thing(what),
        "amount2": _amount(p),
        "time3": _event_time(kind, p, queued_at),
        "thing4": thing(note),
    }


def _rental_ended(kind: str, p: Mapping[str, object], queued_at: datetime) -> dict[str, str]:
    reason = p.get("reason")
    return {
        "thing1": thing(reason if isinstance(reason, str) and reason.strip() else "运营结束"),
        "time2": _event_time(kind, p, queued_at),
    }


_KINDS: Final[dict[str, tuple[Template, _Renderer]]] = {
    rules.RENTAL_STARTED: (RENTAL_STARTED, _rental_started),
    rules.RENTAL_RETURNED: (RENTAL_RETURNED, _rental_returned),
    rules.DEADLINE_DAY5: (DUE_REMINDER, _due_reminder),
    rules.DEADLINE_DAY6: (DUE_REMINDER, _due_reminder),
    rules.DEPOSIT_RECEIVED: (DEPOSIT_CHANGED, _deposit_changed),
    rules.DEPOSIT_REFUNDED: (DEPOSIT_CHANGED, _deposit_changed),
    rules.DEPOSIT_FORFEITED: (DEPOSIT_CHANGED, _deposit_changed),
    rules.FORFEITURE_REVERSED: (DEPOSIT_CHANGED, _deposit_changed),
    rules.RENTAL_ENDED_BY_OPERATOR: (RENTAL_ENDED, _rental_ended),
}


def template_for(kind: str) -> Template:
    try:
        return _KINDS[kind][0]
    except KeyError:
        raise RenderError(f"no template for notification kind {kind!r}") from None


def render(kind: str, payload: Mapping[str, object], queued_at: datetime) -> Rendered:
    """The template and data values for one notification; `RenderError` if it cannot be.
    `queued_at` (the row's created_at) stands in for an event time the payload lacks."""
    template = template_for(kind)
    data = _KINDS[kind][1](kind, payload, queued_at)
    if tuple(data) != template.keys:  # pragma: no cover - a renderer out of step with its table
        raise RenderError(f"{kind} renders {tuple(data)}, template has {template.keys}")
    return Rendered(template, data)


def page_for(templates: TemplateSet, payload: Mapping[str, object]) -> str:
    """The page a card opens; with the rental it is about when the payload names one."""
    rental_id = payload.get("rental_id")
    if isinstance(rental_id, int) and not isinstance(rental_id, bool) and templates.page:
        return f"{templates.page}?rental_id={rental_id}"
    return templates.page
