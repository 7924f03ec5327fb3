"""The scheduler process: each job run is one entry point with its own transaction.

Jobs must be safe when several scheduler processes run them at once (they are written as
idempotent conditional updates), so running two schedulers for availability is allowed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session

from server.alerts import jobs as alert_jobs
from server.alerts import service as alert_service
from server.billing import jobs as billing_jobs
from server.bookings import jobs as booking_jobs
from server.bridge.commands import Publisher
from server.bridge.connection import BridgeConnection
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.shared_state import SharedState, make_shared_state
from server.creatives import jobs as creative_jobs
from server.creatives.media import MediaStore
from server.delivery import jobs as delivery_jobs
from server.kiosk_state import jobs as kiosk_jobs
from server.playlists import jobs as playlist_jobs
from server.rentals import jobs as rental_jobs
from server.revenue import jobs as revenue_jobs

log = logging.getLogger(__name__)


def build_scheduler(
    settings: Settings,
    db: Database,
    shared_state: SharedState,
    *,
    publisher: Publisher | None = None,
) -> BackgroundScheduler:
    """`publisher` pushes compiled playlists to the kiosks (retained MQTT downlinks); without
    one, playlists are compiled and stored and wait for a scheduler that can publish."""
    scheduler = BackgroundScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1}
    )

    def presence_timeout() -> None:
        with db.transaction(immediate=True) as session:
            n = kiosk_jobs.mark_silent_kiosks_offline(
                session, clock.now(), settings.presence_timeout_s, shared_state=shared_state
            )
        if n:
            log.info("presence timeout: %d silent kiosk(s) marked offline", n)

    def prune_receipts() -> None:
        with db.transaction(immediate=True) as session:
            n = kiosk_jobs.prune_receipts(session, clock.now(), settings.receipt_retention_days)
        log.info("pruned %d uplink receipts older than %d days", n, settings.receipt_retention_days)

    if settings.wechatpay_configured:
        from server.deposits.jobs import reconcile_pending_deposits
        from server.payments.wechatpay import WeChatPayClient
        from server.runtime import wechatpay_config_from

        pay = WeChatPayClient(wechatpay_config_from(settings))

        def reconcile_deposits() -> None:
            # Each run is one transaction; rows locked by a concurrent run are skipped.
            with db.transaction(immediate=True) as session:
                n = reconcile_pending_deposits(session, pay, clock.now(), timedelta(minutes=2))
            if n:
                log.info("reconciled %d deposit payment(s) whose notification was lost", n)

        scheduler.add_job(_logged(reconcile_deposits), "interval", seconds=60, id="reconcile")

        from server.deposits.jobs import retry_refunds

        def retry_deposit_refunds() -> None:
            # Refunds not yet accepted by WeChat are asked again with the same out_refund_no;
            # ones WeChat is still paying out are queried.
            with db.transaction(immediate=True) as session:
                n = retry_refunds(
                    session, pay, clock.now(), notify_url=settings.wechatpay_refund_notify_url
                )
            if n:
                log.info("moved %d deposit refund(s) forward", n)

        scheduler.add_job(
            _logged(retry_deposit_refunds), "interval", seconds=60, id="retry_refunds"
        )

    def forfeit_overdue() -> None:
        total = run_in_chunks(db, rental_jobs.forfeit_overdue)
        if total:
            log.info("forfeited the deposit of %d overdue rental(s)", total)

    def deadline_reminders() -> None:
        total = run_in_chunks(db, rental_jobs.send_reminders)
        if total:
            log.info("queued %d deadline reminder(s)", total)

    if settings.wechat_login_configured:
        from server.notifications.jobs import send_pending
        from server.notifications.templates import TemplateSet
        from server.wechat.miniprogram import MiniProgramClient

        mini = MiniProgramClient(
            settings.wechat_appid, settings.wechat_app_secret, base_url=settings.wechat_api_base_url
        )
        templates = TemplateSet.from_settings(settings)

        def send_notifications() -> None:
            # One transaction per notification (notifications/jobs.py says why).
            send_pending(db, mini, templates, clock.now(), limit=settings.notification_batch_max)

        scheduler.add_job(
            _logged(send_notifications),
            "interval",
            seconds=settings.notification_send_interval_s,
            id="send_notifications",
        )
        scheduler.add_listener(lambda event: mini.close(), EVENT_SCHEDULER_SHUTDOWN)

    _add_ad_jobs(scheduler, settings, db, publisher)
    _add_partner_jobs(scheduler, settings, db)
    scheduler.add_job(_logged(forfeit_overdue), "interval", seconds=60, id="forfeit_overdue")
    scheduler.add_job(_logged(deadline_reminders), "interval", seconds=300, id="reminders")

    every = max(5, settings.presence_timeout_s // 6)
    scheduler.add_job(_logged(presence_timeout), "interval", seconds=every, id="presence_timeout")
    scheduler.add_job(_logged(prune_receipts), "cron", hour=3, minute=17, id="prune_receipts")
    return scheduler


def _add_ad_jobs(
    scheduler: BackgroundScheduler,
    settings: Settings,
    db: Database,
    publisher: Publisher | None,
) -> None:
    """SPEC §4: holds that ran out, playlists (a booking change or an approval reaches the
    kiosks within `playlist_compile_interval_s`), settlement of lost spots, statements."""

    def expire_holds() -> None:
        total = run_in_chunks(db, booking_jobs.expire_holds, chunk=booking_jobs.CHUNK)
        if total:
            log.info("released %d booking hold(s) that ran out", total)

    def compile_playlists() -> None:
        summary = playlist_jobs.compile_and_push(db, publisher, clock.now(), settings=settings)
        if summary.new_versions or summary.publish_failed or summary.failed:
            log.info("playlists: %s", summary)

    def prune_playlists() -> None:
        with db.transaction(immediate=True) as session:
            playlist_jobs.prune_versions(session, clock.now())

    def settle_delivery() -> None:
        with db.transaction(immediate=True) as session:
            n = delivery_jobs.settle_delivery(
                session,
                clock.now(),
                grace=timedelta(seconds=settings.ad_settlement_grace_s),
                lookback_days=settings.ad_settlement_lookback_days,
            )
        if n:
            log.info("settled delivery of %d kiosk-day(s)", n)

    def issue_statements() -> None:
        with db.transaction(immediate=True) as session:
            n = billing_jobs.issue_monthly_statements(
                session, clock.now(), billing_timezone=settings.billing_timezone
            )
        if n:
            log.info("issued %d monthly statement(s)", n)

    def prune_media() -> None:
        store = MediaStore(settings.media_dir, settings.media_url_base)
        with db.transaction() as session:
            creative_jobs.prune_unused_media(session, store, clock.now(), timedelta(days=7))

    scheduler.add_job(_logged(expire_holds), "interval", seconds=60, id="expire_holds")
    scheduler.add_job(
        _logged(compile_playlists),
        "interval",
        seconds=settings.playlist_compile_interval_s,
        id="compile_playlists",
        next_run_time=clock.now(),
    )
    scheduler.add_job(_logged(prune_playlists), "cron", hour=4, minute=7, id="prune_playlists")
    scheduler.add_job(
        _logged(settle_delivery),
        "interval",
        seconds=settings.ad_settlement_interval_s,
        id="settle_delivery",
    )
    scheduler.add_job(
        _logged(issue_statements),
        "interval",
        seconds=settings.billing_statement_check_interval_s,
        id="issue_statements",
    )
    scheduler.add_job(_logged(prune_media), "cron", hour=3, minute=41, id="prune_media")


def _add_partner_jobs(scheduler: BackgroundScheduler, settings: Settings, db: Database) -> None:
    """SPEC §5: station alerts, revenue-share statements."""
    thresholds = alert_service.thresholds_of(settings)

    def evaluate_alerts() -> None:
        with db.transaction(immediate=True) as session:
            alert_jobs.evaluate(session, clock.now(), thresholds)

    def partner_statements() -> None:
        with db.transaction(immediate=True) as session:
            n = revenue_jobs.issue_statements(
                session,
                clock.now(),
                timezone=settings.partner_statement_timezone,
                grace_s=settings.partner_statement_grace_s,
            )
        if n:
            log.info("issued %d partner statement(s)", n)

    scheduler.add_job(
        _logged(evaluate_alerts),
        "interval",
        seconds=settings.alert_evaluate_interval_s,
        id="evaluate_alerts",
    )
    scheduler.add_job(
        _logged(partner_statements),
        "interval",
        seconds=settings.partner_statement_check_interval_s,
        id="partner_statements",
    )


def run_in_chunks(
    db: Database, job: Callable[[Session, datetime], int], chunk: int = rental_jobs.CHUNK
) -> int:
    """Run a chunked job until a chunk comes back short; each chunk is one transaction, so
    a failure loses at most one chunk's work (it is retried on the next run)."""
    total = 0
    while True:
        with db.transaction(immediate=True) as session:
            n = job(session, clock.now())
        total += n
        if n < chunk:
            return total


def _logged(job: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:  # one failed run must not stop the schedule; the next run retries
            log.exception("scheduled job %s failed", job.__name__)

    run.__name__ = job.__name__
    return run


def run_scheduler(settings: Settings, *, stop_event: threading.Event | None = None) -> None:
    db = Database(settings.db_url)
    state = make_shared_state(settings)
    # Publishes playlists only (no subscription): the bridges take the kiosks' answers.
    publisher = BridgeConnection(
        settings, subscribe=False, client_id=f"scheduler-{socket.gethostname()}-{os.getpid()}"
    )
    publisher.start()
    scheduler = build_scheduler(settings, db, state, publisher=publisher)
    scheduler.start()
    log.info("scheduler started: %s", ", ".join(j.id for j in scheduler.get_jobs()))
    stop = stop_event or threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.shutdown(wait=True)
        publisher.stop()
        state.close()
        db.dispose()
