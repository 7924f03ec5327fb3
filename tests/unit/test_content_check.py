"""The automatic price-advertising check (SPEC §4 Creatives): a table of creative texts as
advertisers write them, half price ads and half not, each with its expected verdict."""

from __future__ import annotations

import pytest

from server.creatives import rules
from server.creatives.rules import Field

# (text, expected rule id or None for "passes")
PRICE_ADS: list[tuple[str, str]] = [
    ("瑞幸生椰拿铁 ¥9.9 起", "currency_amount"),
    ("全新Model Y，售价仅需26.39万元起", "currency_amount"),
    ("金秋大闸蟹礼盒，仅售199元，顺丰包邮", "currency_amount"),
    ("周末火锅自助 九十九元 畅吃两小时", "currency_amount"),
    ("早餐套餐只要九块九", "currency_amount"),
    ("只要 99 块！", "currency_amount"),
    ("地铁口鲜榨橙汁 ￥１５", "currency_amount"),
    ("Brunch set RMB 88, weekends only", "currency_amount"),
    ("Grande latte only $3.50", "currency_amount"),
    ("Hotel rooms from ¥199", "currency_amount"),
    ("Unlimited data for just 59 yuan", "currency_amount"),
    ("奶茶 ¥3/杯，第二杯更优惠", "per_unit_price"),
    ("共享充电宝 2元/小时，封顶20元", "per_unit_price"),
    ("精品酒店每晚仅 258 元", "per_unit_price"),
    ("健身年卡折合每月68元", "per_unit_price"),
    ("Fresh coffee at $2 per cup", "per_unit_price"),
    ("Lakeside rooms ¥399 a night", "per_unit_price"),
    ("原价299 现价129，限时三天", "was_now_price"),
    ("专柜价1999元，今日到手价899元", "was_now_price"),
    ("Was $120, now $59 at our flagship store", "was_now_price"),
    ("双11 全场五折起", "discount"),
    ("会员日 7.5折", "discount"),
    ("第二杯半价，仅限今日", "discount"),
    ("满200减50，上不封顶", "discount"),
    ("Summer sale: 50% off all sneakers", "discount"),
    ("Half price cocktails 5-7pm", "discount"),
    ("限时特价，先到先得", "price_word"),
    ("新款手机低至1999起", "price_word"),
    ("年货节秒杀，手慢无", "price_word"),
    ("Lowest prices in town, guaranteed", "price_word"),
    ("夏日冰饮只要99！", "price_word"),
    ("Chef's tasting menu. Price: 688", "price_word"),
]

CLEAN: list[str] = [
    "雨天出行，就近还伞",
    "借伞扫码，还伞就近，出行不再湿身",
    "地铁3号线 西湖文化广场站 B口",
    "客服热线 400-820-8820，24小时营业",
    "新用户注册即享7天免费借伞",
    "2026年11月26日 10:00-22:00 西湖音乐喷泉",
    "iPhone 15 Pro 现已登场，5G 更快",
    "招商银行 · 因您而变",
    "正月十五元宵节，全家团圆",
    "一元复始，万象更新——中国平安祝您新春快乐",
    "三元里站 A 口出站右转 50 米",
    "周一元气满满，元气森林陪你出发",
    "三折伞轻巧便携，折叠收纳不占地",
    "品质不打折扣，服务始终如一",
    "南京西路1266号 恒隆广场 7号楼2单元",
    "屏幕分成三块，和朋友一块出发",
    "今晚气温低至3℃，出门记得带伞",
    "第1站：杭州东站，全程约25分钟",
    "Just do it.",
    "Open 24 hours at Exit B, Line 2",
    "Think different. Shot on iPhone 15",
    "100% recycled materials, made in Shanghai",
    "Call 95588 or visit www.icbc.com.cn",
    "Priceless moments start here. Mastercard",
    "The Bund, 7 days a week, 9am-10pm",
    "Grand opening on 12/1 at Jing'an Kerry Centre",
    "Join 3 million riders who never get wet",
    "Welcome to Hangzhou, Paradise on Earth",
    "下一站，西湖；第2出口步行5分钟",
    "华为 Mate 60 系列 · 遥遥领先",
    "仅需3分钟，扫码即借",
    "每周三会员日，借伞更方便",
]


def test_the_table_is_large_and_balanced() -> None:
    assert len(PRICE_ADS) >= 20
    assert len(CLEAN) >= 20
    assert len(PRICE_ADS) + len(CLEAN) >= 40
    assert abs(len(PRICE_ADS) - len(CLEAN)) <= 2
    assert {rule for _, rule in PRICE_ADS} == rules.RULE_IDS


@pytest.mark.parametrize(("text", "rule_id"), PRICE_ADS, ids=[t for t, _ in PRICE_ADS])
def test_price_advertising_is_rejected_naming_the_rule(text: str, rule_id: str) -> None:
    verdict = rules.check(title="Campaign", body_text=text)
    assert not verdict.ok
    assert verdict.rule == rule_id
    assert verdict.field is Field.BODY_TEXT
    assert verdict.match
    assert verdict.match in text
    assert f"rule {rule_id}" in verdict.message


@pytest.mark.parametrize("text", CLEAN)
def test_brands_slogans_and_travel_text_pass(text: str) -> None:
    verdict = rules.check(title=text, body_text=text, declared_text=text)
    assert verdict.ok, verdict.message
    assert verdict.rule is None


def test_full_width_digits_and_yen_sign_are_normalised_but_reported_as_typed() -> None:
    verdict = rules.check(title="鲜榨果汁　￥　１５")
    assert verdict.rule == "currency_amount"
    assert verdict.match == "￥　１５"


def test_zero_width_characters_do_not_hide_a_price() -> None:
    verdict = rules.check(title="特\u200b价 9\u200b9\u200d元")
    assert verdict.rule == "currency_amount"
    assert verdict.match == "9\u200b9\u200d元"


def test_declared_text_is_checked_like_the_copy() -> None:
    verdict = rules.check(
        title="年终回馈", body_text="感谢一路相伴", declared_text="视频第3秒：仅售39元"
    )
    assert verdict.rule == "currency_amount"
    assert verdict.field is Field.DECLARED_TEXT
    assert "the declared text" in verdict.message


def test_the_title_is_checked_before_the_text() -> None:
    verdict = rules.check(title="Half price today", body_text="¥5/杯")
    assert (verdict.rule, verdict.field) == ("discount", Field.TITLE)


def test_the_most_specific_rule_names_a_per_unit_price() -> None:
    assert rules.check(title="5元/小时").rule == "per_unit_price"
    assert rules.check(title="5元").rule == "currency_amount"


def test_a_clean_creative_gets_the_ok_verdict() -> None:
    verdict = rules.check(title="", body_text="", declared_text="")
    assert verdict.ok
    assert verdict.match is None
    assert verdict.field is None
