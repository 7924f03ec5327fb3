"""The automatic check for price advertising (SPEC §4 Creatives). Pure: no I/O.

SPEC §4 allows logos and travel-convenience slogans and forbids price advertising
("product X costs Y"). Before a person reviews a creative, `check` reads its title, its
text and the text the advertiser declares on it, and names the first rule of `RULES`
that matches. The table is ordered from the most telling rule to the broadest, so the
verdict names the most specific reason ("¥3/杯" is a per-unit price before it is a currency
amount).

Text is normalised first, one character at a time, so a match can be reported as the
advertiser typed it: NFKC folds full-width digits, letters, "￥" and the ideographic space
into their plain forms, case is folded, and invisible format characters (zero-width
spaces, often used to dodge filters) are dropped.

What deliberately passes: phone numbers, dates, times, addresses, line and exit numbers,
model numbers ("iPhone 15", "5G"), durations ("7天免费", "24小时营业"), percentages that are
not a discount, temperatures, and the words in which 元/块/折 are not money: 元宵, 元旦,
三元里, 一元复始, 单元, 一块儿 (together), 三块屏幕 (a measure word), 三折伞 (a tri-fold
umbrella), 折叠.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum


class Field(StrEnum):
    TITLE = "title"
    BODY_TEXT = "body_text"
    DECLARED_TEXT = "declared_text"


_FIELD_WORDS = {
    Field.TITLE: "the title",
    Field.BODY_TEXT: "the text",
    Field.DECLARED_TEXT: "the declared text",
}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    pattern: re.Pattern[str]
    #: Why this is price advertising, completing "... because it is <reason>".
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """`rule` is None when nothing matched; otherwise the rule id, the matched text as the
    advertiser typed it, the field it is in, and a sentence for the advertiser."""

    rule: str | None = None
    match: str | None = None
    field: Field | None = None
    message: str = "no price advertising found"

    @property
    def ok(self) -> bool:
        return self.rule is None


# Building blocks. Everything below runs on normalised text (NFKC, case-folded).
_NUM = r"\d+(?:[.,]\d+)?"
#: Chinese numerals as prices are written ("九十九", "一百二十八", "两千").
_CN_NUM = r"[零〇一二两三四五六七八九十百千万]+"
_CN_DIGIT = r"[一二两三四五六七八九]"
#: 元 that is not money: 元宵 (lantern festival), 元旦 (new year's day), 三元里/三元桥 (places),
#: 一元复始 (a new year greeting), 元气 (vitality: "周一元气满满"), 元月, 元素, 元老, 元件.
_YUAN = r"[美港日欧韩]?元(?![宵旦里桥复素老件气月])"
_KUAI_MONEY_AFTER = r"(?=\s*(?:钱|\d|" + _CN_DIGIT + r"|[^\w]|$))"
_SYMBOL = r"[¥$€£]"
_CODE = r"(?:rmb|cny|usd|hkd|eur|gbp)"
_EN_UNIT = r"(?:yuan|rmb|cny|dollars?|bucks|kuai)"
#: An amount of money, in any of the forms the currency rule knows (used by other rules).
_MONEY = (
    rf"(?:(?:{_SYMBOL}|\b{_CODE})\s*{_NUM}"
    rf"|{_NUM}\s*[万千百亿]?\s*(?:{_YUAN}|块{_KUAI_MONEY_AFTER}|{_EN_UNIT}\b|{_SYMBOL})"
    rf"|{_CN_NUM}\s*{_YUAN}"
    rf"|{_CN_NUM}块(?:钱|{_CN_DIGIT}))"
)
#: A price said to be the old one ("原价", "专柜价").
_WAS = r"(?:原价|划线价|门市价|市场价|专柜价)"
_CN_UNITS = (
    r"(?:杯|件|晚|夜|月|年|天|日|小时|时|次|份|个|位|人|斤|公斤|瓶|碗|盒|张|套|把|间|平米|平方米|"
    r"公里|分钟|周|季|节|课|场|单|笼|只|支|包|箱|条)"
)
_EN_UNITS = (
    r"(?:cup|hour|hr|night|month|mo|year|yr|day|week|wk|person|pax|item|piece|pc|kg|lb|"
    r"bottle|box|ride|trip|visit|session|class|ticket|meal|room|unit|pair|bag)s?\b"
)

_RULES: tuple[tuple[str, str, str], ...] = (
    (
        "was_now_price",
        rf"{_WAS}[^。！!\n]{{0,24}}?(?:现价|现在|仅|只要|只需|到手价?|特价|秒杀|优惠价|活动价)"
        rf"\s*:?\s*(?:{_MONEY}|{_NUM})?"
        rf"|{_WAS}\s*:?\s*(?:{_MONEY}|{_NUM})"
        rf"|\bwas\s+{_MONEY}.{{0,24}}?\bnow\s*(?:only\s*)?(?:{_MONEY})?"
        rf"|\b(?:reg(?:ular)?\.?|originally|rrp)\s*(?:price\s*)?:?\s*{_MONEY}",
        "a was/now price comparison",
    ),
    (
        "per_unit_price",
        rf"{_MONEY}\s*(?:/|每|一)\s*{_CN_UNITS}"
        rf"|{_MONEY}\s*(?:/|per\b|an?\b|each\b)\s*{_EN_UNITS}"
        rf"|{_MONEY}\s*each\b"
        rf"|每\s*{_CN_UNITS}\s*(?:仅|只要|只需|低至|不到|才)?\s*{_MONEY}"
        rf"|\bper\s+{_EN_UNITS}\s*(?:only|just|from)?\s*:?\s*{_MONEY}",
        "a price per unit",
    ),
    (
        "discount",
        r"(?:\d(?:\.\d)?|" + _CN_DIGIT + r"{1,2})\s*折(?![叠伞页扇纸痕不])"
        # "不打折扣" / "服务不打折" mean "uncompromising", not a discount.
        r"|(?<!不)打折(?!扣)|(?<!不打)折扣|半价|买一送一|买\d送\d|满\s*\d+\s*减\s*\d+|立减"
        r"|\d+(?:\.\d+)?\s*%\s*off\b|\bhalf[- ]price\b|\bbogo\b|\bbuy\s+one,?\s+get\s+one\b"
        r"|\b(?:discount(?:ed)?|clearance)\b",
        "a discount on a price",
    ),
    (
        "currency_amount",
        _MONEY,
        "an amount of money",
    ),
    (
        "price_word",
        r"仅售|售价|特价|优惠价|折后价|到手价|促销价|活动价|团购价|会员价|限时价|抢购价|"
        r"秒杀|跳楼价|清仓|甩卖|白菜价|一口价|最低价|惊爆价|超值价|低价|价格实惠|"
        r"现价|原价|低至(?!\s*-?\d+(?:\.\d+)?\s*(?:℃|°|度|摄氏))"
        # A bare number after "only" is a price; with a unit it is not ("仅需3分钟").
        r"|(?:只要|只需|仅需|仅要)\s*\d+(?:\.\d+)?(?![\w.%])"
        r"|(?:售价|价格|价)\s*[:：]\s*\d|\bprices?\s*:\s*\d"
        r"|\b(?:on\s+sale|sale\s+price|special\s+price|best\s+price|low(?:est)?\s+prices?|"
        r"price\s+drop|prices?\s+from|starting\s+(?:at|from)\s+just|only\s+costs?)\b",
        "a word that advertises a price",
    ),
)

#: The rule table, in the order rules are tried.
RULES: tuple[Rule, ...] = tuple(
    Rule(rule_id, re.compile(pattern, re.IGNORECASE), reason) for rule_id, pattern, reason in _RULES
)
RULE_IDS: frozenset[str] = frozenset(r.id for r in RULES)
_BY_ID = {r.id: r for r in RULES}


def normalise(text: str) -> tuple[str, list[int]]:
    """The normalised text, and for each of its characters the index of the original
    character it came from (so a match maps back to what the advertiser typed)."""
    out: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if unicodedata.category(ch) == "Cf":
            continue
        folded = unicodedata.normalize("NFKC", ch).casefold()
        out.append(folded)
        origin.extend([i] * len(folded))
    return "".join(out), origin


def message(rule_id: str, match: str, field: Field | None = None) -> str:
    rule = _BY_ID.get(rule_id)
    reason = rule.reason if rule is not None else f"rule {rule_id}"
    where = _FIELD_WORDS[field] if field is not None else "the creative"
    return (
        f"price advertising is not allowed: {where} says “{match}”, which is {reason} "
        f"(rule {rule_id})"
    )


def check_text(text: str) -> tuple[Rule, str] | None:
    """The first rule matching `text` and the matched text as typed, or None."""
    normalised, origin = normalise(text)
    for rule in RULES:
        found = rule.pattern.search(normalised)
        if found is not None:
            start, end = origin[found.start()], origin[found.end() - 1] + 1
            return rule, text[start:end].strip()
    return None


def check(title: str, body_text: str = "", declared_text: str = "") -> Verdict:
    """The verdict on one creative; the first field with a match decides."""
    for field, text in (
        (Field.TITLE, title),
        (Field.BODY_TEXT, body_text),
        (Field.DECLARED_TEXT, declared_text),
    ):
        hit = check_text(text)
        if hit is not None:
            rule, matched = hit
            return Verdict(
                rule=rule.id, match=matched, field=field, message=message(rule.id, matched, field)
            )
    return Verdict()


# Media files (SPEC §4: "image or video"). Kiosk players handle these containers; the type
# is read from the file's first bytes, never from what the uploader claims.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"mif1", b"msf1"})


@dataclass(frozen=True, slots=True)
class MediaType:
    mime: str
    kind: str  # "image" or "video", the values of models.CreativeKind


def sniff(head: bytes) -> MediaType | None:
    """The media type of a file from its first 16 bytes; None for anything a kiosk cannot
    play (HEIF included: few players decode it)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return MediaType("image/png", "image")
    if head.startswith(b"\xff\xd8\xff"):
        return MediaType("image/jpeg", "image")
    if head.startswith((b"GIF87a", b"GIF89a")):
        return MediaType("image/gif", "image")
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return MediaType("image/webp", "image")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return MediaType("video/webm", "video")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return MediaType("image/avif", "image")
        if brand in _HEIF_BRANDS:
            return None
        if brand == b"qt  ":
            return MediaType("video/quicktime", "video")
        return MediaType("video/mp4", "video")
    return None


SNIFF_BYTES = 16
