"""Garbage collection on SQLite + a local folder and PostgreSQL + S3.

Time is moved instead of waiting: the run's ``now`` is two days ahead with a one-day grace
period, so everything written by the test counts as old unless it is dated later.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loreg.background import gc
from loreg.db import (
    AdapterVersion,
    AuditEvent,
    BaseModelFile,
    BaseModelRecord,
    Blob,
    Job,
    JobArtifact,
    VersionFile,
    create_engine_for,
    make_sessionmaker,
)
from loreg.db.migrate import upgrade
from loreg.digests import sha256_digest
from loreg.storage import BlobStore, blob_key, open_store_url
from tests.factories.db import make_adapter, make_namespace, make_version
from tests.fixtures.s3 import S3Endpoint

REAL_NOW = datetime.now(UTC)
NOW = REAL_NOW + timedelta(days=2)
GRACE = timedelta(days=1)
RETENTION = timedelta(days=7)


@dataclass
class Backend:
    name: str
    database_url: str
    storage_url: str
    s3_endpoint_url: str | None
    maker: sessionmaker[Session]
    store: BlobStore
    root: Path | None  # the local blob folder, when local

    def env(self) -> dict[str, str]:
        env = {"LOREG_DATABASE_URL": self.database_url, "LOREG_STORAGE_URL": self.storage_url}
        if self.s3_endpoint_url:
            env["LOREG_S3_ENDPOINT_URL"] = self.s3_endpoint_url
            env["LOREG_S3_REGION"] = "us-east-1"
        return env


@pytest.fixture(params=["sqlite+local", "postgres+s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite+local":
        db_url = f"sqlite:///{tmp_path / 'loreg.db'}"
        root: Path | None = tmp_path / "blobs"
        storage_url, endpoint = f"file://{root}", None
    else:
        db_url = str(request.getfixturevalue("postgres_url"))
        s3: S3Endpoint = request.getfixturevalue("s3_bucket")
        root, storage_url, endpoint = None, f"s3://{s3.bucket}/blobs", s3.endpoint_url
    upgrade(db_url)
    engine = create_engine_for(db_url)
    store = open_store_url(storage_url, s3_endpoint_url=endpoint, s3_region="us-east-1")
    yield Backend(
        request.param, db_url, storage_url, endpoint, make_sessionmaker(engine), store, root
    )
    engine.dispose()


def put(
    backend: Backend, s: Session | None, data: bytes, *, created_at: datetime = REAL_NOW
) -> str:
    """Store bytes; with a session also record the blob row (dated ``created_at``)."""
    digest = sha256_digest(data)
    backend.store.put(digest, io.BytesIO(data))
    if s is not None:
        s.add(Blob(digest=digest, size=len(data), created_at=created_at))
        s.flush()
    return digest


def attach(s: Session, version: AdapterVersion, path: str, digest: str) -> None:
    size = s.get(Blob, digest).size  # type: ignore[union-attr]
    s.add(VersionFile(version_id=version.id, path=path, blob_digest=digest, size=size))
    s.flush()


@dataclass
class Scene:
    only_deleted: str  # only in a version deleted long ago -> collected
    shared: str  # in that version and a live one -> kept
    live: str  # live version only -> kept
    recently_deleted: str  # version deleted within the retention period -> kept
    base: str  # base model file -> kept
    expired_output: str  # output of a job whose outputs expired -> collected
    live_output: str  # output of a job whose outputs have not expired -> kept
    fresh_row: str  # unreferenced, but its row is younger than the grace -> kept
    orphan: str  # store object without row, old -> collected
    old_version_id: int
    expired_job_id: str

    @property
    def collected(self) -> set[str]:
        return {self.only_deleted, self.expired_output}

    @property
    def kept(self) -> set[str]:
        return {
            self.shared,
            self.live,
            self.recently_deleted,
            self.base,
            self.live_output,
            self.fresh_row,
        }


@pytest.fixture
def scene(backend: Backend) -> Scene:
    with backend.maker() as s:
        ns = make_namespace(s)
        adapter = make_adapter(s, ns)
        old = make_version(s, adapter)
        live = make_version(s, adapter)
        recent = make_version(s, adapter)
        d = {
            name: put(backend, s, name.encode() * 10)
            for name in (
                "only_deleted",
                "shared",
                "live",
                "recently_deleted",
                "base",
                "expired_output",
                "live_output",
            )
        }
        d["fresh_row"] = put(backend, s, b"fresh_row", created_at=NOW - timedelta(hours=1))
        d["orphan"] = put(backend, None, b"orphan")
        attach(s, old, "adapter_model.safetensors", d["only_deleted"])
        attach(s, old, "adapter_config.json", d["shared"])
        attach(s, live, "adapter_config.json", d["shared"])
        attach(s, live, "adapter_model.safetensors", d["live"])
        attach(s, recent, "adapter_model.safetensors", d["recently_deleted"])
        old.deleted_at = NOW - RETENTION - timedelta(days=1)
        recent.deleted_at = NOW - timedelta(days=1)

        base = BaseModelRecord(
            name="org/base",
            fingerprint="sha256:" + "f0" * 32,
            structure_hash="sha256:" + "e0" * 32,
            manifest={},
            num_parameters=1,
            size_bytes=4,
        )
        s.add(base)
        s.flush()
        s.add(
            BaseModelFile(
                base_model_id=base.id, path="model.safetensors", blob_digest=d["base"], size=40
            )
        )
        expired = Job(
            type="merge", status="succeeded", params={}, outputs_expire_at=NOW - timedelta(hours=1)
        )
        kept = Job(
            type="export", status="succeeded", params={}, outputs_expire_at=NOW + timedelta(days=1)
        )
        s.add_all([expired, kept])
        s.flush()
        s.add(
            JobArtifact(
                job_id=expired.id,
                path="model.safetensors",
                blob_digest=d["expired_output"],
                size=140,
            )
        )
        s.add(
            JobArtifact(
                job_id=kept.id,
                path="adapter_model.safetensors",
                blob_digest=d["live_output"],
                size=110,
            )
        )
        s.commit()
        return Scene(**d, old_version_id=old.id, expired_job_id=expired.id)


def rows(backend: Backend) -> set[str]:
    with backend.maker() as s:
        return set(s.scalars(select(Blob.digest)))


def stored(backend: Backend) -> set[str]:
    return {digest for digest, _size, _mtime in backend.store.iterate()}


def test_dry_run_lists_exactly_the_unreferenced_blobs(backend: Backend, scene: Scene) -> None:
    before_rows, before_store = rows(backend), stored(backend)
    report = gc.run(
        backend.maker, backend.store, dry_run=True, now=NOW, grace=GRACE, retention=RETENTION
    )
    assert {b["digest"] for b in report.blobs} == scene.collected
    assert {o["digest"] for o in report.orphan_objects} == {scene.orphan}
    assert [o["job_id"] for o in report.expired_job_outputs] == [scene.expired_job_id]
    assert [v["files"] for v in report.purged_versions] == [2]
    assert report.bytes_freed == sum(b["size"] for b in report.blobs) + len(b"orphan")
    # nothing changed
    assert rows(backend) == before_rows and stored(backend) == before_store
    with backend.maker() as s:
        assert len(s.get(AdapterVersion, scene.old_version_id).files) == 2  # type: ignore[union-attr]


def test_gc_removes_them_from_store_and_db(backend: Backend, scene: Scene) -> None:
    dry = gc.run(
        backend.maker, backend.store, dry_run=True, now=NOW, grace=GRACE, retention=RETENTION
    )
    report = gc.run(backend.maker, backend.store, now=NOW, grace=GRACE, retention=RETENTION)
    assert {b["digest"] for b in report.blobs} == {b["digest"] for b in dry.blobs}
    assert {o["digest"] for o in report.orphan_objects} == {scene.orphan}
    assert not report.errors and not report.skipped

    gone = scene.collected | {scene.orphan}
    assert not gone & rows(backend)
    assert not gone & stored(backend)
    for digest in gone:
        assert not backend.store.exists(digest)
    # everything referenced (or too young) is intact, row and bytes
    assert scene.kept <= rows(backend)
    assert scene.kept <= stored(backend)
    with backend.maker() as s:
        old = s.get(AdapterVersion, scene.old_version_id)
        assert old is not None and old.deleted_at is not None and old.files == []
        assert (
            s.scalars(select(JobArtifact).where(JobArtifact.job_id == scene.expired_job_id)).all()
            == []
        )
        assert s.get(Job, scene.expired_job_id) is not None

    # a second run finds nothing
    again = gc.run(backend.maker, backend.store, now=NOW, grace=GRACE, retention=RETENTION)
    assert again.blobs == [] and again.orphan_objects == [] and again.purged_versions == []


def test_uploads_in_flight_are_not_touched(backend: Backend, scene: Scene) -> None:
    """A fresh row with its object (upload recorded, push not yet committed) stays; so does a
    fresh store object with no row yet (upload still streaming or about to record)."""
    in_flight = put(backend, None, b"still uploading")
    if backend.root is not None:
        fresh = (NOW - timedelta(minutes=5)).timestamp()
        os.utime(backend.root / blob_key(in_flight), (fresh, fresh))
    report = gc.run(
        backend.maker,
        backend.store,
        now=NOW if backend.root else REAL_NOW,
        grace=GRACE,
        retention=RETENTION,
    )
    assert scene.fresh_row in rows(backend) and backend.store.exists(scene.fresh_row)
    assert backend.store.exists(in_flight)
    assert in_flight not in {o["digest"] for o in report.orphan_objects}


def test_blob_shared_with_a_live_version_stays(backend: Backend, scene: Scene) -> None:
    with backend.maker() as s:
        for version in s.scalars(select(AdapterVersion)):
            if version.deleted_at is None:
                version.deleted_at = NOW - timedelta(minutes=1)  # deleted, but retained
        s.commit()
    gc.run(backend.maker, backend.store, now=NOW, grace=GRACE, retention=RETENTION)
    assert backend.store.exists(scene.shared) and scene.shared in rows(backend)
    # once every version using it is past retention, it goes
    gc.run(
        backend.maker,
        backend.store,
        now=NOW + RETENTION + timedelta(hours=1),
        grace=GRACE,
        retention=RETENTION,
    )
    assert not backend.store.exists(scene.shared)
    assert scene.base in rows(backend)


def test_cli(backend: Backend, scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    from loreg.cli.main import cli

    for key, value in backend.env().items():
        monkeypatch.setenv(key, value)
    # the CLI runs at the real time: grace 0 and retention 0 make everything old enough
    runner = CliRunner()
    result = runner.invoke(
        cli, ["gc", "--dry-run", "--grace-hours", "0", "--retention-hours", "0", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["dry_run"] is True
    listed = {b["digest"] for b in data["blobs"]}
    # (the scene's other dates lie in the future of the real clock, so they are kept)
    assert listed == {scene.only_deleted}
    assert not listed & {scene.shared, scene.live, scene.base, scene.live_output}
    assert rows(backend) >= listed

    result = runner.invoke(cli, ["gc", "--grace-hours", "0", "--retention-hours", "0"])
    assert result.exit_code == 0, result.output
    assert "deleted blob " + scene.only_deleted in result.output
    assert not listed & rows(backend)
    with backend.maker() as s:
        [run] = s.scalars(select(AuditEvent).where(AuditEvent.action == "gc.run")).all()
        assert run.details["by"] == "loreg gc" and run.details["blobs"] == 1


@pytest.mark.parametrize("backend", ["postgres+s3"], indirect=True)  # multipart: S3's own
def test_abandoned_multipart_uploads_are_aborted(backend: Backend) -> None:
    store = backend.store
    bucket, prefix = store.bucket, store.prefix  # type: ignore[attr-defined]
    raw = store.client  # type: ignore[attr-defined]
    raw.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/sha256/ab/{'ab' * 32}")
    assert len(store.pending_uploads()) == 1  # type: ignore[attr-defined]
    # (moto dates every upload 2010-11-10, so freshness cannot be shown here; the cutoff
    # comparison is the same one the orphan-object pass uses)
    dry = gc.run(backend.maker, store, dry_run=True, now=NOW, grace=GRACE)
    assert len(dry.aborted_uploads) == 1
    assert len(store.pending_uploads()) == 1  # type: ignore[attr-defined]
    report = gc.run(backend.maker, store, now=NOW, grace=GRACE)
    assert len(report.aborted_uploads) == 1
    assert store.pending_uploads() == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)  # S3's: multipart, above
def test_crashed_upload_temp_files_are_collected_after_the_grace_period(
    backend: Backend,
) -> None:
    assert backend.root is not None
    tmp = backend.root / "tmp"
    old = tmp / "put-old.tmp"
    young = tmp / "put-young.tmp"
    busy = tmp / "put-busy.tmp"
    for path in (old, young, busy):
        path.write_bytes(b"x" * 100)
    for path, when in (
        (old, REAL_NOW - timedelta(hours=1)),
        (young, NOW - timedelta(hours=1)),  # inside the grace period
        (busy, REAL_NOW - timedelta(hours=1)),
    ):
        os.utime(path, (when.timestamp(), when.timestamp()))
    with open(busy, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # a live upload holds its lock
        dry = gc.run(backend.maker, backend.store, dry_run=True, now=NOW, grace=GRACE)
        assert [t["name"] for t in dry.temp_files] == ["put-old.tmp"]
        assert old.exists()
        report = gc.run(backend.maker, backend.store, now=NOW, grace=GRACE)
        assert [t["name"] for t in report.temp_files] == ["put-old.tmp"]
        assert report.bytes_freed >= 100
    assert sorted(p.name for p in tmp.iterdir()) == ["put-busy.tmp", "put-young.tmp"]
