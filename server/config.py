"""One settings class. Every field has an embedded default, so `umbrella demo` needs nothing.

Production sets `UMB_DATABASE_URL`, `UMB_REDIS_URL`, `UMB_MQTT_HOST` etc. (see README).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator
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

    # WeChat (SPEC §2). Every default points at the local stand-in
    # (`python -m server.wechat.standin`, port 8060); the real endpoints are one setting away:
    # UMB_WECHAT_API_BASE_URL=https://api.weixin.qq.com and
    # UMB_WECHATPAY_BASE_URL=https://api.mch.weixin.qq.com. Login is enabled once appid and
    # secret are set, payments once every wechatpay_* value below is set
    # (server/payments/README.md lists them).
    wechat_api_base_url: str = "http://127.0.0.1:8060"
    wechat_appid: str = ""
    wechat_app_secret: str = ""
    wechatpay_base_url: str = "http://127.0.0.1:8060"
    wechatpay_mchid: str = ""
    #: Serial of the merchant API certificate whose private key signs our requests.
    wechatpay_merchant_serial: str = ""
    #: PEM file of the merchant API private key (apiclient_key.pem). Empty: not configured.
    wechatpay_merchant_private_key_file: str = ""
    #: The 32-character APIv3 key (decrypts notification resources). Secret.
    wechatpay_apiv3_key: str = ""
    #: 微信支付公钥 id (or platform certificate serial) and its PEM file.
    wechatpay_platform_serial: str = ""
    wechatpay_platform_public_key_file: str = ""
    #: Where WeChat Pay posts payment notifications; public https in production.
    wechatpay_notify_url: str = "http://127.0.0.1:8000/api/v1/payments/wechat/notify"
    #: Where WeChat Pay posts refund notifications (退款结果通知); public https in production.
    wechatpay_refund_notify_url: str = "http://127.0.0.1:8000/api/v1/payments/wechat/refund-notify"
    #: Lifetime of the rider session tokens issued at login.
    rider_token_ttl_s: int = 30 * 24 * 3600
    #: Lifetime of console/B-side user tokens (operators, partners, advertisers).
    user_token_ttl_s: int = 12 * 3600
    #: Renting (SPEC §2): how long the kiosk may take to receive an unlock before it must
    #: ignore it (the command's expiry, in the kiosk's clock), and how long the API waits for
    #: the kiosk's answer: the expiry plus the kiosk's unlock window (30 s) plus transit.
    rental_command_expiry_s: float = 10.0
    rental_answer_wait_s: float = 45.0
    #: Concurrent requests the API serves in worker threads (a rent waits for its kiosk).
    api_worker_threads: int = 200

    # Rider notifications through WeChat subscribe messages (SPEC §2; server/notifications/).
    # Template ids come from the mini-program's 订阅消息 console (one per template picked from
    # the public library); the defaults are the ids the local stand-in knows. An empty id
    # turns that kind of notification off (its rows end `undeliverable`).
    wechat_tpl_rental_started: str = "standin-tpl-rental-started"
    wechat_tpl_rental_returned: str = "standin-tpl-rental-returned"
    #: Day-5 and day-6 reminders before the free window ends.
    wechat_tpl_due_reminder: str = "standin-tpl-due-reminder"
    #: Every deposit movement: received, refunded, forfeited, forfeiture reversed.
    wechat_tpl_deposit_changed: str = "standin-tpl-deposit-changed"
    wechat_tpl_rental_ended: str = "standin-tpl-rental-ended"
    #: The mini-program page a message card opens, and which version of the mini-program.
    wechat_subscribe_page: str = "pages/rentals/index"
    wechat_miniprogram_state: Literal["developer", "trial", "formal"] = "formal"
    #: How often the scheduler drains the notification outbox, and how many per run at most.
    notification_send_interval_s: int = 10
    notification_batch_max: int = 200

    # Proof of play and delivery (SPEC §4; server/delivery/).
    #: A kiosk-day is settled (lost spots become make-goods or credits) this long after the
    #: local day ended, so a kiosk that was offline can reconnect and replay its plays first.
    ad_settlement_grace_s: int = 6 * 3600
    #: How far back (days before the grace cutoff) the settlement job looks for unsettled
    #: kiosk-days; covers a scheduler that was down for that long.
    ad_settlement_lookback_days: int = 7
    #: How often the scheduler runs the settlement job.
    ad_settlement_interval_s: int = 900

    #: Advertiser billing (SPEC §4): the time zone whose calendar dates invoices and monthly
    #: statements (issued on the 1st, due on the 20th), and how often the scheduler checks
    #: whether a statement is due (it only acts once a month; several schedulers are safe).
    billing_timezone: str = "Asia/Shanghai"
    billing_statement_check_interval_s: int = 3600

    # Partners' revenue-share statements (SPEC §5; server/revenue/). Periods are calendar
    # weeks or months in `partner_statement_timezone`; a period is stated this long after it
    # ended, so ledger entries committed just after midnight but dated before it are in.
    partner_statement_timezone: str = "Asia/Shanghai"
    partner_statement_grace_s: int = 3600
    partner_statement_check_interval_s: int = 3600
    #: The WeChat Pay transaction that profit-sharing payouts split (分账 needs one per
    #: order): the platform's settlement transaction. The default is the one the local
    #: stand-in keeps (server/wechat/standin.py, STANDIN_SETTLEMENT_TRANSACTION_ID).
    wechatpay_profit_sharing_transaction_id: str = "4200000000000000000000000000"

    # Playlists (SPEC §4; server/playlists/). A compile covers `playlist_ahead_h` local hours
    # from the current one; a kiosk is compiled again when what it has covers less than
    # `playlist_min_ahead_h` (so at least 48 h stay ahead while it is offline), or when a
    # booking on it changed. The job runs every `playlist_compile_interval_s`, which bounds
    # how long a booking change or an approval takes to reach the kiosks.
    playlist_ahead_h: int = 72
    playlist_min_ahead_h: int = 54
    playlist_compile_interval_s: int = 20
    #: Kiosks compiled per transaction, and per run at most (a fleet-wide recompile, e.g.
    #: the first one, spreads over a few runs, most urgent kiosks first).
    playlist_chunk: int = 500
    playlist_max_per_run: int = 2000
    #: A published playlist the kiosk has not acknowledged is published again after this long
    #: (retained, so harmless; repairs a lost retained message or a stale one winning a race).
    playlist_republish_s: int = 600

    # Partner dashboard, alerts and rebalancing (issue 5; server/dashboard, alerts, rebalancing).
    #: The dashboard stream polls a cheap change signal this often, sends the whole picture
    #: again at least every `dashboard_stream_refresh_s` (day rollover, counters), and a
    #: keep-alive comment every `dashboard_stream_keepalive_s`.
    dashboard_stream_poll_s: float = 1.5
    dashboard_stream_refresh_s: float = 30.0
    dashboard_stream_keepalive_s: float = 15.0
    #: Alerts: offline for longer than this; at most this many umbrellas (nearly empty) or
    #: free slots (nearly full); a slot faulty for longer than this. The job runs this often.
    alert_offline_after_s: int = 600
    alert_nearly_empty_max: int = 2
    alert_nearly_full_max_free: int = 2
    alert_slot_fault_after_s: int = 1800
    alert_evaluate_interval_s: int = 30
    #: Rebalancing: net flows are measured over the last `rebalancing_flow_window_h` hours
    #: and projected `rebalancing_horizon_h` hours ahead.
    rebalancing_flow_window_h: int = 6
    rebalancing_horizon_h: int = 3

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    # Creatives' media (SPEC §4): uploads are stored by their SHA-256 under data_dir/media and
    # served to kiosks at <media_base_url>/api/v1/media/<sha256> (server/creatives/media.py).
    #: The address kiosks download media from; empty means http://<api_host>:<api_port>.
    media_base_url: str = ""
    #: The largest media file accepted (a 10-s 1080p spot is well under 50 MB).
    media_max_bytes: int = 200 * 1024 * 1024

    @field_validator("billing_timezone", "partner_statement_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    # Public GBFS 3.0 feed (SPEC §5; server/gbfs/). Feeds are served from the shared state
    # and rebuilt once older than their `ttl`, so a feed is never staler than its ttl.
    #: The public address the feeds are reached at, put into gbfs.json's feed URLs; empty
    #: means http://<api_host>:<api_port>. Never taken from the request's Host header: a
    #: cached discovery file must not carry whatever host the first client sent.
    gbfs_public_base_url: str = ""
    gbfs_system_id: str = "umbrella-platform"
    gbfs_system_name_zh: str = "共享雨伞"
    gbfs_system_name_en: str = "Shared Umbrellas"
    gbfs_operator_name_zh: str = "共享雨伞运营平台"
    gbfs_operator_name_en: str = "Shared Umbrella Platform"
    #: Where consumers of the feed report technical problems (required by GBFS 3.0).
    gbfs_feed_contact_email: str = "gbfs@example.com"
    #: The system's time zone (system_information.timezone), an IANA name.
    gbfs_timezone: str = "Asia/Shanghai"
    #: ttl of station_status (live counts), station_information (the registry) and the
    #: files that change only with a deployment (gbfs, system_information, vehicle_types,
    #: system_pricing_plans).
    gbfs_status_ttl_s: int = 30
    gbfs_station_information_ttl_s: int = 60
    gbfs_static_ttl_s: int = 3600

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'umbrella.sqlite3'}"

    @property
    def wechat_login_configured(self) -> bool:
        return bool(self.wechat_appid and self.wechat_app_secret)

    @property
    def wechatpay_configured(self) -> bool:
        return all(
            (
                self.wechat_appid,
                self.wechatpay_mchid,
                self.wechatpay_merchant_serial,
                self.wechatpay_merchant_private_key_file,
                self.wechatpay_apiv3_key,
                self.wechatpay_platform_serial,
                self.wechatpay_platform_public_key_file,
            )
        )

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def media_url_base(self) -> str:
        return (self.media_base_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def gbfs_base_url(self) -> str:
        return (self.gbfs_public_base_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def broker_password_file(self) -> Path:
        return self.data_dir / "broker" / "passwd"

    @property
    def broker_acl_file(self) -> Path:
        return self.data_dir / "broker" / "acl"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
