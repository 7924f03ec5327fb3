"""One settings class. Every field has an embedded default, so `umbrella demo` needs nothing.

Production sets `UMB_DATABASE_URL`, `UMB_REDIS_URL`, `UMB_MQTT_HOST` etc. (see README).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UMB_", env_file=None, extra="ignore")

    #: Where the embedded default keeps its files (SQLite db, broker password and ACL files).
    data_dir: Path = Path("var")
    #: Empty means the embedded SQLite file under data_dir.
    database_url: str = ""
    #: Empty means the in-process shared state (single process only).
    redis_url: str = ""

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = "cloud"
    mqtt_password: str = "cloud-dev-password"
    #: Start the in-process amqtt broker (embedded default) instead of using mqtt_host.
    embedded_broker: bool = True
    #: Shared-subscription group of the bridge processes.
    bridge_group: str = "bridges"
    #: Distinguishes bridge processes (MQTT client id suffix, metrics).
    bridge_id: str = "bridge-1"
    #: Messages applied per database transaction at most (SPEC: one transaction per batch).
    bridge_batch_max: int = 500

    #: A kiosk silent for this long is offline even without a Last Will.
    presence_timeout_s: int = 180
    #: Default heartbeat interval told to kiosks.
    heartbeat_interval_s: int = 60
    #: How long duplicate-suppression keys live in the shared state (a pre-filter only: the
    #: receipts table is the authority), and how long receipts are kept.
    dedup_ttl_s: int = 24 * 3600
    receipt_retention_days: int = 90

    #: When set, registry writes (POST /partners, /kiosks...) need `Authorization: Bearer <token>`.
    #: Roles and per-tenant accounts replace this in the partners/console work.
    operator_token: str = ""

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'umbrella.sqlite3'}"

    @property
    def broker_password_file(self) -> Path:
        return self.data_dir / "broker" / "passwd"

    @property
    def broker_acl_file(self) -> Path:
        return self.data_dir / "broker" / "acl"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
