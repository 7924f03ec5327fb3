"""Pure kiosk rules and the broker credential/ACL formats: no database, no broker."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from server.broker.credentials import (
    PBKDF2_ITERATIONS,
    generate_password,
    hash_password,
    parse_password_file,
    render_password_file,
    verify_password,
)
from server.broker.mosquitto import (
    MosquittoAcl,
    MosquittoConfOptions,
    filter_covered,
    render_acl,
    render_mosquitto_conf,
    topic_matches,
)
from server.kiosks import rules

# --- venue taxonomy --------------------------------------------------------------------------


def test_every_spec_venue_maps_to_an_openooh_id() -> None:
    assert {v.key: v.id for v in rules.VENUE_TYPES.values()} == {
        "metro_exit": "105",
        "bus_stop": "303",
        "mall": "205",
        "scenic_spot": "801",
        "bank": "1001",
        "hotel": "807",
    }


def test_venue_type_accepts_an_id_or_our_key() -> None:
    assert rules.resolve_venue_type("105") == "105"
    assert rules.resolve_venue_type(" hotel ") == "807"


def test_unknown_venue_type_is_rejected_with_the_allowed_list() -> None:
    with pytest.raises(ValueError, match=r"1001 \(bank\)"):
        rules.resolve_venue_type("1.101")


# --- ids ---------------------------------------------------------------------------------------


def test_generated_kiosk_ids_are_k_and_six_digits_and_valid_mqtt_usernames() -> None:
    rng = random.Random(1)
    ids = [rules.new_kiosk_id(rng) for _ in range(200)]
    assert all(re.fullmatch(r"K\d{6}", i) for i in ids)
    assert all(rules.valid_kiosk_id(i) for i in ids)


@pytest.mark.parametrize("bad", ["", "K/1", "K+1", "K#", "a" * 33, "K 1", "K1\n"])
def test_kiosk_ids_that_could_break_topics_are_invalid(bad: str) -> None:
    assert not rules.valid_kiosk_id(bad)


# --- geometry ----------------------------------------------------------------------------------


def test_haversine_of_one_degree_of_latitude_is_about_111_km() -> None:
    assert rules.haversine_m(30.0, 120.0, 31.0, 120.0) == pytest.approx(111_195, rel=1e-3)


def test_haversine_between_shanghai_and_hangzhou_is_about_165_km() -> None:
    people_square = (31.2304, 121.4737)
    west_lake = (30.2741, 120.1551)
    assert rules.haversine_m(*people_square, *west_lake) == pytest.approx(165_000, rel=0.01)


def test_haversine_is_zero_for_the_same_point_and_symmetric() -> None:
    assert rules.haversine_m(30, 120, 30, 120) == 0
    assert rules.haversine_m(30, 120, 30.01, 120.02) == pytest.approx(
        rules.haversine_m(30.01, 120.02, 30, 120)
    )


def test_bounding_box_contains_every_point_of_the_circle() -> None:
    lat, lon, radius = 30.2741, 120.1551, 1_000.0
    box = rules.bounding_box(lat, lon, radius)
    for p_lat, p_lon in rules.scatter_around(lat, lon, 500, radius, random.Random(3)):
        assert box.contains(p_lat, p_lon)
    # and it is tight: its edges are the radius away along the axes
    assert rules.haversine_m(lat, lon, box.max_lat, lon) == pytest.approx(radius, rel=1e-6)
    assert rules.haversine_m(lat, lon, lat, box.max_lon) == pytest.approx(radius, rel=1e-3)


def test_scattered_points_stay_within_the_radius() -> None:
    points = rules.scatter_around(30.0, 120.0, 300, 2_000, random.Random(5))
    assert max(rules.haversine_m(30.0, 120.0, a, b) for a, b in points) <= 2_001


# --- password hashes ---------------------------------------------------------------------------


def test_password_hash_has_mosquittos_pbkdf2_sha512_format() -> None:
    encoded = hash_password("secret")
    m = re.fullmatch(r"\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", encoded)
    assert m is not None
    assert int(m.group(1)) == PBKDF2_ITERATIONS
    assert len(m.group(2)) == 16  # base64 of a 12-byte salt
    assert len(m.group(3)) == 88  # base64 of a 64-byte SHA-512 digest


def test_a_hash_verifies_its_password_only() -> None:
    encoded = hash_password("secret")
    assert verify_password("secret", encoded)
    assert not verify_password("Secret", encoded)
    assert hash_password("secret") != encoded  # random salt


@pytest.mark.parametrize("bad", ["", "$6$abc$def", "$7$x$y$z", "$7$101$!!$!!", "$7$0$AAAA$AAAA"])
def test_a_malformed_hash_never_verifies(bad: str) -> None:
    assert not verify_password("secret", bad)


def test_hash_written_by_mosquitto_passwd_verifies_and_ours_has_its_shape(tmp_path: Path) -> None:
    binary = shutil.which("mosquitto_passwd")
    if binary is None:
        pytest.skip("mosquitto_passwd not installed")
    path = tmp_path / "passwd"
    subprocess.run([binary, "-c", "-b", str(path), "K000001", "s3cret-pw"], check=True)
    theirs = parse_password_file(path.read_text())["K000001"]

    assert verify_password("s3cret-pw", theirs)
    assert not verify_password("wrong", theirs)
    ours = hash_password("s3cret-pw")
    assert [len(p) for p in ours.split("$")] == [len(p) for p in theirs.split("$")]
    assert ours.split("$")[2] == theirs.split("$")[2]  # same iteration count


def test_generated_passwords_are_long_and_distinct() -> None:
    pwds = {generate_password() for _ in range(50)}
    assert len(pwds) == 50
    assert all(len(p) == 32 for p in pwds)


def test_password_file_round_trips_sorted_by_username() -> None:
    text = render_password_file([("K2", "$7$h2"), ("K1", "$7$h1")])
    assert text == "K1:$7$h1\nK2:$7$h2\n"
    assert parse_password_file("# c\n\n" + text) == {"K1": "$7$h1", "K2": "$7$h2"}


# --- ACL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_", "topic", "expected"),
    [
        ("umb/1/+/up/#", "umb/1/K1/up/hb", True),
        ("umb/1/+/up/#", "umb/1/K1/down/cmd", False),
        ("umb/1/K1/up/#", "umb/1/K1/up", True),  # '#' also matches the parent level
        ("umb/1/+/up/+", "umb/1/K1/up/hb/x", False),
        ("#", "$SYS/broker/uptime", False),
    ],
)
def test_topic_filter_matching(filter_: str, topic: str, expected: bool) -> None:
    assert topic_matches(filter_, topic) is expected


def test_a_subscription_is_covered_only_if_all_its_topics_are() -> None:
    assert filter_covered("umb/1/+/up/#", "umb/1/+/up/+")
    assert filter_covered("umb/1/K1/down/#", "umb/1/K1/down/cmd")
    assert not filter_covered("umb/1/K1/down/#", "umb/1/+/down/#")
    assert not filter_covered("umb/1/K1/down/+", "umb/1/K1/down/#")


def test_generated_acl_pins_each_kiosk_to_its_own_topics() -> None:
    acl = MosquittoAcl.parse(render_acl(["cloud"]))

    assert acl.allows("K1", "umb/1/K1/up/hb", "write")
    assert not acl.allows("K1", "umb/1/K2/up/hb", "write")
    assert not acl.allows("K1", "umb/1/K1/down/cmd", "write")
    assert acl.allows("K1", "umb/1/K1/down/cmd", "read")
    assert not acl.allows("K1", "umb/1/K2/down/cmd", "read")
    assert acl.allows_subscribe("K1", "umb/1/K1/down/+")
    assert not acl.allows_subscribe("K1", "umb/1/+/down/+")
    assert not acl.allows_subscribe("K1", "#")


def test_generated_acl_lets_the_cloud_read_uplinks_and_write_downlinks_only() -> None:
    acl = MosquittoAcl.parse(render_acl(["cloud"]))

    assert acl.allows("cloud", "umb/1/K9/up/slot", "read")
    assert acl.allows("cloud", "umb/1/K9/down/cmd", "write")
    assert not acl.allows("cloud", "umb/1/K9/up/slot", "write")
    assert acl.allows_subscribe("cloud", "umb/1/+/up/+")


def test_anonymous_and_wildcard_usernames_get_nothing() -> None:
    acl = MosquittoAcl.parse(render_acl(["cloud"]))

    assert not acl.allows(None, "umb/1/K1/up/hb", "write")
    assert not acl.allows("+", "umb/1/+/up/hb", "write")
    assert not acl.allows("#", "umb/1/#/down/cmd", "read")


def test_deny_lines_win_over_grants() -> None:
    acl = MosquittoAcl.parse("user u\ntopic readwrite a/#\ntopic deny a/secret\n")

    assert acl.allows("u", "a/b", "write")
    assert not acl.allows("u", "a/secret", "read")


def test_mosquitto_conf_refuses_anonymous_and_points_at_both_files(tmp_path: Path) -> None:
    conf = render_mosquitto_conf(
        tmp_path / "passwd", tmp_path / "acl", MosquittoConfOptions(port=1999)
    )

    assert "listener 1999 127.0.0.1" in conf
    assert "allow_anonymous false" in conf
    assert f"password_file {(tmp_path / 'passwd').resolve()}" in conf
    assert f"acl_file {(tmp_path / 'acl').resolve()}" in conf
    assert "persistence false" in conf
    assert "max_queued_messages 100000" in conf
    assert "$" not in conf  # every template placeholder was filled
