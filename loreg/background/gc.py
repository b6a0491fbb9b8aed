"""Garbage collection of blobs: what nothing references any more, once it is old enough.

A blob is **referenced** (kept) while any of these points at it:

- a file of a live version, or of a soft-deleted version still inside the retention
  period (``retention``, default 7 days: within it the bytes still exist, so an operator
  can undo an accidental delete by clearing the version's ``deleted_at``);
- a file of a registered base model;
- an output of a job whose outputs have not expired (``jobs.outputs_expire_at`` unset or
  in the future).

Soft-deleted versions: their blobs are **retained for the retention period**, then
collectable. When a collection passes the retention period of a deleted version, it
*purges* the version: the version row stays (number, digest, metadata and audit history
remain resolvable and show as deleted), its file rows go, and its blobs become
collectable unless something else references them.

A run, in order:

1. expired job outputs: the artifact rows of jobs whose outputs expired are dropped;
2. soft-deleted versions past the retention period lose their file rows;
3. blob rows that nothing references and whose row is older than the grace period are
   deleted, each in its own transaction guarded by a re-check (and by the foreign keys:
   a version committed meanwhile makes the delete fail, and the blob stays), then the
   store object is deleted;
4. store objects with no blob row, last modified before the grace period, are deleted;
5. uploads an interrupted put left behind (an API process that died mid-upload) and older
   than the grace period are removed, through ``BlobStore.leftover_uploads``: on S3,
   abandoned multipart uploads are aborted, which frees their parts; in a local store,
   upload temp files that no process is writing (``LocalBlobStore`` tells them apart by a
   lock) are deleted. The API also removes the local ones, whatever their age, when it
   starts (:func:`sweep_leftover_uploads`).

The **grace period** (default 24 hours) protects uploads in flight: the store object of
an upload is written before its row, and a push references its blobs only after they are
uploaded, so anything fresh, row or object, is never collected.

``--dry-run`` computes the same lists without changing anything.

One race remains by design: a client that asked ``POST /uploads`` a moment before a
collection deletes an old, unreferenced blob skips uploading it, and its version create
then fails with "blob not found"; pushing again uploads it. Only blobs unreferenced for
longer than the grace period can be caught this way.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from loreg.db.models import (
    Adapter,
    AdapterVersion,
    BaseModelFile,
    Blob,
    Job,
    JobArtifact,
    Namespace,
    VersionFile,
)
from loreg.services import audit
from loreg.storage import BlobStore, LeftoverUpload

log = logging.getLogger("loreg.gc")

#: Defaults for direct calls; servers pass LOREG_GC_GRACE_HOURS and
#: LOREG_GC_DELETED_VERSION_RETENTION_HOURS (same defaults, a test keeps them equal).
DEFAULT_GRACE = timedelta(hours=24)
DEFAULT_RETENTION = timedelta(days=7)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class GcReport:
    """What a run deleted (or, with ``dry_run``, would delete)."""

    dry_run: bool
    started_at: str
    grace_seconds: float
    retention_seconds: float
    expired_job_outputs: list[dict[str, Any]] = field(default_factory=list)
    purged_versions: list[dict[str, Any]] = field(default_factory=list)
    blobs: list[dict[str, Any]] = field(default_factory=list)
    orphan_objects: list[dict[str, Any]] = field(default_factory=list)
    aborted_uploads: list[dict[str, Any]] = field(default_factory=list)
    temp_files: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return (
            sum(b["size"] for b in self.blobs)
            + sum(o["size"] for o in self.orphan_objects)
            + sum(t["size"] for t in self.temp_files)
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bytes_freed"] = self.bytes_freed
        return data


# --------------------------------------------------------------------------- references


def _version_kept(now: datetime, retention: timedelta) -> ColumnElement[bool]:
    """Versions whose files are kept: live, or deleted within the retention period."""
    return or_(AdapterVersion.deleted_at.is_(None), AdapterVersion.deleted_at > now - retention)


def _outputs_live(now: datetime) -> ColumnElement[bool]:
    return or_(Job.outputs_expire_at.is_(None), Job.outputs_expire_at > now)


def _referenced(now: datetime, retention: timedelta) -> ColumnElement[bool]:
    """True for a ``Blob`` row something still needs (as of ``now``)."""
    by_version = exists().where(
        VersionFile.blob_digest == Blob.digest,
        VersionFile.version_id == AdapterVersion.id,
        _version_kept(now, retention),
    )
    by_base = exists().where(BaseModelFile.blob_digest == Blob.digest)
    by_job = exists().where(
        JobArtifact.blob_digest == Blob.digest,
        JobArtifact.job_id == Job.id,
        _outputs_live(now),
    )
    return or_(by_version, by_base, by_job)


def _collectable(now: datetime, grace: timedelta, retention: timedelta) -> ColumnElement[bool]:
    return (Blob.created_at < now - grace) & ~_referenced(now, retention)


# --------------------------------------------------------------------------- steps


def _expired_outputs(session: Session, now: datetime) -> list[JobArtifact]:
    return list(
        session.scalars(
            select(JobArtifact)
            .join(Job, Job.id == JobArtifact.job_id)
            .where(Job.outputs_expire_at.is_not(None), Job.outputs_expire_at <= now)
            .order_by(JobArtifact.job_id, JobArtifact.path)
        )
    )


def _purgeable_versions(
    session: Session, now: datetime, retention: timedelta
) -> list[tuple[AdapterVersion, str]]:
    rows = session.execute(
        select(AdapterVersion, Namespace.name, Adapter.name)
        .join(Adapter, Adapter.id == AdapterVersion.adapter_id)
        .join(Namespace, Namespace.id == Adapter.namespace_id)
        .where(
            AdapterVersion.deleted_at.is_not(None),
            AdapterVersion.deleted_at <= now - retention,
            exists().where(VersionFile.version_id == AdapterVersion.id),
        )
        .order_by(AdapterVersion.id)
    )
    return [(v, f"{ns}/{name}@{v.number}") for v, ns, name in rows]


def collectable_blobs(
    session: Session,
    *,
    now: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
    retention: timedelta = DEFAULT_RETENTION,
) -> list[Blob]:
    """Blob rows a run would delete now (also what ``--dry-run`` lists)."""
    now = now or _now()
    return list(
        session.scalars(
            select(Blob).where(_collectable(now, grace, retention)).order_by(Blob.digest)
        )
    )


def _delete_blob_row(
    sessions: sessionmaker[Session],
    digest: str,
    now: datetime,
    grace: timedelta,
    retention: timedelta,
) -> bool:
    """Delete one blob row if it is still collectable; False if something took it back."""
    with sessions() as session:
        try:
            result = session.execute(
                delete(Blob)
                .where(Blob.digest == digest, _collectable(now, grace, retention))
                .execution_options(synchronize_session=False)
            )
            session.commit()
        except IntegrityError:
            # a version / base / job referencing it committed meanwhile (ON DELETE RESTRICT)
            session.rollback()
            return False
        return bool(getattr(result, "rowcount", 0))


def run(
    sessions: sessionmaker[Session],
    store: BlobStore,
    *,
    dry_run: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    retention: timedelta = DEFAULT_RETENTION,
    now: datetime | None = None,
) -> GcReport:
    """One collection (see the module docstring). Manages its own transactions."""
    if grace < timedelta(0) or retention < timedelta(0):
        raise ValueError("grace and retention must not be negative")
    now = now or _now()
    report = GcReport(
        dry_run=dry_run,
        started_at=now.isoformat(),
        grace_seconds=grace.total_seconds(),
        retention_seconds=retention.total_seconds(),
    )

    # 1 + 2: expired job outputs and soft-deleted versions past retention
    with sessions() as session:
        for art in _expired_outputs(session, now):
            report.expired_job_outputs.append(
                {
                    "job_id": art.job_id,
                    "path": art.path,
                    "digest": art.blob_digest,
                    "size": art.size,
                }
            )
            if not dry_run:
                session.delete(art)
        for version, ref in _purgeable_versions(session, now, retention):
            files = list(version.files)
            report.purged_versions.append(
                {
                    "ref": ref,
                    "digest": version.digest,
                    "files": len(files),
                    "deleted_at": version.deleted_at.isoformat() if version.deleted_at else None,
                }
            )
            if not dry_run:
                session.execute(
                    delete(VersionFile)
                    .where(VersionFile.version_id == version.id)
                    .execution_options(synchronize_session=False)
                )
        if not dry_run:
            session.commit()

    # 3: unreferenced blob rows older than the grace period
    with sessions() as session:
        candidates = [
            (b.digest, b.size)
            for b in collectable_blobs(session, now=now, grace=grace, retention=retention)
        ]
        known = set(session.scalars(select(Blob.digest)))
    for digest, size in candidates:
        entry = {"digest": digest, "size": size}
        if dry_run:
            report.blobs.append(entry)
            continue
        if not _delete_blob_row(sessions, digest, now, grace, retention):
            report.skipped.append({**entry, "reason": "referenced again meanwhile"})
            continue
        known.discard(digest)
        report.blobs.append(entry)
        try:
            store.delete(digest)
        except Exception as exc:  # the object becomes an orphan; the next run retries
            log.warning("gc: could not delete %s from the store: %s", digest, exc)
            report.errors.append({**entry, "error": f"{type(exc).__name__}: {exc}"})

    # 4: store objects without a row, older than the grace period
    collected = {b["digest"] for b in report.blobs}
    cutoff = now - grace
    try:
        objects = list(store.iterate())
    except Exception as exc:
        log.warning("gc: could not list the store: %s", exc)
        report.errors.append({"error": f"listing the store: {type(exc).__name__}: {exc}"})
        objects = []
    for digest, size, modified in objects:
        if digest in known or digest in collected or modified >= cutoff:
            continue
        entry = {"digest": digest, "size": size, "last_modified": modified.isoformat()}
        if dry_run:
            report.orphan_objects.append(entry)
            continue
        with sessions() as session:  # re-check: an upload may have just recorded it
            if session.get(Blob, digest) is not None:
                continue
        try:
            store.delete(digest)
        except Exception as exc:
            report.errors.append({**entry, "error": f"{type(exc).__name__}: {exc}"})
            continue
        report.orphan_objects.append(entry)

    try:
        report.aborted_uploads, report.temp_files = sweep_leftover_uploads(
            store, older_than=cutoff, dry_run=dry_run
        )
    except Exception as exc:
        report.errors.append({"error": f"removing interrupted uploads: {exc}"})

    log.info(
        "gc%s: %d blobs, %d orphan objects, %d bytes; %d expired job outputs, %d purged versions",
        " (dry run)" if dry_run else "",
        len(report.blobs),
        len(report.orphan_objects),
        report.bytes_freed,
        len(report.expired_job_outputs),
        len(report.purged_versions),
    )
    return report


def sweep_leftover_uploads(
    store: BlobStore, *, older_than: datetime | None = None, dry_run: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Remove (or with ``dry_run`` list) what interrupted uploads left in the store:
    ``(aborted multipart uploads, removed temp files)``.

    ``older_than`` keeps younger ones (GC's grace period); ``None`` takes only those the
    store knows are abandoned (the API's start-up: local temp files no process holds).
    """
    aborted: list[dict[str, Any]] = []
    temp_files: list[dict[str, Any]] = []
    for upload in store.leftover_uploads(older_than=older_than):
        if not dry_run and not store.discard_upload(upload, older_than=older_than):
            continue
        if upload.kind == "multipart":
            aborted.append(
                {
                    "key": upload.name,
                    "upload_id": upload.upload_id,
                    "initiated": upload.started.isoformat(),
                }
            )
        else:
            temp_files.append(_temp_file_entry(upload))
    return aborted, temp_files


def _temp_file_entry(upload: LeftoverUpload) -> dict[str, Any]:
    return {
        "name": upload.name,
        "size": upload.size or 0,
        "last_modified": upload.started.isoformat(),
    }


def record_run(session: Session, report: GcReport, by: str, **extra: Any) -> None:
    """An audit event ``gc.run`` (caller commits); scheduled collections count from the
    newest one, so a manual ``loreg gc`` also postpones the next scheduled run."""
    audit.record(
        session,
        None,
        "gc.run",
        "registry",
        "blobs",
        {
            "by": by,
            "blobs": len(report.blobs),
            "orphan_objects": len(report.orphan_objects),
            "bytes_freed": report.bytes_freed,
            "expired_job_outputs": len(report.expired_job_outputs),
            "purged_versions": len(report.purged_versions),
            "aborted_uploads": len(report.aborted_uploads),
            "temp_files": len(report.temp_files),
            "errors": len(report.errors),
            **extra,
        },
    )
