"""``loreg gc``: collect unreferenced blobs (server side: talks to the DB and store directly).

Run it where the server's configuration is (``LOREG_DATABASE_URL``, ``LOREG_STORAGE_URL``...),
e.g. ``docker compose exec api loreg gc --dry-run``. Workers also run it on a schedule.

It also removes (or with ``--dry-run`` lists) the work folders of dead job attempts under
this machine's ``LOREG_HOME`` (``worker/work/``); workers sweep their own home too.
"""

from __future__ import annotations

from datetime import timedelta

import click

from loreg.cli import extras
from loreg.cli.common import emit, json_option, settings
from loreg.units import format_bytes


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted; change nothing.")
@click.option(
    "--grace-hours",
    type=click.FloatRange(min=0),
    default=None,
    help="Never touch blobs or store objects younger than this (uploads in flight)."
    "  [default: LOREG_GC_GRACE_HOURS, 24]",
)
@click.option(
    "--retention-hours",
    type=click.FloatRange(min=0),
    default=None,
    help="Keep the blobs of soft-deleted versions this long after the deletion."
    "  [default: LOREG_GC_DELETED_VERSION_RETENTION_HOURS, 168]",
)
@json_option
def gc(
    dry_run: bool, grace_hours: float | None, retention_hours: float | None, as_json: bool
) -> None:
    """Delete blobs that no version, base model or unexpired job output references.

    Expired job outputs are dropped first; soft-deleted versions past the retention period
    lose their files (the version record stays). Only blobs and store objects older than
    the grace period are touched. Work folders of dead job attempts under LOREG_HOME
    (a worker killed mid-job), upload temp files that crashed uploads left behind and
    abandoned S3 multipart uploads older than the grace period go too.
    """
    extras.require("server", "gc")
    from loreg.background import gc as gc_service
    from loreg.db.session import create_engine_for, make_sessionmaker
    from loreg.storage import open_store
    from loreg.worker.workdirs import sweep

    config = settings()
    if grace_hours is None:
        grace_hours = config.gc_grace_hours
    if retention_hours is None:
        retention_hours = config.gc_deleted_version_retention_hours
    engine = create_engine_for(config.effective_database_url)
    sessions = make_sessionmaker(engine)
    try:
        report = gc_service.run(
            sessions,
            open_store(config),
            dry_run=dry_run,
            grace=timedelta(hours=grace_hours),
            retention=timedelta(hours=retention_hours),
        )
        if not dry_run:
            with sessions() as session:
                gc_service.record_run(session, report, "loreg gc")
                session.commit()
    finally:
        engine.dispose()
    folders = sweep(config.home / "worker" / "work", dry_run=dry_run)
    data = report.to_dict()
    data["work_folders"] = [f.to_dict() for f in folders]

    def human() -> None:
        verb = "would delete" if dry_run else "deleted"
        for out in report.expired_job_outputs:
            click.echo(f"{verb} expired output {out['path']} of job {out['job_id']}")
        for version in report.purged_versions:
            click.echo(
                f"{verb} the files of deleted version {version['ref']} ({version['files']} files)"
            )
        for blob in report.blobs:
            click.echo(f"{verb} blob {blob['digest']} ({format_bytes(blob['size'])})")
        for obj in report.orphan_objects:
            click.echo(f"{verb} orphan object {obj['digest']} ({format_bytes(obj['size'])})")
        for tmp in report.temp_files:
            click.echo(
                f"{verb} upload temp file {tmp['name']} left by a crashed upload "
                f"({format_bytes(tmp['size'])})"
            )
        for up in report.aborted_uploads:
            click.echo(
                f"{'would abort' if dry_run else 'aborted'} abandoned upload "
                f"{up['key']} (started {up['initiated']})"
            )
        for folder in folders:
            click.echo(
                f"{verb} work folder {folder.path} of a dead attempt ({format_bytes(folder.size)})"
            )
        for err in report.errors:
            click.echo(f"error: {err}", err=True)
        click.echo(
            f"{verb} {len(report.blobs) + len(report.orphan_objects)} blobs, "
            f"{format_bytes(report.bytes_freed)}"
        )

    emit(data, human)
