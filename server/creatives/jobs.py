"""Scheduled creatives work. The caller (the scheduler) owns the transaction."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from server.creatives import repository as repo
from server.creatives.media import MediaStore

log = logging.getLogger(__name__)


def prune_unused_media(
    session: Session, store: MediaStore, now: datetime, older_than: timedelta
) -> int:
    """Delete media files no creative uses, and abandoned partial uploads, once they are
    older than `older_than`; returns how many files it deleted.

    An upload is only referenced once the advertiser submits the creative, so the grace
    period must cover the time between the two (days, not minutes). A file deleted anyway
    comes back by uploading it again: the address is the content, so the URL is the same."""
    cutoff = (now - older_than).timestamp()
    old = [(sha, path) for sha, path, mtime in store.files() if mtime < cutoff]
    used = repo.used_sha256s(session, [sha for sha, _ in old if sha])
    deleted = 0
    for sha, path in old:
        if sha in used:
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        deleted += 1
    if deleted:
        log.info("deleted %d unused media files", deleted)
    return deleted
