"""B-side accounts for API and e2e tests: register an advertiser (operator call), log its
user in, and hand back the bearer headers. Works on any client with `.post` (TestClient,
httpx.Client)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class _Client(Protocol):
    def post(self, url: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Account:
    id: int
    login: str
    headers: dict[str, str]


def log_in(client: _Client, login: str, password: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json={"login": login, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def make_advertiser(
    client: _Client,
    name: str,
    *,
    billing_mode: str = "prepaid",
    lost_spot_policy: str = "make_good",
    operator_headers: dict[str, str] | None = None,
) -> Account:
    login = f"{name.lower().replace(' ', '-')}-admin"
    password = f"pw-{name}-secret"
    r = client.post(
        "/api/v1/advertisers",
        json={
            "name": name,
            "billing_mode": billing_mode,
            "lost_spot_policy": lost_spot_policy,
            "admin_login": login,
            "admin_password": password,
        },
        headers=operator_headers or {},
    )
    assert r.status_code == 201, r.text
    return Account(int(r.json()["id"]), login, log_in(client, login, password))


def make_operator(
    client: _Client, login: str = "ops-1", *, operator_headers: dict[str, str] | None = None
) -> Account:
    password = f"pw-{login}-secret"
    r = client.post(
        "/api/v1/users",
        json={"login": login, "password": password, "role": "operator"},
        headers=operator_headers or {},
    )
    assert r.status_code == 201, r.text
    return Account(int(r.json()["id"]), login, log_in(client, login, password))
