"""Settings: operator-tunable values reach the services, whose own defaults agree."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from loreg.background import gc, webhooks
from loreg.background.housekeeping import Housekeeping
from loreg.config import Settings
from loreg.storage import open_store_url


def test_service_defaults_match_the_settings(tmp_path: Path) -> None:
    defaults = Settings(home=tmp_path)
    assert timedelta(hours=defaults.gc_grace_hours) == gc.DEFAULT_GRACE
    assert timedelta(hours=defaults.gc_deleted_version_retention_hours) == gc.DEFAULT_RETENTION
    assert defaults.webhook_max_attempts == webhooks.MAX_ATTEMPTS
    assert defaults.webhook_backoff_max_seconds == webhooks.BACKOFF_MAX


def test_housekeeping_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        gc_interval_hours=2,
        gc_grace_hours=3,
        gc_deleted_version_retention_hours=4,
        webhook_max_attempts=5,
        webhook_backoff_max_seconds=60,
    )
    store = open_store_url(f"file://{tmp_path / 'blobs'}")
    hk = Housekeeping.from_settings(settings, None, store, "w", "cpu")  # type: ignore[arg-type]
    assert (hk.gc_interval, hk.gc_grace, hk.gc_retention) == (
        timedelta(hours=2),
        timedelta(hours=3),
        timedelta(hours=4),
    )
    assert (hk.webhook_max_attempts, hk.webhook_backoff_max) == (5, 60.0)
