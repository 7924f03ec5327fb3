"""B-side accounts over HTTP: operators register advertisers and users, users log in, and
a token only ever speaks for its own tenant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.config import Settings
from server.core.db import Database
from tests.accounts_env import log_in, make_advertiser, make_operator

OPERATOR = {"Authorization": "Bearer op-secret"}


@pytest.fixture
def client(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, operator_token="op-secret")
    with TestClient(create_app(settings, db=db)) as c:
        yield c


def test_advertiser_user_logs_in_and_sees_its_own_account(client: TestClient) -> None:
    acme = make_advertiser(client, "Acme", operator_headers=OPERATOR)
    me = client.get("/api/v1/auth/me", headers=acme.headers).json()
    assert me["role"] == "advertiser"
    assert me["advertiser_id"] == acme.id


def test_wrong_password_and_unknown_login_are_refused_alike(client: TestClient) -> None:
    make_advertiser(client, "Acme", operator_headers=OPERATOR)
    for login, password in (("acme-admin", "wrong-password"), ("nobody", "whatever-pw")):
        r = client.post("/api/v1/auth/login", json={"login": login, "password": password})
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"


def test_only_operators_register_advertisers(client: TestClient) -> None:
    acme = make_advertiser(client, "Acme", operator_headers=OPERATOR)
    body = {"name": "Sneaky", "admin_login": "sneaky", "admin_password": "password-1"}
    assert client.post("/api/v1/advertisers", json=body).status_code == 401
    r = client.post("/api/v1/advertisers", json=body, headers=acme.headers)
    assert r.status_code == 403
    listed = client.get("/api/v1/advertisers", headers=OPERATOR).json()
    assert [a["name"] for a in listed] == ["Acme"]


def test_an_advertiser_adds_colleagues_only_to_its_own_account(client: TestClient) -> None:
    acme = make_advertiser(client, "Acme", operator_headers=OPERATOR)
    globex = make_advertiser(client, "Globex", operator_headers=OPERATOR)
    mine = {"login": "acme-2", "password": "password-2", "role": "advertiser"}
    r = client.post("/api/v1/users", json={**mine, "advertiser_id": acme.id}, headers=acme.headers)
    assert r.status_code == 201, r.text
    assert log_in(client, "acme-2", "password-2")
    theirs = {**mine, "login": "mole", "advertiser_id": globex.id}
    assert client.post("/api/v1/users", json=theirs, headers=acme.headers).status_code == 403
    operator = {**mine, "login": "boss", "role": "operator"}
    assert client.post("/api/v1/users", json=operator, headers=acme.headers).status_code == 403
    assert (
        client.post(
            "/api/v1/auth/login", json={"login": "mole", "password": "password-2"}
        ).status_code
        == 401
    )


def test_operator_users_act_as_operators(client: TestClient) -> None:
    ops = make_operator(client, operator_headers=OPERATOR)
    assert client.get("/api/v1/advertisers", headers=ops.headers).status_code == 200


def test_duplicate_login_is_a_conflict_and_creates_nothing(client: TestClient) -> None:
    make_advertiser(client, "Acme", operator_headers=OPERATOR)
    r = client.post(
        "/api/v1/users",
        json={"login": "acme-admin", "password": "password-9", "role": "operator"},
        headers=OPERATOR,
    )
    assert r.status_code == 409
    assert log_in(client, "acme-admin", "pw-Acme-secret")


def test_operator_users_use_the_registry_and_other_tenants_do_not(client: TestClient) -> None:
    ops = make_operator(client, operator_headers=OPERATOR)
    acme = make_advertiser(client, "Acme", operator_headers=OPERATOR)
    body = {"name": "Hangzhou Ops", "region": "Hangzhou"}
    assert client.post("/api/v1/partners", json=body, headers=acme.headers).status_code == 403
    assert client.post("/api/v1/partners", json=body).status_code == 401
    r = client.post("/api/v1/partners", json=body, headers=ops.headers)
    assert r.status_code == 201, r.text
    listed = client.get("/api/v1/partners").json()
    assert [p["name"] for p in listed] == ["Hangzhou Ops"]
