"""Operational state: worker heartbeats (for ``/metrics`` and operators)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from loreg.db.base import Base, utcnow


class WorkerHeartbeat(Base):
    """A worker's last sign of life, written by its loop every few seconds, busy or idle.

    Rows of workers that stopped stay (their ``last_seen_at`` ages); housekeeping removes
    rows unseen for a day.
    """

    __tablename__ = "worker_heartbeats"

    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(256), default="")
    device: Mapped[str] = mapped_column(String(32), default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    current_job_id: Mapped[str | None] = mapped_column(String(32))
